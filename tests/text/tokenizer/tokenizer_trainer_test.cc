// The make-tiny tokenizer trainer: exact vocab size, MiniMax's added tokens last, lossless
// round trips. (tokenizer_trained_test.py checks the same files against Hugging Face.)
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "text/tokenizer/bpe_trainer.h"
#include "text/tokenizer/tokenizer.h"

namespace m2fp4 {
namespace {

TEST(BpeTrainer, VocabSizeIsExactAndAddedTokensComeLast) {
  for (int vocab_size : {300, 512, 1024, 5000}) {
    const std::string json = train_byte_level_bpe_tokenizer_json(
        builtin_training_corpus(), vocab_size, minimax_added_tokens());
    const Tokenizer t = Tokenizer::from_json_text(json);
    EXPECT_EQ(t.vocab_size(), vocab_size);
    const auto& specials = minimax_added_tokens();
    const int first = vocab_size - static_cast<int>(specials.size());
    for (size_t k = 0; k < specials.size(); ++k) {
      EXPECT_EQ(t.token_to_id(specials[k].content), first + static_cast<int>(k));
      EXPECT_EQ(t.is_special(first + static_cast<int>(k)), specials[k].special);
    }
    const auto spec = nlohmann::json::parse(json);
    EXPECT_EQ(spec["model"]["vocab"].size(), static_cast<size_t>(first));
    // The built-in corpus supports about 1,500 merges; beyond, placeholders fill the ids.
    const size_t merges = spec["model"]["merges"].size();
    if (vocab_size <= 1024) {
      EXPECT_EQ(merges, static_cast<size_t>(first - 256));
    } else {
      EXPECT_GT(merges, 1000u);
      EXPECT_LT(merges, static_cast<size_t>(first - 256));
      EXPECT_EQ(t.token_to_id("<|unused_0|>"), static_cast<int32_t>(256 + merges));
    }
  }
}

TEST(BpeTrainer, EncodesLosslesslyAndCompresses) {
  const Tokenizer t = Tokenizer::from_json_text(
      train_byte_level_bpe_tokenizer_json(builtin_training_corpus(), 1024, minimax_added_tokens()));
  const std::string& corpus = builtin_training_corpus();
  const std::vector<int32_t> ids = t.encode(corpus);
  EXPECT_EQ(t.decode(ids), corpus);
  EXPECT_LT(ids.size() * 2, corpus.size());  // merges learnt something
  const std::string chat = "]~!b[]~b]user\nhi[e~[\n]~b]ai\n<think>\nok\n</think>\n\nhello[e~[";
  const std::vector<int32_t> chat_ids = t.encode(chat);
  EXPECT_EQ(chat_ids.front(), t.token_to_id("]~!b["));
  EXPECT_EQ(chat_ids[1], t.token_to_id("]~b]"));
  EXPECT_EQ(t.decode(chat_ids), chat);
  EXPECT_EQ(t.decode(chat_ids, true), "user\nhi\nai\n<think>\nok\n</think>\n\nhello");
}

TEST(BpeTrainer, FillsUnreachableIdsWhenTheCorpusRunsOut) {
  const Tokenizer t = Tokenizer::from_json_text(
      train_byte_level_bpe_tokenizer_json("ab ab ab", 300, {{"<eos>", true}}));
  EXPECT_EQ(t.vocab_size(), 300);
  EXPECT_EQ(t.token_to_id("<eos>"), 299);
  EXPECT_EQ(t.decode(t.encode("ab ab")), "ab ab");
}

TEST(BpeTrainer, RefusesAVocabTooSmallForBytesAndAddedTokens) {
  EXPECT_THROW(train_byte_level_bpe_tokenizer_json("abc", 260, minimax_added_tokens()), Error);
}

}  // namespace
}  // namespace m2fp4
