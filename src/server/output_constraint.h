// Structured output for chat requests: response_format and tool_choice turned into engine token
// constraints (engine/token_constraint.h) over the tokens' bytes.
//
// - tool_choice "required" or a named function (with tools parsed): the answer must be one
//   MiniMax-M2 tool-call block calling the request's tools (text/constraints/tool_call_matcher.h;
//   several invokes only with parallel_tool_calls), then EOS.
// - response_format json_object: a JSON object (text/constraints/json_matcher.h), then EOS.
// - response_format json_schema: an object schema with "properties" (1..64 of them) is enforced
//   one level deep (text/constraints/schema_object_matcher.h: known keys, each once, required
//   ones before '}', values of the property's enum/const or type); any other schema only by its
//   top-level "type" (a string or a list of them; any JSON value when absent).
// With a reasoning parser the output starts inside the model's thinking: nothing is masked until
// the first `</think>` (matched as text, whatever tokens spell it), as vLLM's structured outputs
// wait for the reasoning parser's end of reasoning; without one (or with thinking disabled) the
// constraint holds from the first token. A forced tool call may also start inside the reasoning
// with `<minimax:tool_call>` (the minimax_m2 reasoning parser ends the reasoning there too).
#pragma once

#include <functional>
#include <memory>

#include "engine/token_constraint.h"
#include "server/protocol.h"
#include "text/constraints/token_trie.h"

namespace m2fp4::server {

using ConstraintFactory = std::function<std::shared_ptr<TokenConstraint>()>;

// A factory making one fresh constraint per choice, or an empty function when the request asks
// for no structured output. `tools_parsed`: the request's tools go through the tool parser (so
// tool_choice applies). `starts_in_reasoning`: the output opens inside the model's thinking (a
// reasoning parser is on and the prompt leaves `<think>` open). `trie` is called only when a
// constraint is needed. Bad input (no tool name writable in the format, an unknown schema type)
// -> ApiError(400).
ConstraintFactory output_constraint_factory(
    const ParsedRequest& req, bool tools_parsed, bool starts_in_reasoning,
    const std::function<std::shared_ptr<const TokenTrie>()>& trie);

// The JsonTypeBits a JSON schema's top-level "type" allows (all for a schema without one).
uint8_t schema_top_level_types(const nlohmann::ordered_json& schema);

}  // namespace m2fp4::server
