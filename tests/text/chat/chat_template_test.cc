// ChatTemplate: the transformers apply_chat_template context (None keys dropped, reasoning
// aliased, tools/documents/add_generation_prompt, extra variables), template discovery in a model
// folder, the embedded MiniMax-M2 template, and error reporting. Expected strings come from
// transformers' apply_chat_template(tokenize=False) on the same inputs.
#include "text/chat/chat_template.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "base/error.h"
#include "base/file.h"
#include "text/chat/minimax_m2_template.h"

namespace m2fp4 {
namespace {

using nlohmann::ordered_json;

TEST(ChatTemplate, ContextMatchesTransformers) {
  const ordered_json messages = ordered_json::parse(R"([
    {"role": "assistant", "content": null, "reasoning": "r"},
    {"role": "user", "content": "u", "thinking": "t", "reasoning_content": "rc"}])");
  EXPECT_EQ(render_chat_template("{{ messages }}|{{ tools }}|{{ documents }}|"
                                 "{{ add_generation_prompt }}|{{ bos_token }}",
                                 messages, nullptr, false),
            "[{'thinking': 'r', 'role': 'assistant', 'reasoning': 'r', 'reasoning_content': 'r'}, "
            "{'thinking': 't', 'role': 'user', 'content': 'u', 'reasoning_content': 'rc'}]"
            "|None|None|False|");
  const ordered_json tools =
      ordered_json::parse(R"([{"type": "function", "function": {"name": "f"}}])");
  EXPECT_EQ(render_chat_template(
                "{{ messages }}|{{ tools }}|{{ add_generation_prompt }}|"
                "{{ bos_token }}|{{ enable_thinking }}",
                ordered_json::parse(R"([{"role": "user", "content": "hi"}])"), tools, true,
                ordered_json::parse(R"({"bos_token": "<s>", "enable_thinking": false})")),
            "[{'role': 'user', 'content': 'hi'}]|[{'type': 'function', 'function': {'name': 'f'}}]"
            "|True|<s>|False");
}

TEST(ChatTemplate, ParsesOnceRendersMany) {
  const ChatTemplate tpl(
      "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
      "{% if add_generation_prompt %}<assistant>{% endif %}");
  const ordered_json messages = ordered_json::parse(R"([{"role": "user", "content": "a"}])");
  EXPECT_EQ(tpl.render(messages, nullptr, false), "<user>a");
  EXPECT_EQ(tpl.render(messages, nullptr, true), "<user>a<assistant>");
}

TEST(ChatTemplate, EmbeddedMiniMaxTemplateRendersLikeTransformers) {
  const ordered_json messages = ordered_json::parse(R"([
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "reasoning_content": "Call the tool.",
     "tool_calls": [{"type": "function", "function": {"name": "get_weather",
                     "arguments": {"city": "Paris", "days": 2}}}]},
    {"role": "tool", "content": "sunny"}])");
  const ordered_json tools = ordered_json::parse(R"([{"type": "function", "function": {
    "name": "get_weather", "description": "Weather.", "parameters": {"type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"]}}}])");
  EXPECT_EQ(
      render_chat_template(minimax_m2_chat_template(), messages, tools, true),
      "]~!b[]~b]system\nBe brief.\n\n# Tools\nYou may call one or more tools to assist with the "
      "user query.\nHere are the tools available in JSONSchema "
      "format:\n\n<tools>\n<tool>{\"name\": "
      "\"get_weather\", \"description\": \"Weather.\", \"parameters\": {\"type\": \"object\", "
      "\"properties\": {\"city\": {\"type\": \"string\"}, \"days\": {\"type\": \"integer\"}}, "
      "\"required\": [\"city\"]}}</tool>\n</tools>\n\nWhen making tool calls, use XML format to "
      "invoke tools and pass parameters:\n\n<minimax:tool_call>\n<invoke "
      "name=\"tool-name-1\">\n<parameter "
      "name=\"param-key-1\">param-value-1</parameter>\n<parameter "
      "name=\"param-key-2\">param-value-2</parameter>\n...\n</invoke>\n</"
      "minimax:tool_call>[e~[\n]~b]"
      "user\nWeather in Paris?[e~[\n]~b]ai\n<think>\nCall the tool.\n</think>\n\n\n<minimax:tool_"
      "call>\n<invoke name=\"get_weather\">\n<parameter "
      "name=\"city\">Paris</parameter>\n<parameter "
      "name=\"days\">2</parameter>\n</invoke>\n</"
      "minimax:tool_call>\n[e~[\n]~b]tool\n<response>sunny"
      "</response>[e~[\n]~b]ai\n<think>\n");
}

TEST(ChatTemplate, EmbeddedMiniMaxTemplateEqualsSharedCopy) {
  const std::string shared = std::string(M2FP4_SHARED_DIR) + "/templates/minimax-m2.jinja";
  if (!file_exists(shared)) GTEST_SKIP() << "no " << shared;
  EXPECT_EQ(minimax_m2_chat_template(), read_text_file(shared));
}

class ModelFolder : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("m2fp4_chat_template_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }
  std::filesystem::path dir_;
};

TEST_F(ModelFolder, PicksNamedTemplatesAndSpecialTokens) {
  write("tokenizer_config.json", R"({
    "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
    "eos_token": "</s>", "unk_token": null, "pad_token": "<pad>",
    "additional_special_tokens": ["<x>"],
    "chat_template": [{"name": "default", "template": "default"},
                      {"name": "tool_use", "template": "tools"}]})");
  const ModelChatTemplate without_tools = load_model_chat_template(dir_.string(), false);
  EXPECT_EQ(without_tools.source, "default");
  EXPECT_EQ(without_tools.special_tokens.dump(),
            R"({"bos_token":"<s>","eos_token":"</s>","pad_token":"<pad>"})");
  EXPECT_EQ(load_model_chat_template(dir_.string(), true).source, "tools");
  write("chat_template.jinja", "from the jinja file");
  EXPECT_EQ(load_model_chat_template(dir_.string(), true).source, "from the jinja file");
}

TEST_F(ModelFolder, MissingTemplateIsAClearError) {
  write("tokenizer_config.json", R"({"eos_token": "</s>"})");
  try {
    load_model_chat_template(dir_.string(), false);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has no chat template"), std::string::npos) << e.what();
  }
}

TEST(ChatTemplate, BadInputIsAClearError) {
  auto message_of = [](const std::function<void()>& f) -> std::string {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(message_of([] {
              render_chat_template("x", ordered_json::array(), nullptr, false);
            }).find("empty conversation"),
            std::string::npos);
  EXPECT_NE(message_of([] {
              render_chat_template("x", ordered_json::parse("[1]"), nullptr, false);
            }).find("chat message 0 must be a JSON object"),
            std::string::npos);
  EXPECT_EQ(message_of([] {
              render_chat_template("line 1\n{{ raise_exception('no tools allowed') }}",
                                   ordered_json::parse(R"([{"role": "user"}])"), nullptr, false);
            }),
            "template line 2: no tools allowed");
}

}  // namespace
}  // namespace m2fp4
