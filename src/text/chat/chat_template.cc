// The transformers-compatible wrapper around the Jinja renderer (context construction and
// template discovery in a model folder).
#include "text/chat/chat_template.h"

#include <filesystem>

#include "base/error.h"
#include "base/file.h"
#include "text/jinja/jinja_eval.h"
#include "text/jinja/jinja_parser.h"

namespace m2fp4 {
namespace {

using jinja::DictData;
using jinja::Value;

constexpr const char* kReasoningFields[] = {"reasoning_content", "thinking", "reasoning"};
constexpr const char* kSpecialTokens[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                          "pad_token", "cls_token", "mask_token"};

// transformers: drop None-valued keys (_normalize_chat_messages), then alias the reasoning
// fields (_alias_reasoning_fields).
Value prepare_message(const nlohmann::ordered_json& message, size_t index) {
  M2_CHECK(message.is_object(), "chat message ", index,
           " must be a JSON object, got: ", message.dump());
  DictData d;
  for (const auto& [k, v] : message.items()) {
    if (!v.is_null()) d.entries.emplace_back(Value::string(k), jinja::from_json(v));
  }
  const Value* reasoning = nullptr;
  for (const char* field : kReasoningFields) {
    if ((reasoning = d.find(std::string_view(field)))) break;
  }
  if (!reasoning) return Value::dict(std::move(d));
  const Value r = *reasoning;
  DictData aliased;
  aliased.set(Value::string("thinking"), r);
  for (const auto& [k, v] : d.entries) aliased.set(k, v);
  aliased.set(Value::string("reasoning_content"), r);
  return Value::dict(std::move(aliased));
}

}  // namespace

ChatTemplate::ChatTemplate(std::string_view source) : template_(jinja::parse_template(source)) {}

std::string ChatTemplate::render(const nlohmann::ordered_json& messages,
                                 const nlohmann::ordered_json& tools, bool add_generation_prompt,
                                 const nlohmann::ordered_json& extra_context,
                                 const jinja::RenderLimits& limits) const {
  M2_CHECK(messages.is_array(), "chat messages must be a JSON array");
  M2_CHECK(!messages.empty(),
           "Cannot apply chat template to an empty conversation. Provide at least one message.");
  M2_CHECK(tools.is_null() || tools.is_array(), "tools must be a JSON array or null");
  M2_CHECK(extra_context.is_null() || extra_context.is_object(),
           "extra template context must be a JSON object");
  std::vector<Value> prepared;
  for (size_t i = 0; i < messages.size(); ++i) prepared.push_back(prepare_message(messages[i], i));
  if (tools.is_array()) {
    for (const auto& tool : tools) {
      M2_CHECK(tool.is_object(),
               "each tool must be a JSON object (a JSON schema), got: ", tool.dump());
    }
  }
  DictData context;
  context.set(Value::string("messages"), Value::list(std::move(prepared)));
  context.set(Value::string("tools"), tools.is_null() ? Value::none() : jinja::from_json(tools));
  context.set(Value::string("documents"), Value::none());
  context.set(Value::string("add_generation_prompt"), Value::boolean(add_generation_prompt));
  if (extra_context.is_object()) {
    for (const auto& [k, v] : extra_context.items()) {
      M2_CHECK(k != "messages" && k != "tools" && k != "documents" && k != "add_generation_prompt",
               "extra template context may not set '", k, "' (it has its own argument)");
      context.set(Value::string(k), jinja::from_json(v));
    }
  }
  jinja::Interpreter interp(template_, limits);
  return interp.render(context);
}

std::string render_chat_template(std::string_view template_source,
                                 const nlohmann::ordered_json& messages,
                                 const nlohmann::ordered_json& tools, bool add_generation_prompt,
                                 const nlohmann::ordered_json& extra_context,
                                 const jinja::RenderLimits& limits) {
  return ChatTemplate(template_source)
      .render(messages, tools, add_generation_prompt, extra_context, limits);
}

ModelChatTemplate load_model_chat_template(const std::string& model_dir, bool with_tools) {
  namespace fs = std::filesystem;
  ModelChatTemplate out;
  const fs::path dir(model_dir);
  const fs::path config_path = dir / "tokenizer_config.json";
  nlohmann::ordered_json config = nlohmann::ordered_json::object();
  if (file_exists(config_path.string())) {
    try {
      config = nlohmann::ordered_json::parse(read_text_file(config_path.string()));
    } catch (const nlohmann::json::exception& e) {
      fail(config_path.string(), " is not valid JSON: ", e.what());
    }
    M2_CHECK(config.is_object(), config_path.string(), " must hold a JSON object");
  }
  for (const char* name : kSpecialTokens) {
    if (!config.contains(name)) continue;
    const auto& token = config[name];
    if (token.is_string()) {
      out.special_tokens[name] = token;
    } else if (token.is_object() && token.contains("content") && token["content"].is_string()) {
      out.special_tokens[name] = token["content"];
    } else {
      M2_CHECK(token.is_null(), config_path.string(), ": ", name,
               " must be a string, an AddedToken object or null");
    }
  }
  const fs::path jinja_path = dir / "chat_template.jinja";
  if (file_exists(jinja_path.string())) {
    out.source = read_text_file(jinja_path.string());
    return out;
  }
  M2_CHECK(config.contains("chat_template") && !config["chat_template"].is_null(), model_dir,
           " has no chat template (neither chat_template.jinja nor tokenizer_config.json's "
           "\"chat_template\")");
  const auto& tpl = config["chat_template"];
  if (tpl.is_string()) {
    out.source = tpl.get<std::string>();
    return out;
  }
  M2_CHECK(tpl.is_array(), config_path.string(),
           ": chat_template must be a string or a list of {\"name\", \"template\"}");
  const nlohmann::ordered_json* chosen = nullptr;
  const nlohmann::ordered_json* fallback = nullptr;
  for (const auto& entry : tpl) {
    M2_CHECK(entry.is_object() && entry.contains("name") && entry.contains("template") &&
                 entry["template"].is_string(),
             config_path.string(), ": each chat_template entry needs \"name\" and \"template\"");
    if (with_tools && entry["name"] == "tool_use") chosen = &entry;
    if (entry["name"] == "default") fallback = &entry;
  }
  if (!chosen) chosen = fallback;
  M2_CHECK(chosen, config_path.string(),
           " has several chat templates and none is named \"default\"");
  out.source = (*chosen)["template"].get<std::string>();
  return out;
}

}  // namespace m2fp4
