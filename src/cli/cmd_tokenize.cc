// m2fp4 tokenize: text -> token ids (and back) with a checkpoint's tokenizer.json.
//
// Inputs: TEXT, or --file F (or -) with JSON lines, one input per line: a JSON string (text), an
// object {"text": ..., "add_special_tokens": bool}, or {"ids": [...]} to decode.
// Outputs: a readable table of ids and pieces, or with --json one JSON object per input:
// {"ids": [...]} plus, with --decode, "text" / "text_skip_special" (decode of the ids) and
// "stream" (the chunks a StreamingDecoder returns id by id, flush last).
// --bench times the encode calls alone (no load, no I/O) and prints MB/s on stderr.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/file.h"
#include "base/timer.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "text/tokenizer/bpe_trainer.h"
#include "text/tokenizer/tokenizer.h"
#include "text/tokenizer/unicode.h"

namespace m2fp4::cli {
namespace {

struct Input {
  bool is_ids = false;
  std::string text;
  std::vector<int32_t> ids;
  bool add_special_tokens = false;
};

Input parse_input_line(const std::string& line, size_t line_number, bool default_special) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    fail("input line ", line_number, " is not JSON: ", e.what());
  }
  Input input;
  input.add_special_tokens = default_special;
  if (j.is_string()) {
    input.text = j.get<std::string>();
  } else if (j.is_object() && j.contains("text") && j["text"].is_string()) {
    input.text = j["text"].get<std::string>();
    if (j.contains("add_special_tokens"))
      input.add_special_tokens = j["add_special_tokens"].get<bool>();
  } else if (j.is_object() && j.contains("ids") && j["ids"].is_array()) {
    input.is_ids = true;
    for (const auto& id : j["ids"]) {
      M2_CHECK(id.is_number_integer(), "input line ", line_number, ": ids must be integers");
      input.ids.push_back(id.get<int32_t>());
    }
  } else {
    fail("input line ", line_number, " must be a JSON string, {\"text\": ...} or {\"ids\": [...]}");
  }
  return input;
}

std::vector<Input> read_inputs(const std::string& path, bool default_special) {
  std::string content;
  if (path == "-") {
    content.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    M2_CHECK(file_exists(path), "no such file: ", path);
    content = read_text_file(path);
  }
  std::vector<Input> inputs;
  size_t pos = 0;
  size_t line_number = 0;
  while (pos < content.size()) {
    size_t end = content.find('\n', pos);
    if (end == std::string::npos) end = content.size();
    ++line_number;
    const std::string line = content.substr(pos, end - pos);
    pos = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    inputs.push_back(parse_input_line(line, line_number, default_special));
  }
  return inputs;
}

nlohmann::json decode_fields(const Tokenizer& tokenizer, const std::vector<int32_t>& ids) {
  nlohmann::json out;
  out["text"] = tokenizer.decode(ids, false);
  out["text_skip_special"] = tokenizer.decode(ids, true);
  StreamingDecoder stream(tokenizer);
  nlohmann::json chunks = nlohmann::json::array();
  for (int32_t id : ids) chunks.push_back(stream.feed(id));
  chunks.push_back(stream.flush());
  out["stream"] = std::move(chunks);
  return out;
}

void print_table(const Tokenizer& tokenizer, const std::vector<int32_t>& ids) {
  std::printf("%zu tokens\n", ids.size());
  for (int32_t id : ids) {
    const nlohmann::json token = utf8_lossy(tokenizer.id_to_token(id));
    const nlohmann::json text = utf8_lossy(tokenizer.token_bytes(id));
    std::printf("%8d  %-24s %s%s\n", id, token.dump().c_str(), text.dump().c_str(),
                tokenizer.is_special(id) ? "  (special)" : "");
  }
}

}  // namespace

int cmd_tokenize(int argc, char** argv) {
  CLI::App app(
      "Text -> token ids (and back) with a checkpoint's tokenizer.json. --file takes JSON lines: "
      "a string, {\"text\": ...} or {\"ids\": [...]} per line.",
      "m2fp4 tokenize");
  std::string model_dir;
  std::string text;
  std::string file;
  std::string train_out;
  int train_vocab = 0;
  bool json = false;
  bool decode = false;
  bool special = false;
  bool bench = false;
  bool show_config = false;
  int repeat = 1;
  app.add_option("--model", model_dir, "folder with tokenizer.json (+ tokenizer_config.json)");
  app.add_option("text", text, "text to tokenize");
  app.add_option("--file", file, "JSON-lines input file (- for stdin)");
  app.add_flag("--json", json, "print one JSON object per input: {\"ids\": [...]}");
  app.add_flag("--decode", decode, "with --json: add the decoded text and streaming chunks");
  app.add_flag("--add-special-tokens", special,
               "apply the tokenizer.json post_processor (default off, per-line override)");
  app.add_flag("--bench", bench, "time encoding only (excluding load and I/O); print MB/s");
  app.add_option("--repeat", repeat, "with --bench: encode the inputs this many times")
      ->check(CLI::Range(1, 1000));
  app.add_flag("--config", show_config,
               "print the special tokens (tokenizer_config.json) and vocab size as JSON");
  app.add_option("--train-tiny", train_vocab,
                 "write a byte-level BPE tokenizer of this vocab size, trained on the built-in "
                 "corpus, to --out (what make-tiny ships)");
  app.add_option("--out", train_out, "with --train-tiny: output folder");
  if (int rc = parse_args(app, argc, argv); rc >= 0) return rc;
  const auto usage_error = [&](const char* message) {
    std::fprintf(stderr, "%s: error: %s\n", app.get_name().c_str(), message);
    return kUsageError;
  };
  if (train_vocab > 0) {
    if (train_out.empty()) return usage_error("--train-tiny needs --out DIR");
  } else {
    if (model_dir.empty()) return usage_error("--model DIR is required");
    if (!show_config && file.empty() == (app.count("text") == 0))
      return usage_error("give either TEXT or --file");
  }
  return run_guarded(app.get_name(), [&] {
    if (train_vocab > 0) {
      write_tiny_tokenizer(train_out, train_vocab);
      return 0;
    }
    const Tokenizer tokenizer = Tokenizer::load(model_dir);
    if (show_config) {
      const TokenizerConfig& c = tokenizer.config();
      nlohmann::json j;
      j["bos_token"] = c.bos_token ? nlohmann::json(*c.bos_token) : nlohmann::json();
      j["bos_id"] = c.bos_id;
      j["eos_token"] = c.eos_token ? nlohmann::json(*c.eos_token) : nlohmann::json();
      j["eos_id"] = c.eos_id;
      j["add_bos_token"] = c.add_bos_token;
      j["add_eos_token"] = c.add_eos_token;
      j["vocab_size"] = tokenizer.vocab_size();
      j["added_tokens"] = tokenizer.added_tokens().size();
      std::printf("%s\n", j.dump().c_str());
      return 0;
    }
    std::vector<Input> inputs;
    if (!file.empty()) {
      inputs = read_inputs(file, special);
    } else {
      Input input;
      input.text = text;
      input.add_special_tokens = special;
      inputs.push_back(std::move(input));
    }

    if (bench) {
      size_t bytes = 0;
      size_t tokens = 0;
      double best = 0.0;
      std::vector<int32_t> ids;
      for (int r = 0; r < repeat; ++r) {
        bytes = tokens = 0;
        Timer timer;
        for (const Input& input : inputs) {
          if (input.is_ids) continue;
          tokenizer.encode_into(input.text, input.add_special_tokens, ids);
          bytes += input.text.size();
          tokens += ids.size();
        }
        const double seconds = timer.seconds();
        best = r == 0 ? seconds : std::min(best, seconds);
        std::fprintf(stderr, "pass %d: %zu bytes, %zu tokens, %.4f s, %.2f MB/s\n", r + 1, bytes,
                     tokens, seconds, bytes / 1e6 / seconds);
      }
      std::fprintf(stderr, "m2fp4 encode (1 thread): %.2f MB/s best of %d\n", bytes / 1e6 / best,
                   repeat);
      std::printf("{\"bytes\": %zu, \"tokens\": %zu, \"best_seconds\": %.6f, \"mb_per_s\": %.3f}\n",
                  bytes, tokens, best, bytes / 1e6 / best);
      return 0;
    }

    std::string out;
    for (const Input& input : inputs) {
      std::vector<int32_t> ids =
          input.is_ids ? input.ids : tokenizer.encode(input.text, input.add_special_tokens);
      if (!json) {
        if (input.is_ids) {
          std::printf("%s\n", nlohmann::json(tokenizer.decode(ids)).dump().c_str());
        } else {
          print_table(tokenizer, ids);
        }
        continue;
      }
      nlohmann::json result = nlohmann::json::object();
      if (!input.is_ids) result["ids"] = ids;
      if (decode || input.is_ids) result.update(decode_fields(tokenizer, ids));
      out += result.dump();
      out += '\n';
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
  });
}

}  // namespace m2fp4::cli
