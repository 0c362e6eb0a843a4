// m2fp4 chat-template: renders a chat template the way transformers' apply_chat_template
// (tokenize=False) does, and prints the text exactly (no newline added).
//
//   m2fp4 chat-template (--template FILE | --model DIR) --messages FILE.json [--tools FILE.json]
//                       [--add-generation-prompt] [--context JSON]
//   m2fp4 chat-template (--template FILE | --model DIR) --batch FILE.jsonl
//
// --batch renders many conversations with one parse of the template (parity tests, template
// checks): each input line is {"messages": [...], "tools": [...] or null,
// "add_generation_prompt": bool, "context": {...}} and each output line is {"text": "..."} or
// {"error": "..."} (a template error of that render; the others go on).
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

// One JSON line per input line; a render's error is reported in its line, not raised.
void render_batch(const ChatTemplate& chat_template, const std::string& input,
                  const nlohmann::ordered_json& base_context, const jinja::RenderLimits& limits) {
  size_t line_start = 0;
  int line_number = 0;
  while (line_start < input.size()) {
    size_t line_end = input.find('\n', line_start);
    if (line_end == std::string::npos) line_end = input.size();
    const std::string line = input.substr(line_start, line_end - line_start);
    line_start = line_end + 1;
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const nlohmann::ordered_json job = parse_json(line, str_cat("--batch line ", line_number));
    M2_CHECK(job.is_object() && job.contains("messages"), "--batch line ", line_number,
             " must be an object with \"messages\"");
    nlohmann::ordered_json context = base_context;
    if (job.contains("context") && !job["context"].is_null()) {
      M2_CHECK(job["context"].is_object(), "--batch line ", line_number,
               ": \"context\" must be an object");
      for (const auto& [k, v] : job["context"].items()) context[k] = v;
    }
    const nlohmann::ordered_json tools = job.value("tools", nlohmann::ordered_json());
    const bool add_generation_prompt = job.value("add_generation_prompt", false);
    nlohmann::ordered_json result = nlohmann::ordered_json::object();
    try {
      result["text"] =
          chat_template.render(job["messages"], tools, add_generation_prompt, context, limits);
    } catch (const Error& e) {
      result["error"] = e.what();
    }
    const std::string out =
        result.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
    std::fwrite(out.data(), 1, out.size(), stdout);
  }
  std::fflush(stdout);
}

}  // namespace

int cmd_chat_template(int argc, char** argv) {
  CLI::App app("Render a chat template like transformers' apply_chat_template(tokenize=False).",
               "m2fp4 chat-template");
  std::string template_file, model_dir, messages_file, tools_file, context_json, batch_file;
  bool add_generation_prompt = false;
  auto* tpl = app.add_option("--template", template_file, "Jinja chat template file");
  auto* model = app.add_option("--model", model_dir,
                               "model folder (chat_template.jinja or tokenizer_config.json)");
  tpl->excludes(model);
  auto* messages_option = app.add_option("--messages", messages_file,
                                         "JSON file with the list of messages (- = stdin)");
  auto* batch_option = app.add_option(
      "--batch", batch_file,
      "JSON-lines file of renders ({\"messages\", \"tools\", \"add_generation_prompt\", "
      "\"context\"} per line; - = stdin); prints one {\"text\"} or {\"error\"} line each");
  batch_option->excludes(messages_option);
  app.add_option("--tools", tools_file, "JSON file with the list of tools");
  app.add_flag("--add-generation-prompt", add_generation_prompt,
               "end with the assistant header the model continues from");
  app.add_option("--context", context_json,
                 "extra template variables as a JSON object, e.g. '{\"bos_token\": \"<s>\"}'");
  jinja::RenderLimits limits;
  app.add_option("--max-output-bytes", limits.max_output_bytes,
                 "render limit: bytes of output (and of any one string built)")
      ->capture_default_str();
  app.add_option("--max-steps", limits.max_steps,
                 "render limit: statements + expressions evaluated + items built")
      ->capture_default_str();
  app.add_option("--max-depth", limits.max_depth,
                 "render limit: nesting of statements, expressions and macro calls")
      ->capture_default_str();
  if (const int rc = parse_args(app, argc, argv); rc >= 0) return rc;
  if (template_file.empty() && model_dir.empty()) {
    std::fprintf(stderr, "%s: error: one of --template or --model is required\n",
                 app.get_name().c_str());
    return kUsageError;
  }
  if (messages_file.empty() && batch_file.empty()) {
    std::fprintf(stderr, "%s: error: one of --messages or --batch is required\n",
                 app.get_name().c_str());
    return kUsageError;
  }
  return run_guarded(app.get_name(), [&] {
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
    if (!batch_file.empty()) {
      render_batch(ChatTemplate(source), read_input(batch_file), context, limits);
      return 0;
    }
    const nlohmann::ordered_json messages = parse_json(read_input(messages_file), messages_file);
    const std::string text =
        render_chat_template(source, messages, tools, add_generation_prompt, context, limits);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    return 0;
  });
}

}  // namespace m2fp4::cli
