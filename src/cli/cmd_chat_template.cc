// m2fp4 chat-template: renders a chat template the way transformers' apply_chat_template
// (tokenize=False) does, and prints the text exactly (no newline added).
//
//   m2fp4 chat-template (--template FILE | --model DIR) --messages FILE.json [--tools FILE.json]
//                       [--add-generation-prompt] [--context JSON]
//
// --model reads DIR/chat_template.jinja or DIR/tokenizer_config.json and passes the tokenizer's
// special tokens (bos_token, eos_token, ...) as transformers does; --context adds template
// variables as a JSON object (they override the special tokens). FILE may be - for stdin.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/file.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "text/chat/chat_template.h"

namespace m2fp4::cli {
namespace {

std::string read_input(const std::string& path) {
  if (path == "-") {
    return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  M2_CHECK(file_exists(path), "no such file: ", path);
  return read_text_file(path);
}

nlohmann::ordered_json parse_json(const std::string& text, const std::string& what) {
  try {
    return nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(what, " is not valid JSON: ", e.what());
  }
}

}  // namespace

int cmd_chat_template(int argc, char** argv) {
  CLI::App app("Render a chat template like transformers' apply_chat_template(tokenize=False).",
               "m2fp4 chat-template");
  std::string template_file, model_dir, messages_file, tools_file, context_json;
  bool add_generation_prompt = false;
  auto* tpl = app.add_option("--template", template_file, "Jinja chat template file");
  auto* model = app.add_option("--model", model_dir,
                               "model folder (chat_template.jinja or tokenizer_config.json)");
  tpl->excludes(model);
  app.add_option("--messages", messages_file, "JSON file with the list of messages (- = stdin)")
      ->required();
  app.add_option("--tools", tools_file, "JSON file with the list of tools");
  app.add_flag("--add-generation-prompt", add_generation_prompt,
               "end with the assistant header the model continues from");
  app.add_option("--context", context_json,
                 "extra template variables as a JSON object, e.g. '{\"bos_token\": \"<s>\"}'");
  if (const int rc = parse_args(app, argc, argv); rc >= 0) return rc;
  if (template_file.empty() && model_dir.empty()) {
    std::fprintf(stderr, "%s: error: one of --template or --model is required\n",
                 app.get_name().c_str());
    return kUsageError;
  }
  return run_guarded(app.get_name(), [&] {
    const nlohmann::ordered_json messages = parse_json(read_input(messages_file), messages_file);
    nlohmann::ordered_json tools = nullptr;
    if (!tools_file.empty()) tools = parse_json(read_input(tools_file), tools_file);
    nlohmann::ordered_json context = nlohmann::ordered_json::object();
    std::string source;
    if (!model_dir.empty()) {
      ModelChatTemplate found = load_model_chat_template(model_dir, !tools.is_null());
      source = std::move(found.source);
      context = std::move(found.special_tokens);
    } else {
      source = read_input(template_file);
    }
    if (!context_json.empty()) {
      const nlohmann::ordered_json extra = parse_json(context_json, "--context");
      M2_CHECK(extra.is_object(), "--context must be a JSON object");
      for (const auto& [k, v] : extra.items()) context[k] = v;
    }
    const std::string text =
        render_chat_template(source, messages, tools, add_generation_prompt, context);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    return 0;
  });
}

}  // namespace m2fp4::cli
