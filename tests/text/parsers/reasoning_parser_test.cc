// Reasoning split of MiniMax-M2 output (serving.md (b) "vLLM reasoning parsers" and "What m2fp4
// does" 1-2): hand-checked cases, then the same cases fed at every split point.
#include "text/parsers/reasoning_parser.h"

#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/error.h"

namespace m2fp4 {
namespace {

struct Split {
  std::string reasoning;
  std::string content;
  bool has_reasoning = false;
  bool has_content = false;
  bool operator==(const Split&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Split& s) {
  os << "{reasoning: " << (s.has_reasoning ? "\"" + s.reasoning + "\"" : "null")
     << ", content: " << (s.has_content ? "\"" + s.content + "\"" : "null") << "}";
  return os;
}

Split run(ReasoningMode mode, const std::vector<std::string>& chunks) {
  ReasoningParser parser(mode);
  std::vector<ReasoningPiece> pieces;
  for (const auto& c : chunks) parser.feed(c, pieces);
  parser.finish(pieces);
  Split s;
  for (const auto& p : pieces) {
    EXPECT_FALSE(p.text.empty()) << "empty pieces are never emitted";
    (p.is_reasoning ? s.reasoning : s.content) += p.text;
    (p.is_reasoning ? s.has_reasoning : s.has_content) = true;
  }
  return s;
}

Split one_shot(ReasoningMode mode, const std::string& text) {
  return run(mode, {text});
}

Split expect(const char* reasoning, const char* content) {
  Split s;
  if (reasoning != nullptr) s = {reasoning, "", true, false};
  if (content != nullptr) {
    s.content = content;
    s.has_content = true;
  }
  return s;
}

constexpr auto kM2 = ReasoningMode::kMinimaxM2;

TEST(ReasoningModeTest, NamesRoundTripAndUnknownIsAnError) {
  for (const char* name : {"minimax_m2", "minimax_m2_append_think", "none"}) {
    EXPECT_STREQ(reasoning_mode_name(parse_reasoning_mode(name)), name);
  }
  EXPECT_THROW(parse_reasoning_mode("qwen3"), Error);
  EXPECT_THROW(parse_reasoning_mode(""), Error);
}

// The usual shape: the prompt opened <think>, the output closes it.
TEST(ReasoningParserTest, TextUpToThinkEndIsReasoning) {
  EXPECT_EQ(one_shot(kM2, "I should greet.\n</think>\n\nHello!"),
            expect("I should greet.\n", "\n\nHello!"));
}

// M2.5+ sometimes emits the opening tag itself (vllm#38212): a leading <think> is dropped.
TEST(ReasoningParserTest, LeadingThinkTagIsDropped) {
  EXPECT_EQ(one_shot(kM2, "<think>\nLet me think.\n</think>\n\nHi"),
            expect("\nLet me think.\n", "\n\nHi"));
  // Only a leading one: later it is reasoning text.
  EXPECT_EQ(one_shot(kM2, "x<think>y</think>z"), expect("x<think>y", "z"));
}

// vLLM: no </think> -> everything is reasoning, content None.
TEST(ReasoningParserTest, NoThinkEndMeansAllReasoning) {
  EXPECT_EQ(one_shot(kM2, "still thinking about it"), expect("still thinking about it", nullptr));
}

// vLLM: </think> first -> reasoning "" / None; m2fp4 sends no reasoning at all.
TEST(ReasoningParserTest, ThinkEndFirstMeansNoReasoning) {
  EXPECT_EQ(one_shot(kM2, "</think>Answer"), expect(nullptr, "Answer"));
  EXPECT_EQ(one_shot(kM2, "<think></think>Answer"), expect(nullptr, "Answer"));
}

// vllm PR#44898: later </think> strings are removed from content.
TEST(ReasoningParserTest, LaterThinkEndsAreRemovedFromContent) {
  EXPECT_EQ(one_shot(kM2, "a</think>b</think>c</think>"), expect("a", "bc"));
}

// m2fp4's tool escape: a tool call block inside unclosed reasoning ends the reasoning.
TEST(ReasoningParserTest, ToolBlockEndsUnclosedReasoning) {
  const std::string block =
      "<minimax:tool_call>\n<invoke name=\"f\">\n<parameter name=\"a\">1</parameter>\n</invoke>\n"
      "</minimax:tool_call>";
  EXPECT_EQ(one_shot(kM2, "I will call f.\n" + block), expect("I will call f.\n", block.c_str()));
  // A </think> after the block is removed like any later one.
  EXPECT_EQ(one_shot(kM2, "r" + block + "</think>x"), expect("r", (block + "x").c_str()));
  // With a proper </think> first the block is simply content.
  EXPECT_EQ(one_shot(kM2, "r</think>" + block), expect("r", block.c_str()));
}

// A mention of the tag (not followed by <invoke name=) stays reasoning.
TEST(ReasoningParserTest, TagMentionInReasoningIsNotAnEscape) {
  EXPECT_EQ(one_shot(kM2, "The <minimax:tool_call> tag starts calls.</think>ok"),
            expect("The <minimax:tool_call> tag starts calls.", "ok"));
  EXPECT_EQ(one_shot(kM2, "ends with <minimax:tool_call>\n"),
            expect("ends with <minimax:tool_call>\n", nullptr));
}

// A partial tag at the end of a truncated output stays in its channel.
TEST(ReasoningParserTest, PartialTagsAtTheEndAreFlushed) {
  EXPECT_EQ(one_shot(kM2, "abc</thi"), expect("abc</thi", nullptr));
  EXPECT_EQ(one_shot(kM2, "r</think>x</thi"), expect("r", "x</thi"));
  EXPECT_EQ(one_shot(kM2, "<thin"), expect("<thin", nullptr));
  EXPECT_EQ(one_shot(kM2, "r<minimax:tool_call>\n<inv"),
            expect("r<minimax:tool_call>\n<inv", nullptr));
  EXPECT_EQ(one_shot(kM2, ""), expect(nullptr, nullptr));
}

// vLLM's MiniMaxM2AppendThinkReasoningParser: content = "<think>" + output, no reasoning.
TEST(ReasoningParserTest, AppendThinkKeepsEverythingAsContent) {
  const auto mode = ReasoningMode::kMinimaxM2AppendThink;
  EXPECT_EQ(one_shot(mode, "r\n</think>\n\nok"), expect(nullptr, "<think>r\n</think>\n\nok"));
  EXPECT_EQ(one_shot(mode, ""), expect(nullptr, "<think>"));
  // Streaming: <think> is prefixed to the first piece.
  ReasoningParser parser(mode);
  std::vector<ReasoningPiece> pieces;
  parser.feed("abc", pieces);
  ASSERT_EQ(pieces.size(), 1u);
  EXPECT_EQ(pieces[0].text, "<think>abc");
  EXPECT_FALSE(pieces[0].is_reasoning);
}

TEST(ReasoningParserTest, NoneKeepsRawContent) {
  EXPECT_EQ(one_shot(ReasoningMode::kNone, "<think>r</think>x"),
            expect(nullptr, "<think>r</think>x"));
}

// Reasoning is released as it arrives, held back only where a tag may be starting.
TEST(ReasoningParserTest, StreamsWithoutWaitingForTheEnd) {
  ReasoningParser parser(kM2);
  std::vector<ReasoningPiece> pieces;
  parser.feed("Let me", pieces);
  ASSERT_EQ(pieces.size(), 1u);
  EXPECT_EQ(pieces[0].text, "Let me");
  pieces.clear();
  parser.feed(" see</th", pieces);
  ASSERT_EQ(pieces.size(), 1u);
  EXPECT_EQ(pieces[0].text, " see");  // "</th" may be </think>
  pieces.clear();
  parser.feed("ink>\n\nDone", pieces);
  ASSERT_EQ(pieces.size(), 1u);
  EXPECT_FALSE(pieces[0].is_reasoning);
  EXPECT_EQ(pieces[0].text, "\n\nDone");
}

struct Case {
  ReasoningMode mode;
  std::string text;
};

std::vector<Case> split_cases() {
  const std::string block =
      "<minimax:tool_call>\n<invoke name=\"f\">\n<parameter name=\"a\">1</parameter>\n</invoke>\n"
      "</minimax:tool_call>";
  return {
      {kM2, "I should greet.\n</think>\n\nHello!"},
      {kM2, "<think>\nLet me think.\n</think>\n\nHi</think> there"},
      {kM2, "still thinking <think> about </thin it"},
      {kM2, "</think>Answer"},
      {kM2, "Think \xE2\x80\x94 caf\xC3\xA9 \xF0\x9F\x98\x80.\n" + block + "</think>after"},
      {kM2, "mention <minimax:tool_call> only</think><minimax:tool_call>x"},
      {kM2, "r<minimax:tool_call><minimax:tool_call>\n\n<invoke name=\"g\"></invoke>"},
      {ReasoningMode::kMinimaxM2AppendThink, "r\n</think>\n\nok" + block},
      {ReasoningMode::kNone, "<think>r</think>x"},
  };
}

// Property: every split into two pieces, byte-wise feeding and seeded random splits all give
// the one-shot result.
TEST(ReasoningParserTest, SplitInvariance) {
  std::mt19937 rng(1234);
  for (const Case& c : split_cases()) {
    const Split expected = one_shot(c.mode, c.text);
    for (size_t i = 0; i <= c.text.size(); ++i) {
      EXPECT_EQ(run(c.mode, {c.text.substr(0, i), c.text.substr(i)}), expected)
          << "split at " << i << " of: " << c.text;
    }
    std::vector<std::string> bytes;
    for (char ch : c.text) bytes.emplace_back(1, ch);
    EXPECT_EQ(run(c.mode, bytes), expected) << "byte-wise: " << c.text;
    for (int trial = 0; trial < 50; ++trial) {
      std::vector<std::string> pieces;
      for (size_t at = 0; at < c.text.size();) {
        const size_t n = std::uniform_int_distribution<size_t>(0, 9)(rng);
        pieces.push_back(c.text.substr(at, n));
        at += n;
      }
      EXPECT_EQ(run(c.mode, pieces), expected) << "random split, trial " << trial;
    }
  }
}

}  // namespace
}  // namespace m2fp4
