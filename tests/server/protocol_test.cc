#include "server/protocol.h"

#include <gtest/gtest.h>

#include "server/api_error.h"
#include "server/metrics.h"
#include "server/sse.h"

namespace m2fp4::server {
namespace {

using Json = nlohmann::ordered_json;

int status_of(const Json& body, bool chat = true) {
  try {
    if (chat) {
      parse_chat_request(body, GenerationDefaults{});
    } else {
      parse_completion_request(body, GenerationDefaults{});
    }
  } catch (const ApiError& e) {
    return e.status();
  }
  return 200;
}

const Json kMessages = Json::parse(R"([{"role": "user", "content": "hi"}])");

TEST(Protocol, SamplingFieldsAndDefaults) {
  GenerationDefaults d;
  d.temperature = 0.7f;
  d.top_k = 40;
  d.max_new_tokens = 100;
  Json body = {{"messages", kMessages},
               {"top_p", 0.5},
               {"seed", 3},
               {"min_p", 0.1},
               {"max_completion_tokens", 9},
               {"stop", "END"},
               {"presence_penalty", 1.5},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}}};
  ParsedRequest r = parse_chat_request(body, d);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.7f);  // from generation_config
  EXPECT_EQ(r.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.5f);
  EXPECT_EQ(*r.sampling.seed, 3u);
  EXPECT_EQ(r.sampling.max_tokens, 9);
  EXPECT_TRUE(r.max_tokens_given);
  EXPECT_EQ(r.stop, std::vector<std::string>{"END"});
  EXPECT_TRUE(r.include_usage);
  EXPECT_FLOAT_EQ(r.sampling.presence_penalty, 1.5f);
}

TEST(Protocol, MaxTokensResolution) {
  GenerationDefaults d;
  d.max_new_tokens = 100;
  ParsedRequest r = parse_chat_request({{"messages", kMessages}}, d);
  resolve_max_tokens(r, 1000, 1050);
  EXPECT_EQ(r.sampling.max_tokens, 50);  // what is left of the context
  r = parse_chat_request({{"messages", kMessages}}, d);
  resolve_max_tokens(r, 10, 1050);
  EXPECT_EQ(r.sampling.max_tokens, 100);  // generation_config's cap
  r = parse_chat_request({{"messages", kMessages}, {"max_tokens", 60}}, d);
  EXPECT_THROW(resolve_max_tokens(r, 1000, 1050), ApiError);
  EXPECT_THROW(resolve_max_tokens(r, 1050, 1050), ApiError);
}

TEST(Protocol, BadFieldsAre400) {
  EXPECT_EQ(status_of({{"messages", kMessages}, {"max_tokens", -1}}), 400);
  EXPECT_EQ(status_of({{"messages", kMessages}, {"max_tokens", 0}}), 400);
  EXPECT_EQ(status_of({{"messages", kMessages}, {"max_tokens", 1e30}}), 400);
  EXPECT_EQ(status_of({{"messages", kMessages}, {"max_tokens", "5"}}), 400);
  EXPECT_EQ(status_of({{"messages", kMessages}, {"temperature", -1}}), 400);
  EXPECT_EQ(status_of({{"messages", kMessages}, {"top_p", 0}}), 400);
  EXPECT_EQ(status_of({{"messages", kMessages}, {"n", 0}}), 400);
  EXPECT_EQ(status_of({{"messages", kMessages}, {"stop", 5}}), 400);
  EXPECT_EQ(status_of({{"messages", kMessages}, {"stream_options", {{"include_usage", true}}}}),
            400);
  EXPECT_EQ(status_of({{"messages", Json::array()}}), 400);
  EXPECT_EQ(status_of({{"messages", Json::parse(R"([{"role": "robot", "content": "x"}])")}}), 400);
  EXPECT_EQ(status_of({{"messages", Json::parse(R"([{"role": "user"}])")}}), 400);
  EXPECT_EQ(status_of({{"messages", Json::parse(R"([{"role": "user", "content": 3}])")}}), 400);
  EXPECT_EQ(
      status_of({{"messages", kMessages}, {"tools", Json::parse(R"([{"type": "function"}])")}}),
      400);
  EXPECT_EQ(status_of({{"messages", kMessages}, {"tool_choice", "required"}}), 400);
  EXPECT_EQ(status_of({{"messages", kMessages}, {"response_format", {{"type", "yaml"}}}}), 400);
  EXPECT_EQ(status_of({{"messages", kMessages}, {"top_logprobs", 2}}), 400);
  EXPECT_EQ(status_of(Json::array()), 400);
  EXPECT_EQ(status_of({{"prompt", 5}}, false), 400);
  EXPECT_EQ(status_of({{"prompt", {1, -2}}}, false), 400);
  EXPECT_EQ(status_of({{"messages", kMessages}, {"max_tokens", 5}, {"cache_prompt", false}}), 200);
}

TEST(Protocol, MessagesNormalizedForTheTemplate) {
  const Json in = Json::parse(R"([
    {"role": "developer", "content": [{"type": "text", "text": "be "}, {"type": "text", "text": "brief"}]},
    {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function",
      "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
    {"role": "tool", "tool_call_id": "c", "content": "ok"}])");
  const Json out = normalize_messages(in);
  EXPECT_EQ(out[0]["role"], "system");
  EXPECT_EQ(out[0]["content"], "be brief");
  EXPECT_EQ(out[1]["tool_calls"][0]["function"]["arguments"], Json({{"a", 1}}));
  Json bad = in;
  bad[1]["tool_calls"][0]["function"]["arguments"] = "{not json";
  EXPECT_THROW(normalize_messages(bad), ApiError);
}

TEST(Protocol, NamedToolChoiceNarrowsTools) {
  const Json body = Json::parse(R"({"messages": [{"role": "user", "content": "x"}],
    "tools": [{"type": "function", "function": {"name": "a"}},
              {"type": "function", "function": {"name": "b"}}],
    "tool_choice": {"type": "function", "function": {"name": "b"}}})");
  ParsedRequest r = parse_chat_request(body, {});
  ASSERT_EQ(r.tools.size(), 1u);
  EXPECT_EQ(r.tools[0]["function"]["name"], "b");
  Json unknown = body;
  unknown["tool_choice"]["function"]["name"] = "c";
  EXPECT_EQ(status_of(unknown), 400);
}

TEST(Protocol, CompletionPrompts) {
  ParsedRequest r = parse_completion_request({{"prompt", {5, 6, 7}}, {"logprobs", 2}}, {});
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_TRUE(r.prompts[0].is_ids);
  EXPECT_EQ(r.prompts[0].ids, (std::vector<int32_t>{5, 6, 7}));
  EXPECT_EQ(r.sampling.logprobs, 2);
  r = parse_completion_request({{"prompt", {"hi"}}}, {});
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_FALSE(r.prompts[0].is_ids);
  EXPECT_EQ(r.prompts[0].text, "hi");
  r = parse_completion_request({{"prompt", "plain"}}, {});
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0].text, "plain");
}

TEST(Protocol, CompletionPromptLists) {
  ParsedRequest r = parse_completion_request({{"prompt", {"a", "", "c"}}}, {});
  ASSERT_EQ(r.prompts.size(), 3u);
  EXPECT_EQ(r.prompts[0].text, "a");
  EXPECT_EQ(r.prompts[1].text, "");
  EXPECT_EQ(r.prompts[2].text, "c");
  r = parse_completion_request(Json::parse(R"({"prompt": [[1, 2], [3], [4, 5, 6]]})"), {});
  ASSERT_EQ(r.prompts.size(), 3u);
  EXPECT_TRUE(r.prompts[2].is_ids);
  EXPECT_EQ(r.prompts[0].ids, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(r.prompts[1].ids, (std::vector<int32_t>{3}));
  EXPECT_EQ(r.prompts[2].ids, (std::vector<int32_t>{4, 5, 6}));
  auto completion_status = [](const char* body) {
    try {
      parse_completion_request(Json::parse(body), {});
    } catch (const ApiError& e) {
      EXPECT_EQ(e.param(), "prompt") << body;
      return e.status();
    }
    return 200;
  };
  EXPECT_EQ(completion_status(R"({"prompt": []})"), 400);
  EXPECT_EQ(completion_status(R"({"prompt": ["a", [1, 2]]})"), 400);
  EXPECT_EQ(completion_status(R"({"prompt": [[1, 2], "a"]})"), 400);
  EXPECT_EQ(completion_status(R"({"prompt": [1, "a"]})"), 400);
  EXPECT_EQ(completion_status(R"({"prompt": [[1, -2]]})"), 400);
  EXPECT_EQ(completion_status(R"({"prompt": [[1], [2.5]]})"), 400);
  EXPECT_EQ(completion_status(R"({"prompt": [{"a": 1}]})"), 400);
  EXPECT_EQ(completion_status(R"({"prompt": 7})"), 400);
  EXPECT_EQ(completion_status(R"({"prompt": [null]})"), 400);
  EXPECT_EQ(completion_status(R"({"prompt": [[1], [2]]})"), 200);

  // The cap on the number of prompts is not a cap on one token-id prompt's length.
  Json long_ids = Json::array();
  for (int i = 0; i < 3000; ++i) long_ids.push_back(i % 500);
  r = parse_completion_request({{"prompt", long_ids}}, {});
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0].ids.size(), 3000u);
  Json many_prompts = Json::array();
  for (int i = 0; i < 257; ++i) many_prompts.push_back(Json::array({1, 2}));
  EXPECT_EQ(completion_status(Json{{"prompt", many_prompts}}.dump().c_str()), 400);
}

TEST(Protocol, MaxTokensZeroOnlyForCompletionsWithEcho) {
  const ParsedRequest r =
      parse_completion_request({{"prompt", "x"}, {"max_tokens", 0}, {"echo", true}}, {});
  EXPECT_TRUE(r.echo_only);
  EXPECT_FALSE(
      parse_completion_request({{"prompt", "x"}, {"max_tokens", 1}, {"echo", true}}, {}).echo_only);
  EXPECT_EQ(status_of({{"prompt", "x"}, {"max_tokens", 0}}, false), 400);
  EXPECT_EQ(status_of({{"prompt", "x"}, {"max_tokens", 0}, {"echo", false}}, false), 400);
  EXPECT_EQ(status_of({{"prompt", "x"}, {"max_tokens", -1}, {"echo", true}}, false), 400);
  EXPECT_EQ(status_of({{"messages", kMessages}, {"max_tokens", 0}, {"echo", true}}), 400);
}

TEST(Protocol, StructuredOutputsMapOntoResponseFormat) {
  // vLLM's structured_outputs.json (a schema object or its JSON text) is response_format
  // json_schema; json_object is json_object; on completions as on chat.
  const Json schema =
      Json::parse(R"({"type": "object", "properties": {"a": {"type": "integer"}}})");
  for (const Json& given : {schema, Json(schema.dump())}) {
    const ParsedRequest r =
        parse_completion_request({{"prompt", "x"}, {"structured_outputs", {{"json", given}}}}, {});
    EXPECT_EQ(r.response_format, "json_schema");
    EXPECT_EQ(r.json_schema, schema);
  }
  ParsedRequest r = parse_chat_request(
      {{"messages", kMessages}, {"structured_outputs", {{"json_object", true}}}}, {});
  EXPECT_EQ(r.response_format, "json_object");
  r = parse_completion_request({{"prompt", "x"}, {"structured_outputs", {{"json_object", false}}}},
                               {});
  EXPECT_EQ(r.response_format, "text");
  for (const char* bad : {R"({"regex": "a"})", R"({"choice": ["a"]})", R"({"json": "{x"})",
                          R"({"json": 3})", R"({"json": {}, "json_object": true})", R"([])"}) {
    EXPECT_EQ(status_of({{"prompt", "x"}, {"structured_outputs", Json::parse(bad)}}, false), 400)
        << bad;
  }
  EXPECT_EQ(status_of({{"prompt", "x"},
                       {"structured_outputs", {{"json_object", true}}},
                       {"response_format", {{"type", "json_object"}}}},
                      false),
            400);
}

TEST(Metrics, HistogramIsCumulative) {
  Histogram h({0.1, 1.0});
  h.observe(0.05);
  h.observe(0.5);
  h.observe(0.5);
  h.observe(3.0);
  std::string out;
  h.render("x", "help", "m=\"a\"", out);
  EXPECT_NE(out.find("x_bucket{m=\"a\",le=\"0.10000000000000001\"} 1\n"), std::string::npos);
  EXPECT_NE(out.find("x_bucket{m=\"a\",le=\"1\"} 3\n"), std::string::npos);
  EXPECT_NE(out.find("x_bucket{m=\"a\",le=\"+Inf\"} 4\n"), std::string::npos);
  EXPECT_NE(out.find("x_sum{m=\"a\"} 4.0499999999999998\n"), std::string::npos);
  EXPECT_NE(out.find("x_count{m=\"a\"} 4\n"), std::string::npos);
}

TEST(Metrics, EngineStatsAppearUnderVllmNames) {
  ServerMetrics m;
  EngineStats s;
  s.running = 3;
  s.kv_blocks_total = 8;
  s.kv_blocks_used = 2;
  s.prefix_cache_queries = 10;
  s.prefix_cache_hits = 4;
  const std::string text = m.render("tiny", s);
  EXPECT_NE(text.find("vllm:num_requests_running{model_name=\"tiny\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("vllm:kv_cache_usage_perc{model_name=\"tiny\"} 0.25\n"), std::string::npos);
  EXPECT_NE(text.find("m2fp4:prefix_cache_hit_rate{model_name=\"tiny\"} 0.40000000000000002\n"),
            std::string::npos);
}

TEST(Sse, Framing) {
  EXPECT_EQ(sse_data("{\"a\":1}"), "data: {\"a\":1}\n\n");
  EXPECT_EQ(sse_done(), "data: [DONE]\n\n");
}

}  // namespace
}  // namespace m2fp4::server
