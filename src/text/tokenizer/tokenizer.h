// A Hugging Face tokenizer.json tokenizer (byte-level BPE family: MiniMax-M2, Qwen3,
// DeepSeek-V3, Llama-3, gpt-oss), encoding and decoding id-for-id like the `tokenizers` library.
//
// Encode = added tokens cut out of the raw text (leftmost-longest) -> normalizer on the rest ->
// added tokens with normalized=true cut out of the normalized text -> pre-tokenizer -> BPE per
// piece -> post-processor (only with add_special_tokens). Decode = each id's token (added tokens
// by content) -> ByteLevel decoder -> lossy UTF-8, optionally skipping special tokens.
//
// Everything a file uses must be supported; an unknown model, normalizer, pre-tokenizer,
// post-processor or decoder is refused by name at load with m2fp4::Error.
//
// Thread safety: a loaded Tokenizer is immutable; encode/decode may run on many threads at once
// (each call borrows a workspace, with its word cache, from a pool).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "text/tokenizer/added_tokens.h"
#include "text/tokenizer/bpe.h"
#include "text/tokenizer/normalizer.h"
#include "text/tokenizer/pretokenizer.h"

namespace m2fp4 {

// What tokenizer_config.json says about the special tokens (absent fields stay empty/false).
struct TokenizerConfig {
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  std::optional<std::string> pad_token;
  int32_t bos_id = -1;  // ids of the above in the tokenizer, -1 if absent
  int32_t eos_id = -1;
  int32_t pad_id = -1;
  // Recorded but not applied by encode(): Hugging Face applies only tokenizer.json's
  // post_processor (transformers 5 does the same for these files). Callers that want a BOS
  // (e.g. a completions endpoint) prepend bos_id when add_bos_token is true.
  bool add_bos_token = false;
  bool add_eos_token = false;
  // The chat template (a string, or the one named "default" of a list), if any.
  std::optional<std::string> chat_template;
};

class Tokenizer {
 public:
  // Loads DIR/tokenizer.json and, if present, DIR/tokenizer_config.json.
  static Tokenizer load(const std::string& dir);
  // From the text of a tokenizer.json (and optionally of a tokenizer_config.json).
  static Tokenizer from_json_text(std::string_view tokenizer_json,
                                  std::string_view tokenizer_config_json = {});

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // The most text one encode call takes (far above any model's context; a whole evaluation
  // corpus fits): bounds the ids and scratch memory a hostile request can ask for.
  static constexpr size_t kMaxEncodeBytes = size_t{256} << 20;

  // Token ids of `text` (valid UTF-8 of at most kMaxEncodeBytes, else m2fp4::Error).
  // add_special_tokens applies the post_processor (TemplateProcessing adds its special tokens;
  // ByteLevel adds none).
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false) const;
  void encode_into(std::string_view text, bool add_special_tokens, std::vector<int32_t>& ids) const;

  // Text of `ids`, invalid UTF-8 replaced by U+FFFD as Hugging Face does. An id that names no
  // token is an m2fp4::Error.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  // The bytes id `id` decodes to (before UTF-8 repair), and whether it is a special token.
  std::string_view token_bytes(int32_t id) const;
  bool is_special(int32_t id) const;
  bool has_id(int32_t id) const;

  // The token string of `id` as written in tokenizer.json (byte-level form), or "" if none.
  std::string id_to_token(int32_t id) const;
  // Id of a token string (added tokens first, then the model vocabulary), or -1.
  int32_t token_to_id(std::string_view token) const;

  // One past the largest id (model vocabulary and added tokens).
  int32_t vocab_size() const { return static_cast<int32_t>(decoded_.size()); }
  const std::vector<AddedToken>& added_tokens() const { return added_tokens_; }
  const TokenizerConfig& config() const { return config_; }
  const BpeModel& model() const { return model_; }

 private:
  struct Workspace;
  class WorkspaceLease;
  struct PostStep {
    std::vector<int32_t> before;  // ids a TemplateProcessing puts before the sequence
    std::vector<int32_t> after;
  };

  Tokenizer() = default;
  void build(const nlohmann::json& spec);
  void build_added_tokens(const nlohmann::json& spec);
  void build_post_processor(const nlohmann::json& spec);
  void build_decoder(const nlohmann::json& spec);
  void read_config(const nlohmann::json& config);
  void encode_normalized(std::string_view text, Workspace& ws, std::vector<int32_t>& ids) const;
  void encode_plain(std::string_view text, Workspace& ws, std::vector<int32_t>& ids) const;

  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  BpeModel model_;
  std::vector<AddedToken> added_tokens_;
  std::unordered_map<std::string, int32_t> added_by_content_;
  AddedTokenMatcher raw_matcher_;         // added tokens with normalized = false
  AddedTokenMatcher normalized_matcher_;  // added tokens with normalized = true
  std::vector<PostStep> post_steps_;
  TokenizerConfig config_;

  // Decoding tables, indexed by id.
  std::vector<std::string> decoded_;
  std::vector<uint8_t> present_;
  std::vector<uint8_t> special_;

  std::unique_ptr<std::mutex> pool_mutex_ = std::make_unique<std::mutex>();
  mutable std::vector<std::unique_ptr<Workspace>> pool_;
};

// Incremental detokenization for streaming: feed ids one at a time and get text as soon as it
// forms complete UTF-8 characters. The concatenation of every feed() result and the final
// flush() equals tokenizer.decode(all ids) exactly: no character is split or lost.
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = false)
      : tokenizer_(&tokenizer), skip_special_tokens_(skip_special_tokens) {}

  // Text completed by this id (possibly empty).
  std::string feed(int32_t id);
  // The rest: an incomplete trailing sequence becomes U+FFFD. The decoder can be reused.
  std::string flush();
  // Bytes held back waiting for the rest of a character.
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_tokens_;
  std::string pending_;
};

}  // namespace m2fp4
