#include "server/output_constraint.h"

#include <string_view>
#include <utility>
#include <vector>

#include "base/error.h"
#include "server/api_error.h"
#include "text/constraints/json_matcher.h"
#include "text/constraints/schema_object_matcher.h"
#include "text/constraints/tool_call_matcher.h"
#include "text/parsers/tool_call_parser.h"

namespace m2fp4::server {
namespace {

constexpr std::string_view kThinkEnd = "</think>";

// Advances a match of `tag` (whose only '<' is its first byte: a mismatch restarts the match at
// that byte); true when it completes.
bool advance(uint8_t& pos, uint8_t byte, std::string_view tag) {
  if (byte == static_cast<uint8_t>(tag[pos])) {
    if (++pos < tag.size()) return false;
    pos = 0;
    return true;
  }
  pos = byte == '<' ? 1 : 0;
  return false;
}

// The bytes of the output, fed one at a time: free while the model reasons (only the end of
// its reasoning is looked for), then the matcher's. Copyable, for the trie walk.
template <class Matcher>
struct GatedMatcher {
  bool reasoning = false;
  uint8_t think_pos = 0;  // bytes of `</think>` matched at the end of the reasoning so far
  Matcher matcher;
  // Tool calls: `<minimax:tool_call>` inside the reasoning starts the call block too (the
  // minimax_m2 reasoning parser's tool escape), the tag then being the matcher's first bytes.
  bool call_escape = false;
  uint8_t call_pos = 0;  // bytes of `<minimax:tool_call>` matched

  bool operator==(const GatedMatcher&) const = default;

  bool feed(uint8_t byte) {
    if (!reasoning) return matcher.feed(byte);
    if (advance(think_pos, byte, kThinkEnd)) {
      reasoning = false;
      call_pos = 0;
    } else if (call_escape && advance(call_pos, byte, kToolBlockOpen)) {
      reasoning = false;
      think_pos = 0;
      return matcher.feed(kToolBlockOpen);
    }
    return true;
  }
  // A token may end the reasoning now.
  bool at_tag() const { return think_pos > 0 || call_pos > 0; }
};

template <class Matcher>
class OutputConstraint final : public TokenConstraint {
 public:
  OutputConstraint(std::shared_ptr<const TokenTrie> trie, GatedMatcher<Matcher> start,
                   std::shared_ptr<const void> keep_alive)
      : trie_(std::move(trie)), state_(std::move(start)), keep_alive_(std::move(keep_alive)) {}

  // While reasoning, tokens matter only when the text may be about to end the reasoning: a
  // token that completes `</think>` must leave what follows it acceptable.
  bool active() const override { return !broken_ && (!state_.reasoning || state_.at_tag()); }
  bool complete() const override { return !state_.reasoning && state_.matcher.complete(); }
  // The model may stop while it reasons (nothing was asked of the reasoning).
  bool may_end() const override { return state_.reasoning || state_.matcher.may_end(); }

  bool allows(int32_t token) const override {
    if (!trie_->contains(token)) return false;
    GatedMatcher<Matcher> probe = state_;
    for (char c : trie_->token_bytes(token)) {
      if (!probe.feed(static_cast<uint8_t>(c))) return false;
    }
    return true;
  }

  // Long strings and free-text values keep the state unchanged from token to token, so the last
  // few masks are kept: a repeated state costs a copy instead of a trie walk.
  void fill_allowed(std::vector<uint8_t>& allowed) const override {
    for (size_t i = 0; i < cache_.size(); ++i) {
      if (cache_[i].first == state_ && cache_[i].second.size() == allowed.size()) {
        allowed = cache_[i].second;
        if (i > 0) std::swap(cache_[i], cache_[0]);
        return;
      }
    }
    trie_->fill_allowed(state_, allowed);
    if (cache_.size() == kCachedMasks) cache_.pop_back();
    cache_.emplace(cache_.begin(), state_, allowed);
  }

  void accept(int32_t token) override {
    if (broken_) return;
    if (!trie_->contains(token)) {
      // Special tokens (dropped from the text) and end tokens where the output may end leave
      // the state as it is; anything else means the output is no longer valid.
      if (!state_.reasoning && !state_.matcher.may_end()) broken_ = true;
      return;
    }
    GatedMatcher<Matcher> next = state_;
    for (char c : trie_->token_bytes(token)) {
      if (!next.feed(static_cast<uint8_t>(c))) {
        // Only possible when a token ended the reasoning while nothing was masked: stop masking
        // rather than steer an output that cannot be valid any more.
        broken_ = true;
        return;
      }
    }
    state_ = next;
  }

 private:
  std::shared_ptr<const TokenTrie> trie_;
  GatedMatcher<Matcher> state_;
  std::shared_ptr<const void> keep_alive_;  // what the matcher points to
  bool broken_ = false;
  static constexpr size_t kCachedMasks = 2;
  mutable std::vector<std::pair<GatedMatcher<Matcher>, std::vector<uint8_t>>> cache_;
};

}  // namespace

uint8_t schema_top_level_types(const nlohmann::ordered_json& schema) {
  try {
    return json_schema_types(nlohmann::json::parse(schema.dump()));
  } catch (const Error& e) {
    throw ApiError(400, std::string("'response_format.json_schema.schema': ") + e.what(),
                   "response_format");
  }
}

ConstraintFactory output_constraint_factory(
    const ParsedRequest& req, bool tools_parsed, bool starts_in_reasoning,
    const std::function<std::shared_ptr<const TokenTrie>()>& trie) {
  const bool reasons = starts_in_reasoning;
  const bool tool_forced = tools_parsed && (req.tool_choice == ToolChoice::kRequired ||
                                            req.tool_choice == ToolChoice::kNamed);
  if (tool_forced) {
    std::shared_ptr<const ToolCallGrammar> grammar;
    try {
      grammar = ToolCallGrammar::build(req.tools, req.parallel_tool_calls);
    } catch (const Error& e) {
      throw ApiError(400, e.what(), "tools");
    }
    std::shared_ptr<const TokenTrie> t = trie();
    return [t, grammar, reasons]() -> std::shared_ptr<TokenConstraint> {
      GatedMatcher<ToolCallMatcher> start{reasons, 0, ToolCallMatcher(grammar.get()), true, 0};
      return std::make_shared<OutputConstraint<ToolCallMatcher>>(t, start, grammar);
    };
  }
  uint8_t types = 0;
  if (req.response_format == "json_object") types = kJsonObject;
  if (req.response_format == "json_schema") {
    types = schema_top_level_types(req.json_schema);
    std::shared_ptr<const ObjectSchema> object;
    try {
      object = ObjectSchema::build(nlohmann::json::parse(req.json_schema.dump()));
    } catch (const Error& e) {
      throw ApiError(400, std::string("'response_format.json_schema.schema': ") + e.what(),
                     "response_format");
    }
    if (object) {
      std::shared_ptr<const TokenTrie> t = trie();
      return [t, object, reasons]() -> std::shared_ptr<TokenConstraint> {
        GatedMatcher<SchemaObjectMatcher> start{reasons, 0, SchemaObjectMatcher(object.get())};
        return std::make_shared<OutputConstraint<SchemaObjectMatcher>>(t, start, object);
      };
    }
  }
  if (types == 0) return {};
  std::shared_ptr<const TokenTrie> t = trie();
  return [t, types, reasons]() -> std::shared_ptr<TokenConstraint> {
    GatedMatcher<JsonMatcher> start{reasons, 0, JsonMatcher(types)};
    return std::make_shared<OutputConstraint<JsonMatcher>>(t, start, nullptr);
  };
}

}  // namespace m2fp4::server
