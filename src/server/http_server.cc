#include "server/http_server.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "base/error.h"
#include "base/file.h"
#include "base/json_depth.h"
#include "base/log.h"
#include "server/api_error.h"
#include "server/server_context.h"

namespace m2fp4::server {
namespace {

using Json = nlohmann::ordered_json;

}  // namespace

void send_json(httplib::Response& res, int status, const nlohmann::ordered_json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, Json::error_handler_t::replace), "application/json");
}

void ServerContext::check_model(const std::string& requested) const {
  if (requested.empty()) return;
  for (const auto& name : config.served_model_names) {
    if (name == requested) return;
  }
  throw ApiError(404, "The model `" + requested + "` does not exist.", "model", "NotFoundError");
}

std::string ServerContext::render_chat(const nlohmann::ordered_json& messages,
                                       const nlohmann::ordered_json& tools,
                                       bool add_generation_prompt,
                                       const nlohmann::ordered_json& template_kwargs) const {
  const std::optional<ChatTemplate>& tmpl = tools.is_null() ? template_plain : template_tools;
  if (!tmpl) throw ApiError(400, "the model has no chat template (start with --chat-template)");
  Json extra = special_tokens;
  for (auto& [k, v] : template_kwargs.items()) extra[k] = v;
  std::string text;
  try {
    text = tmpl->render(messages, tools, add_generation_prompt, extra);
  } catch (const Error& e) {
    throw ApiError(400, std::string("chat template: ") + e.what(), "messages");
  }
  if (text.size() > config.max_prompt_bytes) {
    throw ApiError(400,
                   "the rendered prompt has " + std::to_string(text.size()) +
                       " bytes, over the server's limit of " +
                       std::to_string(config.max_prompt_bytes),
                   "messages");
  }
  return text;
}

nlohmann::ordered_json ServerContext::parse_body(const std::string& body) const {
  const size_t depth = json_nesting_depth(body);
  if (depth > config.max_json_depth) {
    throw ApiError(400, "the request JSON is nested " + std::to_string(depth) +
                            " levels deep (limit " + std::to_string(config.max_json_depth) + ")");
  }
  try {
    return Json::parse(body);
  } catch (const nlohmann::json::exception& e) {
    throw ApiError(400, std::string("the request body is not valid JSON: ") + e.what());
  }
}

std::string ServerContext::new_id(const char* prefix) {
  char buf[40];
  const uint64_t n = next_id.fetch_add(1);
  const uint64_t t =
      static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  std::snprintf(buf, sizeof buf, "%016llx%08llx", static_cast<unsigned long long>(t),
                static_cast<unsigned long long>(n & 0xffffffffu));
  return prefix + std::string(buf);
}

struct OpenAiServer::Impl {
  Impl(Engine& engine, const Tokenizer& tokenizer, ServerConfig config)
      : ctx(engine, tokenizer, std::move(config)) {}

  ServerContext ctx;
  httplib::Server http;
  int port = 0;

  void setup();
  void add_routes();
  // Runs a handler; ApiError and m2fp4::Error become OpenAI error objects.
  void guarded(httplib::Response& res, const std::function<void()>& body);
  void handle_tokenize(const httplib::Request& req, httplib::Response& res);
  void handle_detokenize(const httplib::Request& req, httplib::Response& res);
  Json models() const;
};

void OpenAiServer::Impl::guarded(httplib::Response& res, const std::function<void()>& body) {
  try {
    body();
  } catch (const ApiError& e) {
    send_json(res, e.status(), error_body(e));
  } catch (const Error& e) {
    send_json(res, 400, error_body(400, e.what()));
  } catch (const nlohmann::json::exception& e) {
    // A field of an unexpected JSON type that a handler read directly.
    send_json(res, 400, error_body(400, std::string("bad request field: ") + e.what()));
  } catch (const std::exception& e) {
    send_json(res, 500, error_body(500, e.what(), {}, "internal_server_error"));
  }
}

Json OpenAiServer::Impl::models() const {
  Json data = Json::array();
  const int64_t created = static_cast<int64_t>(std::time(nullptr));
  for (const auto& name : ctx.config.served_model_names) {
    data.push_back({{"id", name},
                    {"object", "model"},
                    {"created", created},
                    {"owned_by", "m2fp4"},
                    {"root", ctx.config.model_dir},
                    {"parent", nullptr},
                    {"max_model_len", ctx.engine.max_model_len()}});
  }
  return {{"object", "list"}, {"data", data}};
}

void OpenAiServer::Impl::handle_tokenize(const httplib::Request& req, httplib::Response& res) {
  const Json body = ctx.parse_body(req.body);
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object");
  if (body.contains("model") && !body["model"].is_null()) {
    if (!body["model"].is_string()) throw ApiError(400, "'model' must be a string", "model");
    ctx.check_model(body["model"].get<std::string>());
  }
  std::vector<int32_t> ids;
  if (body.contains("messages")) {
    const Json messages = normalize_messages(body["messages"]);
    Json tools = nullptr;
    if (body.contains("tools") && !body["tools"].is_null()) {
      tools = normalize_tools(body["tools"]);
    }
    bool add_generation_prompt = true;
    if (body.contains("add_generation_prompt")) {
      if (!body["add_generation_prompt"].is_boolean()) {
        throw ApiError(400, "'add_generation_prompt' must be a boolean", "add_generation_prompt");
      }
      add_generation_prompt = body["add_generation_prompt"].get<bool>();
    }
    Json kwargs = Json::object();
    if (body.contains("chat_template_kwargs") && !body["chat_template_kwargs"].is_null()) {
      if (!body["chat_template_kwargs"].is_object()) {
        throw ApiError(400, "'chat_template_kwargs' must be an object", "chat_template_kwargs");
      }
      kwargs = body["chat_template_kwargs"];
    }
    const std::string text = ctx.render_chat(messages, tools, add_generation_prompt, kwargs);
    ids = ctx.tokenizer.encode(text, false);
  } else if (body.contains("prompt") && body["prompt"].is_string()) {
    const std::string& prompt = body["prompt"].get_ref<const std::string&>();
    if (prompt.size() > ctx.config.max_prompt_bytes) {
      throw ApiError(400, "the prompt is larger than the server's limit", "prompt");
    }
    bool add_special = true;
    if (body.contains("add_special_tokens")) {
      if (!body["add_special_tokens"].is_boolean()) {
        throw ApiError(400, "'add_special_tokens' must be a boolean", "add_special_tokens");
      }
      add_special = body["add_special_tokens"].get<bool>();
    }
    ids = ctx.tokenizer.encode(prompt, false);
    const auto& tc = ctx.tokenizer.config();
    if (add_special && tc.add_bos_token && tc.bos_id >= 0 &&
        (ids.empty() || ids.front() != tc.bos_id)) {
      ids.insert(ids.begin(), tc.bos_id);
    }
  } else {
    throw ApiError(400, "give 'prompt' (a string) or 'messages'", "prompt");
  }
  Json out = {{"count", ids.size()}, {"max_model_len", ctx.engine.max_model_len()}};
  out["tokens"] = ids;
  if (body.value("return_token_strs", false)) {
    Json strs = Json::array();
    for (int32_t id : ids) strs.push_back(ctx.tokenizer.id_to_token(id));
    out["token_strs"] = strs;
  } else {
    out["token_strs"] = nullptr;
  }
  send_json(res, 200, out);
}

void OpenAiServer::Impl::handle_detokenize(const httplib::Request& req, httplib::Response& res) {
  const Json body = ctx.parse_body(req.body);
  if (!body.is_object() || !body.contains("tokens") || !body["tokens"].is_array()) {
    throw ApiError(400, "'tokens' must be an array of token ids", "tokens");
  }
  if (body.contains("model") && body["model"].is_string()) {
    ctx.check_model(body["model"].get<std::string>());
  }
  std::vector<int32_t> ids;
  for (const auto& t : body["tokens"]) {
    if (!t.is_number_integer() || !ctx.tokenizer.has_id(t.get<int32_t>()) ||
        t.get<int64_t>() > INT32_MAX) {
      throw ApiError(400, "'tokens' holds an id outside the vocabulary: " + t.dump(), "tokens");
    }
    ids.push_back(t.get<int32_t>());
  }
  send_json(res, 200, {{"prompt", ctx.tokenizer.decode(ids, false)}});
}

void OpenAiServer::Impl::add_routes() {
  http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    res.status = ctx.draining ? 503 : 200;
  });
  auto models_route = [this](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, models());
  };
  http.Get("/v1/models", models_route);
  http.Get("/models", models_route);
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(ctx.metrics.render(ctx.model_name(), ctx.engine.stats()),
                    "text/plain; version=0.0.4; charset=utf-8");
  });
  auto generation = [this](bool chat) {
    return [this, chat](const httplib::Request& req, httplib::Response& res) {
      guarded(res, [&] { handle_generation(ctx, chat, req, res); });
    };
  };
  http.Post("/v1/chat/completions", generation(true));
  http.Post("/chat/completions", generation(true));
  http.Post("/v1/completions", generation(false));
  http.Post("/completions", generation(false));
  http.Post("/tokenize", [this](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] { handle_tokenize(req, res); });
  });
  http.Post("/detokenize", [this](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] { handle_detokenize(req, res); });
  });
}

void OpenAiServer::Impl::setup() {
  const ServerConfig& c = ctx.config;
  M2_CHECK(!c.served_model_names.empty(), "no served model name");
  ctx.defaults = read_generation_defaults(c.model_dir);
  if (!c.chat_template_source.empty()) {
    ctx.template_plain.emplace(c.chat_template_source);
    ctx.template_tools.emplace(c.chat_template_source);
    ctx.special_tokens = load_model_chat_template(c.model_dir, false).special_tokens;
  } else {
    const ModelChatTemplate plain = load_model_chat_template(c.model_dir, false);
    const ModelChatTemplate tools = load_model_chat_template(c.model_dir, true);
    ctx.special_tokens = plain.special_tokens;
    if (!plain.source.empty()) ctx.template_plain.emplace(plain.source);
    if (!tools.source.empty()) ctx.template_tools.emplace(tools.source);
  }
  if (!c.reasoning_parser.empty()) parse_reasoning_mode(c.reasoning_parser);  // checks the name
  M2_CHECK(c.tool_call_parser.empty() || c.tool_call_parser == "minimax_m2",
           "--tool-call-parser: '", c.tool_call_parser, "' is not supported (minimax_m2)");

  // Each connection holds a thread while it is open (streaming or kept alive), so the pool
  // covers a full batch of streams plus idle kept-alive connections of benchmark clients.
  const int threads = c.http_threads > 0
                          ? c.http_threads
                          : static_cast<int>(std::max<int64_t>(64, 4 * c.max_num_seqs + 16));
  http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  http.set_tcp_nodelay(true);
  http.set_keep_alive_max_count(std::numeric_limits<int>::max());
  http.set_keep_alive_timeout(c.keep_alive_timeout_s);
  http.set_read_timeout(60, 0);
  http.set_write_timeout(30, 0);
  http.set_payload_max_length(c.max_body_bytes);

  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!ctx.config.api_key.empty() && req.path != "/health") {
      const std::string auth = req.get_header_value("Authorization");
      const std::string want = "Bearer " + ctx.config.api_key;
      if (auth != want) {
        send_json(res, 401,
                  error_body(401,
                             "Unauthorized: a valid 'Authorization: Bearer KEY' "
                             "header is required",
                             {}, "authentication_error"));
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    if (ctx.draining && req.path != "/health" && req.path != "/metrics") {
      send_json(res, 503,
                error_body(503, "the server is shutting down", {}, "service_unavailable"));
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string message = "error";
    if (res.status == 404) message = "no route " + req.method + " " + req.path;
    if (res.status == 405) message = "method not allowed";
    if (res.status == 413) message = "the request body is larger than the server's limit";
    if (res.status == 400) message = "bad request";
    send_json(res, res.status, error_body(res.status, message));
  });
  http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "internal error";
        try {
          if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        send_json(res, 500, error_body(500, what, {}, "internal_server_error"));
      });
  http.set_logger([this](const httplib::Request&, const httplib::Response& res) {
    ctx.metrics.count_http(res.status);
  });
  add_routes();
}

OpenAiServer::OpenAiServer(Engine& engine, const Tokenizer& tokenizer, ServerConfig config)
    : impl_(std::make_unique<Impl>(engine, tokenizer, std::move(config))) {
  impl_->setup();
}

OpenAiServer::~OpenAiServer() = default;

int OpenAiServer::bind() {
  const ServerConfig& c = impl_->ctx.config;
  if (c.port == 0) {
    impl_->port = impl_->http.bind_to_any_port(c.host);
    M2_CHECK(impl_->port > 0, "cannot listen on ", c.host, " (any port)");
  } else {
    M2_CHECK(impl_->http.bind_to_port(c.host, c.port), "cannot listen on ", c.host, ":", c.port,
             " (in use, or not an address of this machine)");
    impl_->port = c.port;
  }
  return impl_->port;
}

void OpenAiServer::listen() {
  impl_->http.listen_after_bind();
}

void OpenAiServer::drain_and_stop() {
  impl_->ctx.draining = true;
  while (impl_->ctx.active_requests.load() > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  impl_->http.stop();
}

void OpenAiServer::stop() {
  impl_->http.stop();
}

}  // namespace m2fp4::server
