// POST /v1/chat/completions and /v1/completions: request -> prompt tokens -> n engine requests
// -> ChoiceOutput per choice -> SSE chunks or one JSON response.
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>

#include "base/error.h"
#include "server/api_error.h"
#include "server/choice_output.h"
#include "server/client_connection.h"
#include "server/output_constraint.h"
#include "server/server_context.h"
#include "server/sse.h"

namespace m2fp4::server {
namespace {

using Json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

const char* engine_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
      return "abort";
    case FinishReason::kError:
      return "error";
    default:
      return "stop";
  }
}

// The engine requests of one API request (n choices) and the events they send back. Engine
// callbacks (engine thread) push; the HTTP thread pops.
class Session {
 public:
  explicit Session(ServerContext& ctx) : ctx_(ctx), active_(ctx) {}
  // The engine holds only weak references: a session dropped early (client gone, error) stops
  // its engine requests here.
  ~Session() { abort_all(); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  ConstraintFactory make_constraint;  // structured output: a fresh constraint per engine request

  // Submits n engine requests for one prompt; their events carry choice indices first_choice..
  // first_choice + n - 1 (prompts are submitted in order, so ids_[choice] is the choice's).
  void submit(const std::vector<int32_t>& prompt, const SamplingOptions& sampling, int64_t n,
              int64_t first_choice, const std::shared_ptr<Session>& self) {
    for (int64_t i = 0; i < n; ++i) {
      GenerationRequest gr;
      gr.prompt = prompt;
      gr.sampling = sampling;
      if (make_constraint) gr.constraint = make_constraint();
      // n > 1 with a seed: distinct but reproducible choices.
      if (sampling.seed && i > 0) gr.sampling.seed = *sampling.seed + static_cast<uint64_t>(i);
      std::weak_ptr<Session> weak = self;
      const int64_t choice = first_choice + i;
      gr.on_event = [weak, choice](const TokenEvent& ev) {
        if (auto s = weak.lock()) s->push(choice, ev);
      };
      try {
        const uint64_t id = ctx_.engine.submit(std::move(gr));
        std::lock_guard<std::mutex> lock(mutex_);
        ids_.push_back(id);
      } catch (const Error& e) {
        abort_all();
        throw ApiError(ctx_.draining ? 503 : 400, e.what());
      }
    }
  }

  // Waits up to `timeout` for events; returns them (maybe none).
  std::deque<std::pair<int64_t, TokenEvent>> wait(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait_for(lock, timeout, [&] { return !events_.empty(); });
    std::deque<std::pair<int64_t, TokenEvent>> out;
    out.swap(events_);
    return out;
  }

  void abort_choice(int64_t choice) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (choice < static_cast<int64_t>(ids_.size())) ctx_.engine.abort(ids_[choice]);
  }
  void abort_all() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (uint64_t id : ids_) ctx_.engine.abort(id);
  }

 private:
  void push(int64_t choice, const TokenEvent& ev) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      events_.emplace_back(choice, ev);
    }
    cv_.notify_one();
  }

  ServerContext& ctx_;
  ActiveRequest active_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<uint64_t> ids_;
  std::deque<std::pair<int64_t, TokenEvent>> events_;
};

// Everything about one API request after validation: its choices and how to shape output.
struct Generation {
  ServerContext* ctx = nullptr;
  ParsedRequest req;
  // One per prompt (chat: one; completions: one per prompt of a list); choice c belongs to
  // prompt c / n, as OpenAI indexes them.
  struct PromptState {
    std::vector<int32_t> tokens;
    std::string echo_text;
    SamplingOptions sampling;  // max_tokens resolved against this prompt's length
    int64_t prompt_tokens = 0;
    int64_t cached_tokens = 0;
  };
  std::vector<PromptState> prompts;
  std::string id;
  int64_t created = 0;
  std::shared_ptr<Session> session;
  std::vector<ChoiceOutput> choices;
  std::vector<bool> role_sent;
  std::vector<bool> echo_sent;  // streaming completions with echo: the prompt text went out
  Clock::time_point arrival;
  bool first_token_seen = false;
  std::vector<Clock::time_point> last_token_at;
  int64_t finished = 0;
  std::string error;
  ConstraintFactory make_constraint;  // empty: no structured output

  const char* object() const {
    if (req.chat) return req.stream ? "chat.completion.chunk" : "chat.completion";
    return "text_completion";
  }

  PromptState& prompt_of(int64_t choice) { return prompts[static_cast<size_t>(choice / req.n)]; }
  const PromptState& prompt_of(int64_t choice) const {
    return prompts[static_cast<size_t>(choice / req.n)];
  }

  // Summed over the prompts (each counted once, not per choice), as vLLM sums them.
  Json usage() const {
    int64_t completion = 0;
    for (const auto& c : choices) completion += c.tokens();
    int64_t prompt_tokens = 0, cached_tokens = 0;
    for (const auto& p : prompts) {
      prompt_tokens += p.prompt_tokens;
      cached_tokens += p.cached_tokens;
    }
    Json u = {{"prompt_tokens", prompt_tokens},
              {"completion_tokens", completion},
              {"total_tokens", prompt_tokens + completion}};
    u["prompt_tokens_details"] = {{"cached_tokens", cached_tokens}};
    return u;
  }

  Json chunk(Json choice) const {
    Json c = {{"id", id}, {"object", object()}, {"created", created}, {"model", ctx->model_name()}};
    c["choices"] = Json::array({std::move(choice)});
    if (req.include_usage) c["usage"] = nullptr;
    return c;
  }

  Json stream_choice(int64_t index, const OutputPiece& piece, const Json& finish_reason) const {
    Json c = {{"index", index}};
    if (req.chat) {
      c["delta"] = piece.delta;
    } else {
      c["text"] = piece.delta.value("text", std::string());
    }
    c["logprobs"] = piece.logprobs;
    c["finish_reason"] = finish_reason;
    if (req.return_token_ids) c["token_ids"] = piece.token_ids;
    return c;
  }

  // Handles a batch of engine events; `emit` receives every chunk (streaming) or is null.
  void process(std::deque<std::pair<int64_t, TokenEvent>>& events,
               const std::function<bool(const Json&)>& emit,
               std::vector<std::vector<OutputPiece>>& collected) {
    for (auto& [index, ev] : events) {
      if (req.echo_only) {
        ev.tokens.clear();
        ev.logprobs.clear();
      }
      ChoiceOutput& choice = choices[static_cast<size_t>(index)];
      if (choice.finished()) continue;  // events after a stop string ended it
      const auto now = Clock::now();
      prompt_of(index).prompt_tokens = ev.prompt_tokens;
      if (index % req.n == 0) prompt_of(index).cached_tokens = ev.cached_prompt_tokens;
      if (!ev.tokens.empty()) {
        if (!first_token_seen) {
          first_token_seen = true;
          ctx->metrics.time_to_first_token.observe(seconds_since(arrival));
        } else if (last_token_at[index] != Clock::time_point{}) {
          const double gap = std::chrono::duration<double>(now - last_token_at[index]).count();
          for (size_t k = 0; k < ev.tokens.size(); ++k) {
            ctx->metrics.inter_token_latency.observe(gap / static_cast<double>(ev.tokens.size()));
          }
        }
        last_token_at[index] = now;
      }
      if (emit && req.chat && !role_sent[index] && (!ev.tokens.empty() || ev.finished)) {
        // The role chunk goes out with the first token, not on arrival (llama-benchy's TTFR).
        role_sent[index] = true;
        OutputPiece role;
        role.delta = {{"role", "assistant"}, {"content", ""}};
        if (!emit(chunk(stream_choice(index, role, nullptr)))) return;
      }
      std::vector<OutputPiece> pieces;
      bool done = false;
      if (ev.finished && ev.reason == FinishReason::kError) {
        error = ev.error.empty() ? "the engine failed this request" : ev.error;
        choice.finish("stop", pieces);
        done = true;
      } else {
        if (choice.add_tokens(ev.tokens, ev.logprobs, pieces)) {
          session->abort_choice(index);  // stop string: free its KV now
          done = true;
        } else if (ev.finished) {
          choice.finish(engine_reason_name(ev.reason), pieces);
          done = true;
        }
      }
      if (done) {
        ++finished;
        ctx->metrics.count_finished(error.empty() ? choice.finish_reason() : "error");
        ctx->metrics.request_generation_tokens.observe(static_cast<double>(choice.tokens()));
      }
      if (emit && req.echo && !echo_sent[index] && (!pieces.empty() || done)) {
        // Echo: the prompt text goes out in front of the choice's first text, as vLLM streams it.
        echo_sent[index] = true;
        if (pieces.empty()) pieces.emplace_back();
        pieces.front().delta["text"] =
            prompt_of(index).echo_text + pieces.front().delta.value("text", std::string());
      }
      if (emit) {
        for (const auto& p : pieces) {
          if (p.delta.empty() && p.logprobs.is_null() && p.token_ids.empty()) continue;
          if (!emit(chunk(stream_choice(index, p, nullptr)))) return;
        }
        if (done) {
          OutputPiece last;
          if (!emit(chunk(stream_choice(index, last, choice.finish_reason())))) return;
        }
      } else {
        for (auto& p : pieces) collected[static_cast<size_t>(index)].push_back(std::move(p));
      }
    }
  }

  bool all_done() const { return finished == static_cast<int64_t>(choices.size()); }

  void finish_metrics() {
    ctx->metrics.e2e_request_latency.observe(seconds_since(arrival));
    for (const auto& p : prompts) {
      ctx->metrics.request_prompt_tokens.observe(static_cast<double>(p.prompt_tokens));
    }
  }

  Json response(std::vector<std::vector<OutputPiece>>& collected) const {
    Json out = {
        {"id", id}, {"object", object()}, {"created", created}, {"model", ctx->model_name()}};
    Json list = Json::array();
    for (size_t i = 0; i < choices.size(); ++i) {
      Json c = {{"index", i}};
      Json logprobs = nullptr;
      std::vector<nlohmann::ordered_json> deltas;
      std::string text = prompt_of(static_cast<int64_t>(i)).echo_text;
      std::vector<int32_t> token_ids;
      for (auto& p : collected[i]) {
        token_ids.insert(token_ids.end(), p.token_ids.begin(), p.token_ids.end());
        if (!p.logprobs.is_null()) {
          if (logprobs.is_null()) {
            logprobs = p.logprobs;
          } else {
            for (auto& [key, value] : p.logprobs.items()) {
              for (auto& x : value) logprobs[key].push_back(x);
            }
          }
        }
        if (req.chat) {
          if (!p.delta.empty()) deltas.push_back(p.delta);
        } else {
          text += p.delta.value("text", std::string());
        }
      }
      if (req.chat) {
        Json message = merge_deltas(deltas);
        message["reasoning"] =
            message.contains("reasoning_content") ? message["reasoning_content"] : Json(nullptr);
        if (!message.contains("tool_calls")) message["tool_calls"] = Json::array();
        c["message"] = std::move(message);
      } else {
        c["text"] = text;
      }
      c["logprobs"] = logprobs;
      c["finish_reason"] = choices[i].finish_reason();
      if (req.return_token_ids) c["token_ids"] = token_ids;
      list.push_back(std::move(c));
    }
    out["choices"] = std::move(list);
    out["usage"] = usage();
    return out;
  }
};

// Validates and tokenizes; fills `g` ready to submit.
void prepare(ServerContext& ctx, bool chat, const Json& body, Generation& g) {
  g.ctx = &ctx;
  g.arrival = Clock::now();
  g.req =
      chat ? parse_chat_request(body, ctx.defaults) : parse_completion_request(body, ctx.defaults);
  ParsedRequest& req = g.req;
  ctx.check_model(req.model);
  ReasoningMode reasoning = ctx.config.reasoning_parser.empty()
                                ? ReasoningMode::kNone
                                : parse_reasoning_mode(ctx.config.reasoning_parser);
  bool parse_tools = false;
  if (chat) {
    if (!req.tools.is_null() && req.tool_choice != ToolChoice::kNone) {
      if (ctx.config.tool_call_parser.empty()) {
        throw ApiError(400,
                       "tool calling needs the server started with --tool-call-parser "
                       "(and --enable-auto-tool-choice for tool_choice auto)",
                       "tools");
      }
      if (req.tool_choice == ToolChoice::kAuto && !ctx.config.enable_auto_tool_choice) {
        throw ApiError(400,
                       "\"auto\" tool choice requires --enable-auto-tool-choice and "
                       "--tool-call-parser to be set",
                       "tool_choice");
      }
      parse_tools = true;
    }
    std::string text = ctx.render_chat(req.messages, req.tools, req.add_generation_prompt,
                                       req.chat_template_kwargs);
    // enable_thinking=false with a template that always opens <think> (MiniMax-M2): close the
    // think block in the prompt, as llama.cpp does, and parse the output as plain content.
    const auto& kw = req.chat_template_kwargs;
    if (kw.contains("enable_thinking") && kw["enable_thinking"] == false && text.size() >= 8 &&
        text.compare(text.size() - 8, 8, "<think>\n") == 0) {
      text += "</think>\n\n";
      if (reasoning == ReasoningMode::kMinimaxM2) reasoning = ReasoningMode::kNone;
    }
    // response_format / tool_choice enforced from the end of the reasoning on (from the first
    // token when the prompt closed the think block or no reasoning parser runs).
    const bool thinking_open =
        reasoning != ReasoningMode::kNone &&
        !(text.size() >= 10 && text.compare(text.size() - 10, 10, "</think>\n\n") == 0);
    g.make_constraint = output_constraint_factory(req, parse_tools, thinking_open,
                                                  [&ctx] { return ctx.token_trie(); });
    g.prompts.emplace_back().tokens = ctx.tokenizer.encode(text, /*add_special_tokens=*/false);
  } else {
    // No template, no reasoning: response_format holds from the first generated token (vLLM
    // applies structured outputs to /v1/completions the same way). One constraint per engine
    // request (every prompt of a list, every one of the n choices).
    if (!req.echo_only) {
      g.make_constraint = output_constraint_factory(req, /*tools_parsed=*/false,
                                                    /*starts_in_reasoning=*/false,
                                                    [&ctx] { return ctx.token_trie(); });
    }
    for (const auto& p : req.prompts) {
      Generation::PromptState& state = g.prompts.emplace_back();
      if (p.is_ids) {
        state.tokens = p.ids;
        for (int32_t id : p.ids) {
          if (!ctx.tokenizer.has_id(id)) {
            throw ApiError(400,
                           "prompt token id " + std::to_string(id) + " is not in the vocabulary",
                           "prompt");
          }
        }
        if (req.echo) state.echo_text = ctx.tokenizer.decode(p.ids, req.skip_special_tokens);
      } else {
        if (p.text.size() > ctx.config.max_prompt_bytes) {
          throw ApiError(400, "the prompt is larger than the server's limit", "prompt");
        }
        state.tokens = ctx.tokenizer.encode(p.text, false);
        const auto& tc = ctx.tokenizer.config();
        if (req.add_special_tokens && tc.add_bos_token && tc.bos_id >= 0 &&
            (state.tokens.empty() || state.tokens.front() != tc.bos_id)) {
          state.tokens.insert(state.tokens.begin(), tc.bos_id);
        }
        if (req.echo) state.echo_text = p.text;
      }
    }
  }
  for (auto& state : g.prompts) {
    if (state.tokens.empty()) {
      throw ApiError(400, "the prompt is empty", chat ? "messages" : "prompt");
    }
    // max_tokens left out: each prompt gets what its own length leaves of the context.
    ParsedRequest resolved = req;
    resolve_max_tokens(resolved, static_cast<int64_t>(state.tokens.size()),
                       ctx.engine.max_model_len());
    state.sampling = resolved.sampling;
    // Echo without generation: the engine runs the prompt and one token, which process() drops
    // (as vLLM does; the answer is the prompt, finish_reason from that step, no output tokens).
    if (req.echo_only) state.sampling.max_tokens = 1;
    state.prompt_tokens = static_cast<int64_t>(state.tokens.size());
  }

  ChoiceOptions opt;
  opt.chat = chat;
  opt.parse_output = chat;
  opt.parser.reasoning = reasoning;
  if (parse_tools) opt.parser.tools = req.tools;
  opt.parallel_tool_calls = req.parallel_tool_calls;
  opt.stop = req.stop;
  opt.include_stop_str_in_output = req.include_stop_str_in_output;
  opt.skip_special_tokens = req.skip_special_tokens;
  opt.logprobs = req.logprobs;
  for (const auto& state : g.prompts) {
    // Completions logprobs' text_offset counts from the start of the returned text (echo too).
    opt.initial_text_offset = state.echo_text.size();
    for (int64_t i = 0; i < req.n; ++i) g.choices.emplace_back(ctx.tokenizer, opt);
  }
  g.role_sent.assign(g.choices.size(), false);
  g.echo_sent.assign(g.choices.size(), false);
  g.last_token_at.assign(g.choices.size(), Clock::time_point{});
  g.id = ctx.new_id(chat ? "chatcmpl-" : "cmpl-");
  g.created = static_cast<int64_t>(std::time(nullptr));
}

constexpr std::chrono::milliseconds kPoll{100};

}  // namespace

void handle_generation(ServerContext& ctx, bool chat, const httplib::Request& http_req,
                       httplib::Response& res) {
  auto g = std::make_shared<Generation>();
  const Json body = ctx.parse_body(http_req.body);
  prepare(ctx, chat, body, *g);
  g->session = std::make_shared<Session>(ctx);
  g->session->make_constraint = g->make_constraint;
  for (size_t i = 0; i < g->prompts.size(); ++i) {
    const auto& p = g->prompts[i];
    g->session->submit(p.tokens, p.sampling, g->req.n, static_cast<int64_t>(i) * g->req.n,
                       g->session);
  }

  if (!g->req.stream) {
    std::vector<std::vector<OutputPiece>> collected(g->choices.size());
    // A client that goes away before the answer is ready: abort its requests, free their KV.
    const std::optional<ClientConnection> connection = ClientConnection::find(http_req);
    auto checked_at = Clock::now();
    while (!g->all_done()) {
      auto events = g->session->wait(kPoll);
      g->process(events, nullptr, collected);
      if (connection && !g->all_done() && Clock::now() - checked_at >= kPoll) {
        checked_at = Clock::now();
        if (connection->closed()) {
          g->session->abort_all();
          // Nobody reads this; the status (nginx's "client closed request") shows in the log.
          throw ApiError(499, "the client closed the connection", {}, "client_closed_request");
        }
      }
    }
    g->finish_metrics();
    if (!g->error.empty()) throw ApiError(500, g->error, {}, "internal_server_error");
    send_json(res, 200, g->response(collected));
    return;
  }

  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [g](size_t, httplib::DataSink& sink) {
        bool alive = true;
        auto emit = [&](const Json& chunk) {
          const std::string frame =
              sse_data(chunk.dump(-1, ' ', false, Json::error_handler_t::replace));
          alive = alive && sink.write(frame.data(), frame.size());
          return alive;
        };
        std::vector<std::vector<OutputPiece>> unused;
        while (alive && !g->all_done()) {
          auto events = g->session->wait(kPoll);
          g->process(events, emit, unused);
          if (alive && events.empty() && !sink.is_writable()) alive = false;
        }
        if (!alive) {
          g->session->abort_all();  // the client left: free its KV blocks now
          return false;
        }
        g->finish_metrics();
        if (!g->error.empty()) {
          emit(error_body(500, g->error, {}, "internal_server_error"));
        }
        if (g->req.include_usage) {
          Json u = {{"id", g->id},
                    {"object", g->object()},
                    {"created", g->created},
                    {"model", g->ctx->model_name()},
                    {"choices", Json::array()},
                    {"usage", g->usage()}};
          emit(u);
        }
        const std::string done = sse_done();
        if (alive) sink.write(done.data(), done.size());
        sink.done();
        return true;
      },
      [g](bool) { g->session->abort_all(); });
}

}  // namespace m2fp4::server
