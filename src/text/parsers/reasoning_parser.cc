#include "text/parsers/reasoning_parser.h"

#include <algorithm>

#include "base/error.h"
#include "text/parsers/tool_call_parser.h"

namespace m2fp4 {
namespace {

constexpr std::string_view kThinkOpen = "<think>";
constexpr std::string_view kThinkClose = "</think>";

void emit(std::vector<ReasoningPiece>& out, bool is_reasoning, std::string_view text) {
  if (text.empty()) return;
  if (!out.empty() && out.back().is_reasoning == is_reasoning) {
    out.back().text.append(text);
  } else {
    out.push_back({is_reasoning, std::string(text)});
  }
}

}  // namespace

ReasoningMode parse_reasoning_mode(std::string_view name) {
  if (name == "minimax_m2") return ReasoningMode::kMinimaxM2;
  if (name == "minimax_m2_append_think") return ReasoningMode::kMinimaxM2AppendThink;
  if (name == "none") return ReasoningMode::kNone;
  fail("unknown reasoning parser '", name,
       "' (expected minimax_m2, minimax_m2_append_think or none)");
}

const char* reasoning_mode_name(ReasoningMode mode) {
  switch (mode) {
    case ReasoningMode::kMinimaxM2:
      return "minimax_m2";
    case ReasoningMode::kMinimaxM2AppendThink:
      return "minimax_m2_append_think";
    case ReasoningMode::kNone:
      return "none";
  }
  return "?";
}

ReasoningParser::ReasoningParser(ReasoningMode mode) : mode_(mode) {}

void ReasoningParser::feed(std::string_view text, std::vector<ReasoningPiece>& out) {
  buf_.append(text);
  process(out);
}

void ReasoningParser::process(std::vector<ReasoningPiece>& out) {
  if (state_ == State::kStart) {
    switch (mode_) {
      case ReasoningMode::kNone:
        state_ = State::kContent;
        break;
      case ReasoningMode::kMinimaxM2AppendThink:
        // vLLM prefixes the first content delta with the `<think>` that the prompt opened.
        emit(out, false, kThinkOpen);
        state_ = State::kContent;
        break;
      case ReasoningMode::kMinimaxM2: {
        // The prompt opened the think block; M2.5+ sometimes opens it again (vllm#38212).
        const size_t n = std::min(buf_.size(), kThinkOpen.size());
        if (buf_.compare(0, n, kThinkOpen.substr(0, n)) == 0) {
          if (n < kThinkOpen.size()) return;  // could still become `<think>`
          buf_.erase(0, n);
        }
        state_ = State::kReasoning;
        break;
      }
    }
  }
  if (state_ == State::kReasoning) process_reasoning(out);
  if (state_ == State::kContent) process_content(out);
}

void ReasoningParser::process_reasoning(std::vector<ReasoningPiece>& out) {
  const size_t think_end = buf_.find(kThinkClose);
  // A tool call block before `</think>` ends the reasoning there (the model forgot `</think>`).
  for (size_t from = 0;;) {
    const size_t block = buf_.find(kToolBlockOpen, from);
    if (block == std::string::npos || (think_end != std::string::npos && block > think_end)) break;
    const PrefixMatch m = match_tool_block_start(buf_, block);
    if (m == PrefixMatch::kNo) {
      from = block + 1;
      continue;
    }
    emit(out, true, std::string_view(buf_).substr(0, block));
    buf_.erase(0, block);
    if (m == PrefixMatch::kPartial) return;  // wait: a block start or a mention
    state_ = State::kContent;                // the block itself is content
    return;
  }
  if (think_end != std::string::npos) {
    emit(out, true, std::string_view(buf_).substr(0, think_end));
    buf_.erase(0, think_end + kThinkClose.size());
    state_ = State::kContent;
    return;
  }
  const size_t hold =
      std::max(partial_tag_suffix(buf_, kThinkClose), partial_tag_suffix(buf_, kToolBlockOpen));
  emit(out, true, std::string_view(buf_).substr(0, buf_.size() - hold));
  buf_.erase(0, buf_.size() - hold);
}

void ReasoningParser::process_content(std::vector<ReasoningPiece>& out) {
  if (mode_ != ReasoningMode::kMinimaxM2) {
    emit(out, false, buf_);
    buf_.clear();
    return;
  }
  // Quantized M2.7 variants re-emit `</think>` inside the answer (vllm PR#44898): drop them.
  for (size_t end; (end = buf_.find(kThinkClose)) != std::string::npos;) {
    emit(out, false, std::string_view(buf_).substr(0, end));
    buf_.erase(0, end + kThinkClose.size());
  }
  const size_t hold = partial_tag_suffix(buf_, kThinkClose);
  emit(out, false, std::string_view(buf_).substr(0, buf_.size() - hold));
  buf_.erase(0, buf_.size() - hold);
}

void ReasoningParser::finish(std::vector<ReasoningPiece>& out) {
  process(out);
  // Held-back text is a tag that never completed: it stays in the channel it was in.
  emit(out, state_ != State::kContent, buf_);
  buf_.clear();
  if (state_ == State::kStart) state_ = State::kReasoning;
}

}  // namespace m2fp4
