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
  if (head_ > 0 && head_ >= buf_.size() - head_) {
    buf_.erase(0, head_);
    head_ = 0;
  }
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
        const std::string_view buf = pending();
        const size_t n = std::min(buf.size(), kThinkOpen.size());
        if (buf.substr(0, n) == kThinkOpen.substr(0, n)) {
          if (n < kThinkOpen.size()) return;  // could still become `<think>`
          consume(n);
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
  const std::string_view buf = pending();
  if (block_wait_) {
    // Only whitespace and a prefix of `<invoke name=` follow the tag: look at the new bytes.
    const size_t before = block_spaces_end_;
    const PrefixMatch m = match_tool_block_start(buf, 0, nullptr, &block_spaces_end_);
    scanned_ += block_spaces_end_ - before + kInvokeOpen.size();
    if (m == PrefixMatch::kPartial) return;
    block_wait_ = false;
    if (m == PrefixMatch::kYes) {
      state_ = State::kContent;  // the block itself is content
      return;
    }
    // A mention after all: the text is looked at once more below, from its start.
  }
  const size_t think_end = buf.find(kThinkClose);
  scanned_ += think_end == std::string_view::npos ? buf.size() : think_end + kThinkClose.size();
  // A tool call block before `</think>` ends the reasoning there (the model forgot `</think>`).
  for (size_t from = 0;;) {
    const size_t block = buf.find(kToolBlockOpen, from);
    scanned_ += (block == std::string_view::npos ? buf.size() : block + kToolBlockOpen.size()) -
                std::min(from, buf.size());
    if (block == std::string_view::npos ||
        (think_end != std::string_view::npos && block > think_end)) {
      break;
    }
    size_t spaces_end = 0;
    const PrefixMatch m = match_tool_block_start(buf, block, nullptr, &spaces_end);
    scanned_ += spaces_end - block - kToolBlockOpen.size() + kInvokeOpen.size();
    if (m == PrefixMatch::kNo) {
      from = block + 1;
      continue;
    }
    emit(out, true, buf.substr(0, block));
    consume(block);
    if (m == PrefixMatch::kPartial) {
      // Wait: a block start or a mention.
      block_wait_ = true;
      block_spaces_end_ = spaces_end - block;
      return;
    }
    state_ = State::kContent;  // the block itself is content
    return;
  }
  if (think_end != std::string_view::npos) {
    emit(out, true, buf.substr(0, think_end));
    consume(think_end + kThinkClose.size());
    state_ = State::kContent;
    return;
  }
  const size_t hold =
      std::max(partial_tag_suffix(buf, kThinkClose), partial_tag_suffix(buf, kToolBlockOpen));
  emit(out, true, buf.substr(0, buf.size() - hold));
  consume(buf.size() - hold);
}

void ReasoningParser::process_content(std::vector<ReasoningPiece>& out) {
  const std::string_view buf = pending();
  if (mode_ != ReasoningMode::kMinimaxM2) {
    emit(out, false, buf);
    consume(buf.size());
    return;
  }
  // Quantized M2.7 variants re-emit `</think>` inside the answer (vllm PR#44898): drop them.
  size_t pos = 0;
  for (size_t end; (end = buf.find(kThinkClose, pos)) != std::string_view::npos;) {
    emit(out, false, buf.substr(pos, end - pos));
    pos = end + kThinkClose.size();
  }
  scanned_ += buf.size();
  const std::string_view rest = buf.substr(pos);
  const size_t hold = partial_tag_suffix(rest, kThinkClose);
  emit(out, false, rest.substr(0, rest.size() - hold));
  consume(buf.size() - hold);
}

void ReasoningParser::finish(std::vector<ReasoningPiece>& out) {
  process(out);
  // Held-back text is a tag that never completed: it stays in the channel it was in.
  emit(out, state_ != State::kContent, pending());
  buf_.clear();
  head_ = 0;
  block_wait_ = false;
  if (state_ == State::kStart) state_ = State::kReasoning;
}

}  // namespace m2fp4
