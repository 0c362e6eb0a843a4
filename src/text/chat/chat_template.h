// Chat templates rendered the way transformers' `apply_chat_template(..., tokenize=False)` does:
// the same Jinja environment (see jinja_eval.h) and the same template context:
//   messages              the conversation, each message with its None-valued keys dropped and
//                         its reasoning aliased (reasoning_content / thinking / reasoning: the
//                         first non-null one is copied to `thinking` (first key) and
//                         `reasoning_content` (last key), as transformers' _alias_reasoning_fields)
//   tools                 the tool list, or None
//   documents             None
//   add_generation_prompt bool
//   bos_token, eos_token, unk_token, sep_token, pad_token, cls_token, mask_token
//                         the tokenizer's special tokens that are set (from tokenizer_config.json)
//   ...                   any extra keyword arguments (they override the special tokens)
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "text/jinja/jinja_limits.h"

namespace m2fp4 {

namespace jinja {
struct Template;
}

class ChatTemplate {
 public:
  // Parses the template once; syntax errors raise m2fp4::Error("template line N: ...").
  explicit ChatTemplate(std::string_view source);

  // Renders a conversation. `messages` is a JSON array of message objects; `tools` is null or
  // an array of tool schemas; `extra_context` is null or an object of further template
  // variables (special tokens, enable_thinking, ...). Template errors (raise_exception, type
  // errors, undefined values used wrongly) raise m2fp4::Error("template line N: ...").
  // Each call renders in its own interpreter, so concurrent calls on one ChatTemplate are safe.
  // `limits` bound the render's output size, work and nesting (a server passes per-request
  // limits); messages/tools nested deeper than jinja::kMaxValueDepth are rejected.
  std::string render(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                     bool add_generation_prompt,
                     const nlohmann::ordered_json& extra_context = nullptr,
                     const jinja::RenderLimits& limits = {}) const;

 private:
  std::shared_ptr<const jinja::Template> template_;
};

// One-shot parse + render.
std::string render_chat_template(std::string_view template_source,
                                 const nlohmann::ordered_json& messages,
                                 const nlohmann::ordered_json& tools, bool add_generation_prompt,
                                 const nlohmann::ordered_json& extra_context = nullptr,
                                 const jinja::RenderLimits& limits = {});

// A model folder's chat template, found as transformers finds it: chat_template.jinja if present,
// else tokenizer_config.json's "chat_template" (a string, or a list of {"name", "template"} from
// which "tool_use" is picked when tools are given and it exists, else "default").
// `special_tokens` holds the set special tokens of tokenizer_config.json as strings (an
// AddedToken object contributes its "content").
struct ModelChatTemplate {
  std::string source;
  nlohmann::ordered_json special_tokens = nlohmann::ordered_json::object();
};
ModelChatTemplate load_model_chat_template(const std::string& model_dir, bool with_tools);

}  // namespace m2fp4
