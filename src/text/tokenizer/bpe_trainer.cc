#include "text/tokenizer/bpe_trainer.h"

#include <filesystem>
#include <map>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/file.h"
#include "text/tokenizer/pretokenizer.h"
#include "text/tokenizer/unicode.h"

namespace m2fp4 {
namespace {

// Qwen2/Qwen3's pre-tokenizer regex (GPT-4 style, single digits).
constexpr const char* kSplitRegex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

nlohmann::ordered_json byte_level_step() {
  return {{"type", "ByteLevel"},
          {"add_prefix_space", false},
          {"trim_offsets", false},
          {"use_regex", false}};
}

nlohmann::ordered_json pre_tokenizer_json() {
  nlohmann::ordered_json split = {{"type", "Split"},
                                  {"pattern", {{"Regex", kSplitRegex}}},
                                  {"behavior", "Isolated"},
                                  {"invert", false}};
  return {{"type", "Sequence"},
          {"pretokenizers", nlohmann::ordered_json::array({split, byte_level_step()})}};
}

class PieceCounter : public PieceSink {
 public:
  explicit PieceCounter(std::map<std::string, int64_t>& counts) : counts_(counts) {}
  void piece(std::string_view text) override { ++counts_[std::string(text)]; }

 private:
  std::map<std::string, int64_t>& counts_;
};

struct Word {
  std::vector<int32_t> symbols;
  int64_t count;
};

uint64_t pair_key(int32_t a, int32_t b) {
  return (uint64_t(uint32_t(a)) << 32) | uint32_t(b);
}

}  // namespace

const std::vector<AddedTokenSpec>& minimax_added_tokens() {
  static const std::vector<AddedTokenSpec> tokens = {
      {"]~!b[", true},
      {"[e~[", true},
      {"]!d~[", true},
      {"]!p~[", true},
      {"]~b]", true},
      {"<think>", false},
      {"</think>", false},
      {"<minimax:tool_call>", false},
      {"</minimax:tool_call>", false},
  };
  return tokens;
}

std::string train_byte_level_bpe_tokenizer_json(const std::string& corpus, int vocab_size,
                                                const std::vector<AddedTokenSpec>& added_tokens) {
  const int added_count = static_cast<int>(added_tokens.size());
  M2_CHECK(vocab_size >= 256 + added_count, "vocab size ", vocab_size,
           " is too small: a byte-level BPE needs 256 byte tokens plus ", added_count,
           " added tokens");
  M2_CHECK(is_valid_utf8(corpus), "training corpus is not valid UTF-8");
  const size_t model_size = static_cast<size_t>(vocab_size - added_count);

  // Words: the pieces the pre-tokenizer makes of the corpus, with their counts.
  const nlohmann::ordered_json pre_json = pre_tokenizer_json();
  const PreTokenizer pre = PreTokenizer::from_json(nlohmann::json::parse(pre_json.dump()));
  std::map<std::string, int64_t> counts;
  PieceCounter counter(counts);
  PreTokenizerScratch scratch;
  pre.run(corpus, scratch, counter);

  std::vector<std::string> tokens;  // byte-level strings, index = id
  std::unordered_map<std::string, int32_t> token_ids;
  for (int b = 0; b < 256; ++b) {
    std::string s;
    append_utf8(s, byte_to_unicode(static_cast<uint8_t>(b)));
    token_ids[s] = b;
    tokens.push_back(std::move(s));
  }
  std::unordered_set<std::string> forbidden;  // added tokens' contents, in byte-level form
  for (const AddedTokenSpec& t : added_tokens) {
    std::string s;
    append_byte_level(t.content, s);
    forbidden.insert(s);
    forbidden.insert(t.content);
  }
  std::vector<Word> words;
  for (const auto& [piece, count] : counts) {
    Word word{{}, count};
    for (char c : piece) word.symbols.push_back(static_cast<uint8_t>(c));
    words.push_back(std::move(word));
  }

  std::vector<std::pair<int32_t, int32_t>> merges;
  std::unordered_map<uint64_t, int64_t> pair_counts;
  while (tokens.size() < model_size) {
    pair_counts.clear();
    for (const Word& w : words) {
      for (size_t i = 0; i + 1 < w.symbols.size(); ++i) {
        pair_counts[pair_key(w.symbols[i], w.symbols[i + 1])] += w.count;
      }
    }
    // Most frequent pair; ties go to the smaller (left, right) strings, for determinism.
    int64_t best_count = 0;
    int32_t best_left = -1;
    int32_t best_right = -1;
    for (const auto& [key, count] : pair_counts) {
      const auto left = static_cast<int32_t>(key >> 32);
      const auto right = static_cast<int32_t>(key & 0xFFFFFFFFu);
      if (count < best_count) continue;
      if (count == best_count && std::tie(tokens[left], tokens[right]) >=
                                     std::tie(tokens[best_left], tokens[best_right])) {
        continue;
      }
      if (forbidden.count(tokens[left] + tokens[right])) continue;
      best_count = count;
      best_left = left;
      best_right = right;
    }
    if (best_left < 0) break;  // every word is a single token
    const std::string merged = tokens[best_left] + tokens[best_right];
    int32_t merged_id;
    if (const auto it = token_ids.find(merged); it != token_ids.end()) {
      merged_id = it->second;
    } else {
      merged_id = static_cast<int32_t>(tokens.size());
      token_ids[merged] = merged_id;
      tokens.push_back(merged);
    }
    merges.emplace_back(best_left, best_right);
    for (Word& w : words) {
      size_t out = 0;
      for (size_t i = 0; i < w.symbols.size(); ++i) {
        if (i + 1 < w.symbols.size() && w.symbols[i] == best_left &&
            w.symbols[i + 1] == best_right) {
          w.symbols[out++] = merged_id;
          ++i;
        } else {
          w.symbols[out++] = w.symbols[i];
        }
      }
      w.symbols.resize(out);
    }
  }
  for (int k = 0; tokens.size() < model_size; ++k) {
    std::string filler = str_cat("<|unused_", k, "|>");
    if (token_ids.count(filler) || forbidden.count(filler)) continue;
    token_ids[filler] = static_cast<int32_t>(tokens.size());
    tokens.push_back(std::move(filler));
  }

  // Appended without ordered_map's per-insert key search (quadratic at a 200k vocabulary, the
  // wide preset): the tokens are distinct by construction (token_ids).
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  auto& entries = vocab.get_ref<nlohmann::ordered_json::object_t&>();
  using Entries = nlohmann::ordered_json::object_t::Container;
  static_cast<Entries&>(entries).reserve(tokens.size());
  for (size_t id = 0; id < tokens.size(); ++id) {
    static_cast<Entries&>(entries).emplace_back(tokens[id], id);
  }
  nlohmann::ordered_json merge_list = nlohmann::ordered_json::array();
  for (const auto& [left, right] : merges) merge_list.push_back({tokens[left], tokens[right]});
  nlohmann::ordered_json added = nlohmann::ordered_json::array();
  for (int k = 0; k < added_count; ++k) {
    added.push_back({{"id", static_cast<int>(model_size) + k},
                     {"content", added_tokens[k].content},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", added_tokens[k].special}});
  }
  nlohmann::ordered_json spec;
  spec["version"] = "1.0";
  spec["truncation"] = nullptr;
  spec["padding"] = nullptr;
  spec["added_tokens"] = std::move(added);
  spec["normalizer"] = nullptr;
  spec["pre_tokenizer"] = pre_json;
  spec["post_processor"] = byte_level_step();
  spec["decoder"] = byte_level_step();
  spec["model"] = {{"type", "BPE"},
                   {"dropout", nullptr},
                   {"unk_token", nullptr},
                   {"continuing_subword_prefix", nullptr},
                   {"end_of_word_suffix", nullptr},
                   {"fuse_unk", false},
                   {"byte_fallback", false},
                   {"ignore_merges", false},
                   {"vocab", std::move(vocab)},
                   {"merges", std::move(merge_list)}};
  return spec.dump();
}

std::string tiny_tokenizer_config_json(const std::string& chat_template) {
  nlohmann::ordered_json config;
  config["tokenizer_class"] = "PreTrainedTokenizerFast";
  config["bos_token"] = "]~!b[";
  config["eos_token"] = "[e~[";
  config["add_bos_token"] = false;
  config["add_eos_token"] = false;
  config["clean_up_tokenization_spaces"] = false;
  config["model_max_length"] = 4096;
  if (!chat_template.empty()) config["chat_template"] = chat_template;
  return config.dump(2) + "\n";
}

void write_tiny_tokenizer(const std::string& dir, int vocab_size) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  M2_CHECK(!ec, "cannot create ", dir, ": ", ec.message());
  write_file_atomic(dir + "/tokenizer.json",
                    train_byte_level_bpe_tokenizer_json(builtin_training_corpus(), vocab_size,
                                                        minimax_added_tokens()));
  write_file_atomic(dir + "/tokenizer_config.json", tiny_tokenizer_config_json());
}

}  // namespace m2fp4
