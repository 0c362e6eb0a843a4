// Splits MiniMax-M2 output into reasoning and content, incrementally (serving.md (b),
// "What m2fp4 does" 1-2). Fed pieces of any size, it emits each byte to exactly one channel as
// soon as no later text can change where that byte belongs, so the concatenated output of the
// two channels is the same whatever the split.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace m2fp4 {

enum class ReasoningMode {
  // Text up to the first `</think>` is reasoning (a leading `<think>` is dropped); later
  // `</think>` are removed from content. Without `</think>` everything is reasoning except a tool
  // call block (`<minimax:tool_call>` + whitespace + `<invoke name=`), which ends the reasoning.
  kMinimaxM2,
  // vLLM's minimax_m2_append_think: no split; content is "<think>" + the whole output.
  kMinimaxM2AppendThink,
  // Everything is content.
  kNone,
};

// "minimax_m2", "minimax_m2_append_think" or "none"; anything else is an m2fp4::Error.
ReasoningMode parse_reasoning_mode(std::string_view name);
const char* reasoning_mode_name(ReasoningMode mode);

// A run of output text that belongs to one channel.
struct ReasoningPiece {
  bool is_reasoning = false;  // else content
  std::string text;
};

class ReasoningParser {
 public:
  explicit ReasoningParser(ReasoningMode mode);

  // Appends to `out` what `text` (the next piece of output) decides. Text that a later piece may
  // still turn into markup (a partial `</think>`) is held back.
  void feed(std::string_view text, std::vector<ReasoningPiece>& out);
  // End of output: held-back text goes to the channel it was in.
  void finish(std::vector<ReasoningPiece>& out);

  // Bytes examined by searches so far: within a small multiple of the bytes fed however the
  // text is split (tests check that held-back markup is not rescanned on every feed).
  size_t bytes_scanned() const { return scanned_; }

 private:
  enum class State { kStart, kReasoning, kContent };

  void process(std::vector<ReasoningPiece>& out);
  void process_reasoning(std::vector<ReasoningPiece>& out);
  void process_content(std::vector<ReasoningPiece>& out);

  // Fed text not yet emitted: buf_ from head_ on (the emitted prefix is dropped when it is at
  // least half of buf_, so emitting never moves the rest byte by byte).
  std::string_view pending() const { return std::string_view(buf_).substr(head_); }
  void consume(size_t n) { head_ += n; }

  ReasoningMode mode_;
  State state_ = State::kStart;
  std::string buf_;
  size_t head_ = 0;
  // kReasoning: pending() starts with `<minimax:tool_call>` + whitespace that may still become a
  // tool call block; its whitespace was skipped up to block_spaces_end_.
  bool block_wait_ = false;
  size_t block_spaces_end_ = 0;
  size_t scanned_ = 0;
};

}  // namespace m2fp4
