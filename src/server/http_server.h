// `m2fp4 serve`'s HTTP server: the OpenAI / vLLM API over cpp-httplib, in front of an Engine.
//
// Routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health,
// GET /metrics, POST /tokenize, POST /detokenize (also without the /v1 prefix where vLLM has it).
// Every route but /health needs `Authorization: Bearer KEY` when an API key is set.
// Connections: a fixed pool of HTTP threads, TCP_NODELAY, keep-alive without a request-count
// limit and with an idle timeout longer than the clients' own (aiohttp 15 s, httpx 5 s), so a
// client never sends on a connection the server has just closed.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "text/tokenizer/tokenizer.h"

namespace m2fp4::server {

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 8000;  // 0: any free port (see OpenAiServer::port())
  std::string api_key;
  std::vector<std::string> served_model_names;  // the first is reported in responses
  std::string model_dir;
  std::string chat_template_source;  // --chat-template; empty: the model's
  std::string tool_call_parser;      // "" or minimax_m2
  std::string reasoning_parser;      // "" (none), minimax_m2, minimax_m2_append_think
  bool enable_auto_tool_choice = false;
  size_t max_body_bytes = 32u << 20;
  size_t max_json_depth = 64;           // request bodies (tool schemas stay under 20)
  size_t max_prompt_bytes = 16u << 20;  // rendered chat prompt
  int http_threads = 0;                 // 0: enough for max_num_seqs streams + idle keep-alives
  int keep_alive_timeout_s = 120;
  int64_t max_num_seqs = 64;
};

class OpenAiServer {
 public:
  // Loads the chat template and generation defaults of config.model_dir (m2fp4::Error if bad).
  OpenAiServer(Engine& engine, const Tokenizer& tokenizer, ServerConfig config);
  ~OpenAiServer();
  OpenAiServer(const OpenAiServer&) = delete;
  OpenAiServer& operator=(const OpenAiServer&) = delete;

  // Binds the listening socket (m2fp4::Error when it cannot); returns the port.
  int bind();
  // Serves until stop(); returns after the last connection thread ended.
  void listen();
  // SIGTERM: new requests get 503, running ones finish, then the server stops.
  void drain_and_stop();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace m2fp4::server
