#include "server/choice_output.h"

namespace m2fp4::server {
namespace {

using Json = nlohmann::ordered_json;

Json byte_array(std::string_view s) {
  Json a = Json::array();
  for (unsigned char c : s) a.push_back(static_cast<int>(c));
  return a;
}

// Token text for logprobs: the decoded bytes, made valid UTF-8 for JSON (a token holding part of
// a character shows U+FFFD; its exact bytes are in "bytes").
std::string token_text(const Tokenizer& tokenizer, int32_t id) {
  return tokenizer.decode({id}, /*skip_special_tokens=*/false);
}

}  // namespace

Json chat_logprob_entry(const Tokenizer& tokenizer, const TokenLogprob& lp) {
  Json entry = {{"token", token_text(tokenizer, lp.token)},
                {"logprob", lp.logprob},
                {"bytes", byte_array(tokenizer.token_bytes(lp.token))}};
  Json top = Json::array();
  for (const auto& [id, value] : lp.top) {
    top.push_back({{"token", token_text(tokenizer, id)},
                   {"logprob", value},
                   {"bytes", byte_array(tokenizer.token_bytes(id))}});
  }
  entry["top_logprobs"] = std::move(top);
  return entry;
}

ChoiceOutput::ChoiceOutput(const Tokenizer& tokenizer, ChoiceOptions options)
    : tokenizer_(tokenizer),
      options_(std::move(options)),
      decoder_(tokenizer, options_.skip_special_tokens),
      stop_(options_.stop, options_.include_stop_str_in_output),
      text_offset_(options_.initial_text_offset) {
  if (options_.chat && options_.parse_output) parser_.emplace(options_.parser);
}

Json ChoiceOutput::take_logprobs() {
  Json lp = std::move(pending_lp_);
  pending_lp_ = nullptr;
  return lp;
}

void ChoiceOutput::add_delta(Json delta, std::vector<OutputPiece>& out) {
  if (delta.contains("tool_calls") && !options_.parallel_tool_calls) {
    // parallel_tool_calls=false: only the first call is returned.
    Json kept = Json::array();
    for (auto& tc : delta["tool_calls"]) {
      if (tc.value("index", 0) == 0) kept.push_back(tc);
    }
    if (kept.empty()) return;
    delta["tool_calls"] = std::move(kept);
  }
  if (delta.contains("reasoning_content")) delta["reasoning"] = delta["reasoning_content"];
  OutputPiece piece;
  piece.delta = std::move(delta);
  piece.logprobs = take_logprobs();
  piece.token_ids.swap(pending_ids_);
  out.push_back(std::move(piece));
}

void ChoiceOutput::emit_text(const std::string& text, std::vector<OutputPiece>& out) {
  if (text.empty()) return;
  if (!options_.chat) {
    add_delta(Json{{"text", text}}, out);
    text_offset_ += text.size();
    return;
  }
  if (!parser_) {
    add_delta(Json{{"content", text}}, out);
    return;
  }
  for (auto& d : parser_->feed(text)) add_delta(std::move(d), out);
}

bool ChoiceOutput::add_tokens(const std::vector<int32_t>& tokens,
                              const std::vector<TokenLogprob>& logprobs,
                              std::vector<OutputPiece>& out) {
  if (finished_) return false;
  for (size_t i = 0; i < tokens.size(); ++i) {
    ++tokens_;
    pending_ids_.push_back(tokens[i]);
    if (options_.logprobs && i < logprobs.size()) {
      if (options_.chat) {
        if (pending_lp_.is_null()) pending_lp_ = {{"content", Json::array()}};
        pending_lp_["content"].push_back(chat_logprob_entry(tokenizer_, logprobs[i]));
      } else {
        if (pending_lp_.is_null()) {
          pending_lp_ = {{"tokens", Json::array()},
                         {"token_logprobs", Json::array()},
                         {"top_logprobs", Json::array()},
                         {"text_offset", Json::array()}};
        }
        const TokenLogprob& lp = logprobs[i];
        pending_lp_["tokens"].push_back(token_text(tokenizer_, lp.token));
        pending_lp_["token_logprobs"].push_back(lp.logprob);
        Json top = Json::object();
        for (const auto& [id, value] : lp.top) top[token_text(tokenizer_, id)] = value;
        pending_lp_["top_logprobs"].push_back(std::move(top));
        pending_lp_["text_offset"].push_back(text_offset_);
      }
    }
    StopStringFilter::Result r = stop_.feed(decoder_.feed(tokens[i]));
    emit_text(r.text, out);
    if (r.stopped) {
      finish("stop", out);
      return true;
    }
  }
  return false;
}

void ChoiceOutput::finish(const std::string& engine_reason, std::vector<OutputPiece>& out) {
  if (finished_) return;
  const bool by_stop_string = stop_.stopped();
  if (!by_stop_string) {
    StopStringFilter::Result r = stop_.feed(decoder_.flush());
    emit_text(r.text, out);
    if (!r.stopped) emit_text(stop_.finish(), out);
  }
  const std::string reason = stop_.stopped() ? "stop" : engine_reason;
  finished_ = true;
  if (parser_) {
    for (auto& d : parser_->finish(reason)) add_delta(std::move(d), out);
    finish_reason_ = parser_->finish_reason();
  } else {
    finish_reason_ = reason;
  }
  if (!pending_lp_.is_null() || !pending_ids_.empty()) {
    // Tokens whose text was held back and never sent (or had none, like EOS): an empty delta
    // carries their logprobs and ids.
    OutputPiece piece;
    piece.logprobs = take_logprobs();
    piece.token_ids.swap(pending_ids_);
    out.push_back(std::move(piece));
  }
}

}  // namespace m2fp4::server
