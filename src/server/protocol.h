// OpenAI / vLLM request bodies -> validated request structs. Every wrong field is an ApiError
// (400, naming the field) before anything reaches the template or the engine; unknown fields are
// ignored, as vLLM and OpenAI do (llama-benchy sends `cache_prompt`).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/engine.h"

namespace m2fp4::server {

// Defaults a request does not set: generation_config.json's sampling values (vLLM's
// --generation-config auto).
struct GenerationDefaults {
  float temperature = 1.0f;
  float top_p = 1.0f;
  int64_t top_k = 0;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  std::optional<int64_t> max_new_tokens;
  std::vector<int32_t> extra_eos_ids;  // eos_token_id list entries beyond the model's
};
GenerationDefaults read_generation_defaults(const std::string& model_dir);

enum class ToolChoice { kAuto, kNone, kRequired, kNamed };

struct ParsedRequest {
  bool chat = true;
  std::string model;  // as the client named it ("" when absent)
  bool stream = false;
  bool include_usage = false;
  int64_t n = 1;
  SamplingOptions sampling;
  bool max_tokens_given = false;
  std::optional<int64_t> default_max_tokens;  // generation_config's max_new_tokens
  std::vector<std::string> stop;
  bool include_stop_str_in_output = false;
  bool skip_special_tokens = true;
  bool return_token_ids = false;  // vLLM's: each choice/chunk carries its "token_ids"
  bool logprobs = false;
  int64_t top_logprobs = 0;
  std::string response_format = "text";  // text | json_object | json_schema (output_constraint.h)
  nlohmann::ordered_json json_schema;    // json_schema: its "schema" (null when absent)

  // Chat.
  nlohmann::ordered_json messages;  // normalized for the template (arguments as objects)
  nlohmann::ordered_json tools;     // null or the (possibly narrowed) array
  ToolChoice tool_choice = ToolChoice::kAuto;
  std::string tool_choice_name;
  bool parallel_tool_calls = true;
  bool add_generation_prompt = true;
  nlohmann::ordered_json chat_template_kwargs = nlohmann::ordered_json::object();

  // Completions: one entry per prompt of the request (a string, a list of strings, a list of
  // token ids or a list of token-id lists); each runs as its own engine request(s).
  struct Prompt {
    std::string text;
    std::vector<int32_t> ids;  // when the prompt was given as token ids
    bool is_ids = false;
  };
  std::vector<Prompt> prompts;
  bool echo = false;
  // echo with max_tokens 0 (vLLM's "echo without generation"): the answer is the prompt alone.
  bool echo_only = false;
  bool add_special_tokens = true;
};

// Parses a /v1/chat/completions body (already depth-checked JSON).
ParsedRequest parse_chat_request(const nlohmann::ordered_json& body,
                                 const GenerationDefaults& defaults);
// Parses a /v1/completions body.
ParsedRequest parse_completion_request(const nlohmann::ordered_json& body,
                                       const GenerationDefaults& defaults);

// Chat messages checked and normalized for the template: roles known, content a string, a list
// of text parts or null, tool_calls' arguments parsed from JSON strings into objects (the
// template iterates them), `developer` treated as `system`. Used by chat and /tokenize.
nlohmann::ordered_json normalize_messages(const nlohmann::ordered_json& messages);
// Tools checked: an array of {"type": "function", "function": {"name", ...}}.
nlohmann::ordered_json normalize_tools(const nlohmann::ordered_json& tools);

// Resolves max_tokens against the context: absent -> what is left of max_model_len (capped by
// generation_config's max_new_tokens); prompt + max_tokens over max_model_len -> ApiError as
// vLLM words it.
void resolve_max_tokens(ParsedRequest& req, int64_t prompt_tokens, int64_t max_model_len);

}  // namespace m2fp4::server
