#include "engine/quantize_calibration.h"

#include <filesystem>
#include <memory>

#include "base/error.h"
#include "base/file.h"
#include "text/chat/chat_template.h"
#include "text/tokenizer/bpe_trainer.h"
#include "text/tokenizer/tokenizer.h"

namespace m2fp4 {
namespace {

// splitmix64: a small, fully specified generator (the ids must not depend on the C++ library).
uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void check_ids(const std::vector<int32_t>& ids, int64_t vocab_size, const std::string& what) {
  for (int32_t id : ids) {
    M2_CHECK(id >= 0 && id < vocab_size, what, ": token id ", id,
             " is outside the model's vocabulary [0, ", vocab_size, ")");
  }
}

}  // namespace

int64_t CalibrationSet::total_tokens() const {
  int64_t n = 0;
  for (const auto& s : samples) n += static_cast<int64_t>(s.size());
  return n;
}

std::vector<CalibrationRecord> parse_calibration_jsonl(std::string_view text,
                                                       const std::string& path) {
  std::vector<CalibrationRecord> out;
  size_t pos = 0;
  int64_t line_no = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    nlohmann::ordered_json j;
    try {
      j = nlohmann::ordered_json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fail(path, ":", line_no, ": not valid JSON (", e.what(), ")");
    }
    M2_CHECK(j.is_object(), path, ":", line_no,
             ": expected a JSON object with \"messages\" or "
             "\"text\"");
    CalibrationRecord r;
    r.line = line_no;
    if (j.contains("messages")) {
      const auto& m = j["messages"];
      M2_CHECK(m.is_array() && !m.empty(), path, ":", line_no,
               ": \"messages\" must be a non-empty array");
      for (const auto& msg : m) {
        M2_CHECK(msg.is_object() && msg.contains("role") && msg["role"].is_string(), path, ":",
                 line_no, ": every message needs a string \"role\"");
      }
      r.is_messages = true;
      r.messages = m;
    } else if (j.contains("text")) {
      M2_CHECK(j["text"].is_string(), path, ":", line_no, ": \"text\" must be a string");
      r.text = j["text"].get<std::string>();
    } else {
      fail(path, ":", line_no, ": expected a \"messages\" or \"text\" field");
    }
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<std::string> builtin_calibration_texts() {
  // Paragraphs of the built-in corpus, joined until each holds at least 300 characters.
  const std::string& corpus = builtin_training_corpus();
  std::vector<std::string> out;
  std::string current;
  size_t pos = 0;
  while (pos < corpus.size()) {
    size_t end = corpus.find("\n\n", pos);
    if (end == std::string::npos) end = corpus.size();
    const std::string paragraph = corpus.substr(pos, end - pos);
    pos = end + 2;
    if (paragraph.find_first_not_of(" \n\t") == std::string::npos) continue;
    current += current.empty() ? paragraph : "\n\n" + paragraph;
    if (current.size() >= 300) {
      out.push_back(std::move(current));
      current.clear();
    }
  }
  if (!current.empty()) out.push_back(std::move(current));
  return out;
}

std::vector<int32_t> synthetic_calibration_tokens(int64_t index, int64_t length,
                                                  int64_t vocab_size) {
  M2_CHECK(vocab_size > 0 && length > 0, "synthetic calibration: bad vocabulary or length");
  uint64_t state = 0x6D326670342D6361ull ^ static_cast<uint64_t>(index);
  std::vector<int32_t> ids(static_cast<size_t>(length));
  for (int32_t& id : ids) {
    id = static_cast<int32_t>(splitmix64(state) % static_cast<uint64_t>(vocab_size));
  }
  return ids;
}

CalibrationSet load_calibration(const std::string& model_dir, int64_t vocab_size,
                                const CalibrationOptions& options) {
  M2_CHECK(options.max_samples > 0, "--calib-samples must be positive");
  M2_CHECK(options.max_seq > 0, "--max-seq must be positive");
  CalibrationSet set;
  const bool has_tokenizer = file_exists(model_dir + "/tokenizer.json");
  auto add = [&](std::vector<int32_t> ids, const std::string& what) {
    if (ids.empty()) return;
    if (static_cast<int64_t>(ids.size()) > options.max_seq) {
      ids.resize(static_cast<size_t>(options.max_seq));
    }
    check_ids(ids, vocab_size, what);
    set.samples.push_back(std::move(ids));
  };

  if (!options.calib_file.empty()) {
    M2_CHECK(has_tokenizer, "--calib needs the model's tokenizer.json, which ", model_dir,
             " does not have");
    const std::vector<CalibrationRecord> records =
        parse_calibration_jsonl(read_text_file(options.calib_file), options.calib_file);
    const Tokenizer tokenizer = Tokenizer::load(model_dir);
    bool template_loaded = false;
    ModelChatTemplate chat;
    std::unique_ptr<ChatTemplate> compiled;
    for (const CalibrationRecord& r : records) {
      if (static_cast<int64_t>(set.samples.size()) >= options.max_samples) break;
      const std::string where = options.calib_file + ":" + std::to_string(r.line);
      if (r.is_messages) {
        if (!template_loaded) {
          chat = load_model_chat_template(model_dir, false);
          compiled = std::make_unique<ChatTemplate>(chat.source);
          template_loaded = true;
        }
        std::string rendered;
        try {
          rendered = compiled->render(r.messages, nullptr, false, chat.special_tokens);
        } catch (const Error& e) {
          fail(where, ": chat template: ", e.what());
        }
        // As apply_chat_template(tokenize=True): the template carries the special tokens.
        add(tokenizer.encode(rendered, false), where);
      } else {
        add(tokenizer.encode(r.text, true), where);
      }
    }
    set.source = options.calib_file;
  } else if (has_tokenizer) {
    const Tokenizer tokenizer = Tokenizer::load(model_dir);
    for (const std::string& text : builtin_calibration_texts()) {
      if (static_cast<int64_t>(set.samples.size()) >= options.max_samples) break;
      add(tokenizer.encode(text, true), "built-in calibration text");
    }
    set.source = "built-in calibration text (no --calib given)";
  } else {
    for (int64_t i = 0; i < options.max_samples; ++i) {
      add(synthetic_calibration_tokens(i, options.max_seq, vocab_size), "synthetic calibration");
    }
    set.source = "synthetic token ids, a generator seeded per sample (" + model_dir +
                 " has no tokenizer.json)";
  }
  M2_CHECK(!set.samples.empty(), "no calibration sample with at least one token");
  return set;
}

}  // namespace m2fp4
