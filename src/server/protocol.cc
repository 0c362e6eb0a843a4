#include "server/protocol.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "base/error.h"
#include "base/file.h"
#include "server/api_error.h"

namespace m2fp4::server {
namespace {

using Json = nlohmann::ordered_json;

// Largest count of logprobs a request may ask for (vLLM's default max_logprobs).
constexpr int64_t kMaxLogprobs = 20;
constexpr int64_t kMaxN = 16;
constexpr size_t kMaxPrompts = 256;  // a /v1/completions prompt list
constexpr size_t kMaxStopStrings = 16;
constexpr size_t kMaxStopStringBytes = 1024;

bool present(const Json& body, const char* key) {
  return body.contains(key) && !body[key].is_null();
}

double get_number(const Json& body, const char* key, double lo, double hi) {
  const Json& v = body[key];
  if (!v.is_number()) throw ApiError(400, std::string("'") + key + "' must be a number", key);
  const double d = v.get<double>();
  if (!std::isfinite(d) || d < lo || d > hi) {
    throw ApiError(400,
                   std::string("'") + key + "' must be in [" + std::to_string(lo) + ", " +
                       std::to_string(hi) + "], got " + v.dump(),
                   key);
  }
  return d;
}

int64_t get_int(const Json& body, const char* key, int64_t lo, int64_t hi) {
  const Json& v = body[key];
  bool integral = v.is_number_integer();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    integral = std::isfinite(d) && std::floor(d) == d && std::fabs(d) < 9e15;
  }
  if (!integral) throw ApiError(400, std::string("'") + key + "' must be an integer", key);
  // Unsigned values past int64 read as huge: compare as double first.
  const double d = v.get<double>();
  if (d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
    throw ApiError(400,
                   std::string("'") + key + "' must be in [" + std::to_string(lo) + ", " +
                       std::to_string(hi) + "], got " + v.dump(),
                   key);
  }
  return v.is_number_float() ? static_cast<int64_t>(d) : v.get<int64_t>();
}

bool get_bool(const Json& body, const char* key) {
  if (!body[key].is_boolean()) {
    throw ApiError(400, std::string("'") + key + "' must be a boolean", key);
  }
  return body[key].get<bool>();
}

std::string get_string(const Json& body, const char* key) {
  if (!body[key].is_string()) {
    throw ApiError(400, std::string("'") + key + "' must be a string", key);
  }
  return body[key].get<std::string>();
}

// The fields /v1/chat/completions and /v1/completions share.
void parse_common(const Json& body, const GenerationDefaults& defaults, ParsedRequest& req) {
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object");
  if (present(body, "model")) req.model = get_string(body, "model");
  if (present(body, "stream")) req.stream = get_bool(body, "stream");
  if (present(body, "stream_options")) {
    const Json& so = body["stream_options"];
    if (!so.is_object())
      throw ApiError(400, "'stream_options' must be an object", "stream_options");
    if (!req.stream) {
      throw ApiError(400, "'stream_options' is only allowed when 'stream' is true",
                     "stream_options");
    }
    if (present(so, "include_usage")) req.include_usage = get_bool(so, "include_usage");
  }
  if (present(body, "n")) req.n = get_int(body, "n", 1, kMaxN);

  SamplingOptions& s = req.sampling;
  s.temperature = defaults.temperature;
  s.top_p = defaults.top_p;
  s.top_k = defaults.top_k;
  s.min_p = defaults.min_p;
  s.repetition_penalty = defaults.repetition_penalty;
  req.default_max_tokens = defaults.max_new_tokens;
  if (present(body, "temperature")) {
    s.temperature = static_cast<float>(get_number(body, "temperature", 0.0, 100.0));
  }
  if (present(body, "top_p")) s.top_p = static_cast<float>(get_number(body, "top_p", 0.0, 1.0));
  if (s.top_p <= 0.0f) throw ApiError(400, "'top_p' must be in (0, 1]", "top_p");
  if (present(body, "top_k")) s.top_k = get_int(body, "top_k", -1, 1 << 30);
  if (present(body, "min_p")) s.min_p = static_cast<float>(get_number(body, "min_p", 0.0, 1.0));
  if (present(body, "seed")) {
    s.seed = static_cast<uint64_t>(get_int(body, "seed", std::numeric_limits<int64_t>::min(),
                                           std::numeric_limits<int64_t>::max()));
  }
  if (present(body, "presence_penalty")) {
    s.presence_penalty = static_cast<float>(get_number(body, "presence_penalty", -2.0, 2.0));
  }
  if (present(body, "frequency_penalty")) {
    s.frequency_penalty = static_cast<float>(get_number(body, "frequency_penalty", -2.0, 2.0));
  }
  if (present(body, "repetition_penalty")) {
    s.repetition_penalty = static_cast<float>(get_number(body, "repetition_penalty", 0.0, 100.0));
    if (s.repetition_penalty <= 0.0f) {
      throw ApiError(400, "'repetition_penalty' must be positive", "repetition_penalty");
    }
  }
  // max_completion_tokens is the newer name; either one sets the limit.
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    if (present(body, key)) {
      // 0 only on /v1/completions with echo (parse_completion_request checks).
      s.max_tokens = get_int(body, key, req.chat ? 1 : 0, std::numeric_limits<int32_t>::max());
      req.max_tokens_given = true;
    }
  }
  if (present(body, "min_tokens")) {
    s.min_tokens = get_int(body, "min_tokens", 0, std::numeric_limits<int32_t>::max());
  }
  if (present(body, "ignore_eos")) s.ignore_eos = get_bool(body, "ignore_eos");
  if (present(body, "stop_token_ids")) {
    const Json& ids = body["stop_token_ids"];
    if (!ids.is_array()) throw ApiError(400, "'stop_token_ids' must be an array", "stop_token_ids");
    for (const auto& id : ids) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
          id.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
        throw ApiError(400, "'stop_token_ids' must hold token ids", "stop_token_ids");
      }
      s.stop_token_ids.push_back(id.get<int32_t>());
    }
  }
  for (int32_t id : defaults.extra_eos_ids) s.stop_token_ids.push_back(id);
  if (present(body, "stop")) {
    const Json& st = body["stop"];
    if (st.is_string()) {
      req.stop.push_back(st.get<std::string>());
    } else if (st.is_array()) {
      for (const auto& x : st) {
        if (!x.is_string()) throw ApiError(400, "'stop' must be a string or strings", "stop");
        req.stop.push_back(x.get<std::string>());
      }
    } else {
      throw ApiError(400, "'stop' must be a string or an array of strings", "stop");
    }
    if (req.stop.size() > kMaxStopStrings) {
      throw ApiError(400, "at most 16 stop strings", "stop");
    }
    for (const auto& x : req.stop) {
      if (x.size() > kMaxStopStringBytes) {
        throw ApiError(400, "a stop string is longer than 1024 bytes", "stop");
      }
    }
  }
  if (present(body, "include_stop_str_in_output")) {
    req.include_stop_str_in_output = get_bool(body, "include_stop_str_in_output");
  }
  if (present(body, "return_token_ids")) req.return_token_ids = get_bool(body, "return_token_ids");
  if (present(body, "skip_special_tokens")) {
    req.skip_special_tokens = get_bool(body, "skip_special_tokens");
  }
  if (present(body, "response_format")) {
    const Json& rf = body["response_format"];
    if (!rf.is_object() || !rf.contains("type") || !rf["type"].is_string()) {
      throw ApiError(400, "'response_format' must be an object with a string 'type'",
                     "response_format");
    }
    req.response_format = rf["type"].get<std::string>();
    if (req.response_format != "text" && req.response_format != "json_object" &&
        req.response_format != "json_schema") {
      throw ApiError(400,
                     "'response_format.type' must be text, json_object or json_schema, got '" +
                         req.response_format + "'",
                     "response_format");
    }
    if (req.response_format == "json_schema" &&
        (!rf.contains("json_schema") || !rf["json_schema"].is_object())) {
      throw ApiError(400, "'response_format.json_schema' must be an object", "response_format");
    }
    if (req.response_format == "json_schema" && rf["json_schema"].contains("schema")) {
      req.json_schema = rf["json_schema"]["schema"];
      if (!req.json_schema.is_object() && !req.json_schema.is_boolean()) {
        throw ApiError(400, "'response_format.json_schema.schema' must be an object",
                       "response_format");
      }
    }
  }
  // vLLM's structured_outputs: "json" (a schema, or its JSON text) and "json_object" mean what
  // response_format's json_schema and json_object mean; the other kinds have no matcher here.
  if (present(body, "structured_outputs")) {
    const Json& so = body["structured_outputs"];
    const char* param = "structured_outputs";
    if (!so.is_object()) throw ApiError(400, "'structured_outputs' must be an object", param);
    for (const char* kind : {"regex", "choice", "grammar", "structural_tag"}) {
      if (present(so, kind)) {
        throw ApiError(400,
                       std::string("'structured_outputs.") + kind +
                           "' is not supported (only json and json_object)",
                       param);
      }
    }
    const bool json_object = present(so, "json_object") && get_bool(so, "json_object");
    if (present(so, "json") || json_object) {
      if (req.response_format != "text") {
        throw ApiError(400, "give either 'response_format' or 'structured_outputs', not both",
                       param);
      }
      if (present(so, "json") && json_object) {
        throw ApiError(400, "'structured_outputs' takes one of json and json_object", param);
      }
    }
    if (json_object) req.response_format = "json_object";
    if (present(so, "json")) {
      Json schema = so["json"];
      if (schema.is_string()) {
        try {
          schema = Json::parse(schema.get<std::string>());
        } catch (const nlohmann::json::exception&) {
          throw ApiError(400, "'structured_outputs.json' is not valid JSON", param);
        }
      }
      if (!schema.is_object() && !schema.is_boolean()) {
        throw ApiError(400, "'structured_outputs.json' must be a JSON schema object", param);
      }
      req.response_format = "json_schema";
      req.json_schema = std::move(schema);
    }
  }
}

}  // namespace

GenerationDefaults read_generation_defaults(const std::string& model_dir) {
  GenerationDefaults d;
  const std::string path = model_dir + "/generation_config.json";
  if (!file_exists(path)) return d;
  Json g;
  try {
    g = Json::parse(read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": not valid JSON: ", e.what());
  }
  if (!g.is_object()) return d;
  auto num = [&](const char* key, auto& out) {
    if (g.contains(key) && g[key].is_number()) out = g[key].get<std::decay_t<decltype(out)>>();
  };
  num("temperature", d.temperature);
  num("top_p", d.top_p);
  num("top_k", d.top_k);
  num("min_p", d.min_p);
  num("repetition_penalty", d.repetition_penalty);
  if (g.contains("max_new_tokens") && g["max_new_tokens"].is_number_integer()) {
    d.max_new_tokens = g["max_new_tokens"].get<int64_t>();
  }
  if (g.contains("eos_token_id") && g["eos_token_id"].is_array()) {
    for (const auto& id : g["eos_token_id"]) {
      if (id.is_number_integer()) d.extra_eos_ids.push_back(id.get<int32_t>());
    }
  }
  return d;
}

nlohmann::ordered_json normalize_tools(const nlohmann::ordered_json& tools) {
  if (!tools.is_array()) throw ApiError(400, "'tools' must be an array", "tools");
  Json out = Json::array();
  for (const auto& t : tools) {
    if (!t.is_object() || !t.contains("function") || !t["function"].is_object()) {
      throw ApiError(400, "each tool must be {\"type\": \"function\", \"function\": {...}}",
                     "tools");
    }
    if (t.contains("type") && t["type"] != "function") {
      throw ApiError(400, "only tools of type 'function' are supported", "tools");
    }
    const Json& f = t["function"];
    if (!f.contains("name") || !f["name"].is_string() || f["name"].get<std::string>().empty()) {
      throw ApiError(400, "each tool function needs a non-empty string 'name'", "tools");
    }
    if (f.contains("parameters") && !f["parameters"].is_null() && !f["parameters"].is_object()) {
      throw ApiError(400, "a tool's 'parameters' must be a JSON Schema object", "tools");
    }
    if (f.contains("description") && !f["description"].is_null() && !f["description"].is_string()) {
      throw ApiError(400, "a tool's 'description' must be a string", "tools");
    }
    Json tool = t;
    tool["type"] = "function";
    out.push_back(std::move(tool));
  }
  return out;
}

nlohmann::ordered_json normalize_messages(const nlohmann::ordered_json& messages) {
  if (!messages.is_array() || messages.empty()) {
    throw ApiError(400, "'messages' must be a non-empty array", "messages");
  }
  Json out = Json::array();
  for (const auto& m : messages) {
    if (!m.is_object()) throw ApiError(400, "each message must be an object", "messages");
    if (!m.contains("role") || !m["role"].is_string()) {
      throw ApiError(400, "each message needs a string 'role'", "messages");
    }
    std::string role = m["role"].get<std::string>();
    if (role == "developer") role = "system";
    if (role != "system" && role != "user" && role != "assistant" && role != "tool") {
      throw ApiError(400, "unknown message role '" + m["role"].get<std::string>() + "'",
                     "messages");
    }
    Json msg = m;
    msg["role"] = role;
    if (m.contains("content")) {
      const Json& c = m["content"];
      if (c.is_array()) {
        // Text parts are joined; the template sees a string (images are not supported).
        std::string text;
        for (const auto& part : c) {
          if (part.is_string()) {
            text += part.get<std::string>();
            continue;
          }
          if (!part.is_object() || !part.contains("type") || part["type"] != "text" ||
              !part.contains("text") || !part["text"].is_string()) {
            throw ApiError(400, "content parts must be {\"type\": \"text\", \"text\": ...}",
                           "messages");
          }
          text += part["text"].get<std::string>();
        }
        msg["content"] = text;
      } else if (!c.is_string() && !c.is_null()) {
        throw ApiError(400, "message 'content' must be a string, an array of parts or null",
                       "messages");
      }
    } else if (role != "assistant") {
      throw ApiError(400, "a " + role + " message needs 'content'", "messages");
    }
    if ((role == "user" || role == "system") && msg["content"].is_null()) {
      throw ApiError(400, "a " + role + " message needs 'content'", "messages");
    }
    for (const char* key : {"reasoning_content", "reasoning"}) {
      if (m.contains(key) && !m[key].is_null() && !m[key].is_string()) {
        throw ApiError(400, std::string("'") + key + "' must be a string", "messages");
      }
    }
    if (m.contains("tool_calls") && !m["tool_calls"].is_null()) {
      if (role != "assistant" || !m["tool_calls"].is_array()) {
        throw ApiError(400, "'tool_calls' must be an array on an assistant message", "messages");
      }
      Json calls = Json::array();
      for (const auto& call : m["tool_calls"]) {
        if (!call.is_object() || !call.contains("function") || !call["function"].is_object() ||
            !call["function"].contains("name") || !call["function"]["name"].is_string()) {
          throw ApiError(400, "each tool call needs a function with a string 'name'", "messages");
        }
        Json fixed = call;
        Json& args = fixed["function"]["arguments"];
        if (args.is_string()) {
          // OpenAI clients send arguments as a JSON string; the template needs a mapping.
          try {
            args = Json::parse(args.get<std::string>());
          } catch (const nlohmann::json::exception&) {
            throw ApiError(400, "tool call arguments are not valid JSON", "messages");
          }
        }
        if (args.is_null()) args = Json::object();
        if (!args.is_object()) {
          throw ApiError(400, "tool call arguments must be a JSON object", "messages");
        }
        calls.push_back(std::move(fixed));
      }
      msg["tool_calls"] = std::move(calls);
    }
    out.push_back(std::move(msg));
  }
  return out;
}

ParsedRequest parse_chat_request(const nlohmann::ordered_json& body,
                                 const GenerationDefaults& defaults) {
  ParsedRequest req;
  req.chat = true;
  parse_common(body, defaults, req);
  if (!body.contains("messages")) throw ApiError(400, "'messages' is required", "messages");
  req.messages = normalize_messages(body["messages"]);
  if (present(body, "logprobs")) req.logprobs = get_bool(body, "logprobs");
  if (present(body, "top_logprobs")) {
    req.top_logprobs = get_int(body, "top_logprobs", 0, kMaxLogprobs);
    if (!req.logprobs) {
      throw ApiError(400, "'top_logprobs' needs 'logprobs': true", "top_logprobs");
    }
  }
  if (req.logprobs) req.sampling.logprobs = req.top_logprobs;
  if (present(body, "tools")) {
    req.tools = normalize_tools(body["tools"]);
    if (req.tools.empty()) req.tools = nullptr;
  }
  if (present(body, "tool_choice")) {
    const Json& tc = body["tool_choice"];
    if (tc.is_string()) {
      const std::string s = tc.get<std::string>();
      if (s == "auto") {
        req.tool_choice = ToolChoice::kAuto;
      } else if (s == "none") {
        req.tool_choice = ToolChoice::kNone;
      } else if (s == "required") {
        req.tool_choice = ToolChoice::kRequired;
      } else {
        throw ApiError(400, "'tool_choice' must be auto, none, required or a named function",
                       "tool_choice");
      }
    } else if (tc.is_object() && tc.contains("function") && tc["function"].is_object() &&
               tc["function"].contains("name") && tc["function"]["name"].is_string()) {
      req.tool_choice = ToolChoice::kNamed;
      req.tool_choice_name = tc["function"]["name"].get<std::string>();
    } else {
      throw ApiError(400, "'tool_choice' must be auto, none, required or a named function",
                     "tool_choice");
    }
    if (req.tool_choice != ToolChoice::kNone && req.tool_choice != ToolChoice::kAuto &&
        req.tools.is_null()) {
      throw ApiError(400, "'tool_choice' needs 'tools'", "tool_choice");
    }
    if (req.tool_choice == ToolChoice::kNamed) {
      // The named tool only: in the prompt and in the parser.
      Json narrowed = Json::array();
      for (const auto& t : req.tools) {
        if (t["function"]["name"] == req.tool_choice_name) narrowed.push_back(t);
      }
      if (narrowed.empty()) {
        throw ApiError(400, "tool_choice names '" + req.tool_choice_name + "', not in 'tools'",
                       "tool_choice");
      }
      req.tools = std::move(narrowed);
    }
  }
  if (present(body, "parallel_tool_calls")) {
    req.parallel_tool_calls = get_bool(body, "parallel_tool_calls");
  }
  if (present(body, "add_generation_prompt")) {
    req.add_generation_prompt = get_bool(body, "add_generation_prompt");
  }
  if (present(body, "chat_template_kwargs")) {
    if (!body["chat_template_kwargs"].is_object()) {
      throw ApiError(400, "'chat_template_kwargs' must be an object", "chat_template_kwargs");
    }
    req.chat_template_kwargs = body["chat_template_kwargs"];
  }
  return req;
}

ParsedRequest parse_completion_request(const nlohmann::ordered_json& body,
                                       const GenerationDefaults& defaults) {
  ParsedRequest req;
  req.chat = false;
  parse_common(body, defaults, req);
  if (!body.contains("prompt")) throw ApiError(400, "'prompt' is required", "prompt");
  const Json& p = body["prompt"];
  auto ids_of = [](const Json& arr) {
    ParsedRequest::Prompt prompt;
    prompt.is_ids = true;
    for (const auto& id : arr) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
          id.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
        throw ApiError(400, "'prompt' token ids must be non-negative integers", "prompt");
      }
      prompt.ids.push_back(id.get<int32_t>());
    }
    return prompt;
  };
  // As OpenAI and vLLM accept: a string, a list of strings, a list of token ids, or a list of
  // token-id lists. One kind per request (a list mixing them is an error, as in vLLM).
  if (p.is_string()) {
    req.prompts.push_back({p.get<std::string>(), {}, false});
  } else if (!p.is_array()) {
    throw ApiError(400,
                   "'prompt' must be a string, a list of strings, a list of token ids or a list "
                   "of token-id lists",
                   "prompt");
  } else if (p.empty()) {
    throw ApiError(400, "'prompt' must not be an empty list", "prompt");
  } else if (p[0].is_number()) {
    req.prompts.push_back(ids_of(p));  // one prompt of token ids: its length is the context's
  } else if (p.size() > kMaxPrompts) {
    throw ApiError(400, "'prompt' lists at most " + std::to_string(kMaxPrompts) + " prompts",
                   "prompt");
  } else {
    for (const auto& item : p) {
      if (item.type() != p[0].type() || !(item.is_string() || item.is_array())) {
        throw ApiError(400,
                       "'prompt' list items must be all strings or all token-id lists, not "
                       "mixed",
                       "prompt");
      }
      if (item.is_string()) {
        req.prompts.push_back({item.get<std::string>(), {}, false});
      } else {
        req.prompts.push_back(ids_of(item));
      }
    }
  }
  if (present(body, "echo")) req.echo = get_bool(body, "echo");
  if (req.max_tokens_given && req.sampling.max_tokens == 0) {
    if (!req.echo) {
      throw ApiError(400, "'max_tokens' must be at least 1 (0 only with 'echo': true)",
                     "max_tokens");
    }
    req.echo_only = true;
  }
  if (present(body, "logprobs")) {
    req.top_logprobs = get_int(body, "logprobs", 0, kMaxLogprobs);
    req.logprobs = true;
    req.sampling.logprobs = req.top_logprobs;
  }
  if (present(body, "add_special_tokens")) {
    req.add_special_tokens = get_bool(body, "add_special_tokens");
  }
  if (present(body, "suffix")) throw ApiError(400, "'suffix' is not supported", "suffix");
  return req;
}

void resolve_max_tokens(ParsedRequest& req, int64_t prompt_tokens, int64_t max_model_len) {
  if (prompt_tokens >= max_model_len) {
    throw ApiError(400,
                   "This model's maximum context length is " + std::to_string(max_model_len) +
                       " tokens. However, your prompt has " + std::to_string(prompt_tokens) +
                       " tokens. Please reduce the length of the input.",
                   "messages");
  }
  const int64_t room = max_model_len - prompt_tokens;
  if (!req.max_tokens_given) {
    req.sampling.max_tokens = room;
    if (req.default_max_tokens && *req.default_max_tokens > 0) {
      req.sampling.max_tokens = std::min(room, *req.default_max_tokens);
    }
    req.sampling.min_tokens = std::min(req.sampling.min_tokens, req.sampling.max_tokens);
    return;
  }
  if (req.sampling.max_tokens > room) {
    throw ApiError(400,
                   "This model's maximum context length is " + std::to_string(max_model_len) +
                       " tokens. However, you requested " +
                       std::to_string(prompt_tokens + req.sampling.max_tokens) + " tokens (" +
                       std::to_string(prompt_tokens) + " in the messages, " +
                       std::to_string(req.sampling.max_tokens) +
                       " in the completion). Please reduce the length of the messages or "
                       "completion.",
                   "max_tokens");
  }
  if (req.sampling.min_tokens > req.sampling.max_tokens) {
    throw ApiError(400, "'min_tokens' must not exceed 'max_tokens'", "min_tokens");
  }
}

}  // namespace m2fp4::server
