// Calibration data for `m2fp4 quantize`: token id sequences from a JSONL file (one sample per
// line: {"messages": [...]} rendered with the model's chat template, or {"text": "..."}), from
// the built-in text when no file is given, or - for a checkpoint without tokenizer.json (the tiny
// test models) - from a deterministic generator seeded per sample.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace m2fp4 {

struct CalibrationOptions {
  std::string calib_file;    // empty: built-in set
  int64_t max_samples = 64;  // --calib-samples
  int64_t max_seq = 512;     // --max-seq: longer samples are truncated
};

struct CalibrationSet {
  std::vector<std::vector<int32_t>> samples;
  std::string source;  // what the report says about where the samples came from

  int64_t total_tokens() const;
};

// One parsed JSONL line.
struct CalibrationRecord {
  int64_t line = 0;  // 1-based line in the file
  bool is_messages = false;
  std::string text;                 // {"text": ...}
  nlohmann::ordered_json messages;  // {"messages": [...]}
};

// Parses JSONL text; blank lines are skipped. A line that is not a JSON object with a string
// "text" or an array "messages" of objects throws m2fp4::Error "PATH:LINE: ...".
std::vector<CalibrationRecord> parse_calibration_jsonl(std::string_view text,
                                                       const std::string& path);

// The built-in calibration texts (paragraphs of the project's varied built-in corpus).
std::vector<std::string> builtin_calibration_texts();

// Token ids for sample `index` when there is no tokenizer: `length` ids uniform in
// [0, vocab_size) from a generator seeded with the index.
std::vector<int32_t> synthetic_calibration_tokens(int64_t index, int64_t length,
                                                  int64_t vocab_size);

// Builds the set for a model folder. Samples are truncated to max_seq and empty ones skipped;
// ids must be < vocab_size. Throws m2fp4::Error when --calib is given without a tokenizer.json
// or no sample remains.
CalibrationSet load_calibration(const std::string& model_dir, int64_t vocab_size,
                                const CalibrationOptions& options);

}  // namespace m2fp4
