// One choice of a completion, from engine tokens to API deltas: tokens -> streaming
// detokenizer -> stop strings -> (chat) reasoning + tool-call parser -> deltas. The same deltas
// serve streaming (one SSE chunk each) and non-streaming (merged) responses, so both agree.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "server/stop_strings.h"
#include "text/parsers/output_parser.h"
#include "text/tokenizer/tokenizer.h"

namespace m2fp4::server {

struct ChoiceOptions {
  bool chat = true;
  bool parse_output = true;  // chat: run the reasoning/tool parser (else raw content)
  OutputParserOptions parser;
  bool parallel_tool_calls = true;
  std::vector<std::string> stop;
  bool include_stop_str_in_output = false;
  bool skip_special_tokens = true;
  bool logprobs = false;
  size_t initial_text_offset = 0;  // completions logprobs: bytes before the output (echo)
};

// What one step of output gives the client: a delta ({"content": ..}, {"reasoning_content": ..,
// "reasoning": ..}, {"tool_calls": [..]}; completions: {"text": ..}) and the logprobs of the
// tokens it completes (chat: an array of content entries; completions: the legacy object).
struct OutputPiece {
  nlohmann::ordered_json delta = nlohmann::ordered_json::object();
  nlohmann::ordered_json logprobs;  // null when none
  std::vector<int32_t> token_ids;   // the tokens whose text this delta completes
};

class ChoiceOutput {
 public:
  ChoiceOutput(const Tokenizer& tokenizer, ChoiceOptions options);

  // Tokens the engine generated (with their logprobs when asked). Returns true when a stop
  // string ended the output: the caller aborts the engine request and calls finish().
  bool add_tokens(const std::vector<int32_t>& tokens, const std::vector<TokenLogprob>& logprobs,
                  std::vector<OutputPiece>& out);
  // End of output: "stop" or "length" as the engine saw it (ignored after a stop string).
  void finish(const std::string& engine_reason, std::vector<OutputPiece>& out);

  bool finished() const { return finished_; }
  // After finish(): stop | length | tool_calls.
  const std::string& finish_reason() const { return finish_reason_; }
  int64_t tokens() const { return tokens_; }

 private:
  void emit_text(const std::string& text, std::vector<OutputPiece>& out);
  void add_delta(nlohmann::ordered_json delta, std::vector<OutputPiece>& out);
  nlohmann::ordered_json take_logprobs();

  const Tokenizer& tokenizer_;
  ChoiceOptions options_;
  StreamingDecoder decoder_;
  StopStringFilter stop_;
  std::optional<OutputParser> parser_;
  bool finished_ = false;
  std::string finish_reason_;
  int64_t tokens_ = 0;
  size_t text_offset_ = 0;             // completions logprobs: bytes of text so far
  nlohmann::ordered_json pending_lp_;  // logprobs not yet attached to a delta
  std::vector<int32_t> pending_ids_;   // token ids not yet attached to a delta
};

// The token's text as logprobs show it, and its bytes.
nlohmann::ordered_json chat_logprob_entry(const Tokenizer& tokenizer, const TokenLogprob& lp);

}  // namespace m2fp4::server
