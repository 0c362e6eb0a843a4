// State the route handlers share (internal to src/server).
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/protocol.h"
#include "text/chat/chat_template.h"
#include "text/constraints/token_trie.h"
#include "text/parsers/reasoning_parser.h"
#include "text/tokenizer/tokenizer.h"

namespace m2fp4::server {

struct ServerContext {
  ServerContext(Engine& e, const Tokenizer& t, ServerConfig c)
      : engine(e), tokenizer(t), config(std::move(c)) {}

  Engine& engine;
  const Tokenizer& tokenizer;
  ServerConfig config;
  GenerationDefaults defaults;
  // The model's templates without and with tools (they differ when tokenizer_config has a list).
  std::optional<ChatTemplate> template_plain;
  std::optional<ChatTemplate> template_tools;
  nlohmann::ordered_json special_tokens = nlohmann::ordered_json::object();
  ServerMetrics metrics;
  std::atomic<int64_t> active_requests{0};
  std::atomic<bool> draining{false};
  std::atomic<uint64_t> next_id{1};

  const std::string& model_name() const { return config.served_model_names.front(); }
  // Throws ApiError(404) when the request names a model this server does not serve.
  void check_model(const std::string& requested) const;
  // Renders a chat through the template; template errors -> ApiError(400, "template line N: ..").
  std::string render_chat(const nlohmann::ordered_json& messages,
                          const nlohmann::ordered_json& tools, bool add_generation_prompt,
                          const nlohmann::ordered_json& template_kwargs) const;
  // Parses a request body: size and nesting depth checked first; bad JSON -> ApiError(400).
  nlohmann::ordered_json parse_body(const std::string& body) const;
  std::string new_id(const char* prefix);
  // The vocabulary trie of structured output, built on first use and shared by all requests.
  std::shared_ptr<const TokenTrie> token_trie() {
    std::call_once(token_trie_once_, [&] { token_trie_ = std::make_shared<TokenTrie>(tokenizer); });
    return token_trie_;
  }

 private:
  std::once_flag token_trie_once_;
  std::shared_ptr<const TokenTrie> token_trie_;
};

// Counts a request as active while it lives (drain waits for zero).
class ActiveRequest {
 public:
  explicit ActiveRequest(ServerContext& ctx) : ctx_(ctx) { ++ctx_.active_requests; }
  ~ActiveRequest() { --ctx_.active_requests; }
  ActiveRequest(const ActiveRequest&) = delete;
  ActiveRequest& operator=(const ActiveRequest&) = delete;

 private:
  ServerContext& ctx_;
};

void send_json(httplib::Response& res, int status, const nlohmann::ordered_json& body);

// POST /v1/chat/completions and /v1/completions (completions.cc).
void handle_generation(ServerContext& ctx, bool chat, const httplib::Request& req,
                       httplib::Response& res);

}  // namespace m2fp4::server
