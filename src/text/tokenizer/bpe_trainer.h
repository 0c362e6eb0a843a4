// A small byte-level BPE trainer, for the tokenizer that `make-tiny` ships with its random-weight
// checkpoints: the same layout as the real MiniMax-M2 / Qwen tokenizers (Split with the Qwen
// regex + ByteLevel pre-tokenizer, ByteLevel decoder, BPE vocab + merges), small enough to build
// in milliseconds, and loadable by Hugging Face `tokenizers` as well as by m2fp4.
#pragma once

#include <string>
#include <vector>

namespace m2fp4 {

struct AddedTokenSpec {
  std::string content;
  bool special = true;  // special tokens are dropped by decode(skip_special_tokens)
};

// MiniMax-M2's added tokens (serving spec (c), templates/minimax-m2.jinja): BOS `]~!b[`,
// EOS `[e~[`, `]!d~[`, `]!p~[`, the role prefix `]~b]` (special), and `<think>`, `</think>`,
// `<minimax:tool_call>`, `</minimax:tool_call>` (not special: they stay in decoded text, where
// the reasoning and tool-call parsers look for them).
const std::vector<AddedTokenSpec>& minimax_added_tokens();

// A few KB of varied built-in text (English prose, code in several languages, Chinese,
// Japanese, Korean, numbers, chat-like turns) to train the tiny tokenizer on.
const std::string& builtin_training_corpus();

// Trains byte-level BPE on `corpus` and returns a complete tokenizer.json whose ids are:
// 0..255 the byte alphabet (id = byte value), then one id per merge in training order, then
// `added_tokens` in the order given, last. The total is exactly `vocab_size`. Merges are learnt
// greedily (most frequent adjacent pair over the pre-tokenized words, ties broken by the
// smaller pair of token strings), never producing an added token's content. If the corpus runs
// out of pairs first, the remaining ids are filled with unreachable placeholder tokens
// "<|unused_N|>". Throws m2fp4::Error if vocab_size < 256 + added_tokens.size().
std::string train_byte_level_bpe_tokenizer_json(const std::string& corpus, int vocab_size,
                                                const std::vector<AddedTokenSpec>& added_tokens);

// tokenizer_config.json for the tiny tokenizer: BOS `]~!b[`, EOS `[e~[`, no automatic BOS, and
// `chat_template` if non-empty.
std::string tiny_tokenizer_config_json(const std::string& chat_template = "");

// Writes DIR/tokenizer.json (trained on the built-in corpus with MiniMax's added tokens) and
// DIR/tokenizer_config.json. Creates DIR if needed.
void write_tiny_tokenizer(const std::string& dir, int vocab_size);

}  // namespace m2fp4
