// m2fp4 serve: the OpenAI-compatible HTTP server (src/server) in front of the engine, with
// vLLM's flag names so a `vllm serve MODEL ...` command line carries over.
#include <pthread.h>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/file.h"
#include "base/log.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "engine/engine.h"
#include "model/kv_cache.h"
#include "model/minimax_m2.h"
#include "server/http_server.h"
#include "text/tokenizer/tokenizer.h"

namespace m2fp4::cli {

int cmd_make_tiny(int argc, char** argv);

namespace {

// "8G", "512M", "4096K" or plain bytes (vLLM's --kv-cache-memory takes bytes).
int64_t parse_bytes(const std::string& text) {
  size_t used = 0;
  double v = 0.0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  M2_CHECK(used > 0 && v >= 0.0, "--kv-cache-memory: '", text, "' is not a size");
  std::string unit = text.substr(used);
  if (!unit.empty() && (unit.back() == 'B' || unit.back() == 'b') && unit.size() > 1)
    unit.pop_back();
  double scale = 1.0;
  if (unit == "K" || unit == "k")
    scale = 1024.0;
  else if (unit == "M" || unit == "m")
    scale = 1024.0 * 1024;
  else if (unit == "G" || unit == "g")
    scale = 1024.0 * 1024 * 1024;
  else
    M2_CHECK(unit.empty(), "--kv-cache-memory: unknown unit in '", text, "' (K, M, G)");
  return static_cast<int64_t>(v * scale);
}

SpeculativeConfig parse_speculative(const std::string& text) {
  SpeculativeConfig sc;
  if (text.empty()) return sc;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("--speculative-config: not valid JSON: ", e.what());
  }
  M2_CHECK(j.is_object() && j.contains("method") && j["method"].is_string(),
           "--speculative-config: expected {\"method\": \"ngram\", ...}");
  sc.method = j["method"].get<std::string>();
  M2_CHECK(sc.method == "ngram", "--speculative-config: method '", sc.method,
           "' is not supported (ngram)");
  auto get = [&](const char* key, int64_t& out) {
    if (!j.contains(key)) return false;
    M2_CHECK(j[key].is_number_integer(), "--speculative-config: '", key, "' must be an integer");
    out = j[key].get<int64_t>();
    return true;
  };
  get("num_speculative_tokens", sc.num_speculative_tokens);
  int64_t lo = 0, hi = 0;
  const bool has_lo = get("prompt_lookup_min", lo);
  const bool has_hi = get("prompt_lookup_max", hi);
  // vLLM: neither bound -> both 5; one bound -> both equal.
  if (!has_lo && !has_hi) lo = hi = 5;
  if (has_lo && !has_hi) hi = lo;
  if (has_hi && !has_lo) lo = hi;
  sc.prompt_lookup_min = lo;
  sc.prompt_lookup_max = hi;
  for (auto& [key, value] : j.items()) {
    M2_CHECK(key == "method" || key == "num_speculative_tokens" || key == "prompt_lookup_min" ||
                 key == "prompt_lookup_max",
             "--speculative-config: unknown key '", key, "'");
  }
  return sc;
}

// The built-in tiny model, made once in the user's cache folder (atomically: a half-written
// folder is never taken for a model).
std::string tiny_model_dir() {
  std::string base;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) {
    base = xdg;
  } else if (const char* home = std::getenv("HOME"); home && *home) {
    base = std::string(home) + "/.cache";
  } else {
    base = "/tmp";
  }
  const std::string dir = base + "/m2fp4/tiny";
  if (file_exists(dir + "/config.json") && file_exists(dir + "/tokenizer.json")) return dir;
  std::filesystem::create_directories(base + "/m2fp4");
  const std::string tmp = dir + ".tmp-" + std::to_string(::getpid());
  std::filesystem::remove_all(tmp);
  std::string a0 = "m2fp4 make-tiny", a1 = "--out", a3 = "--preset", a4 = "tiny", a5 = "--seed",
              a6 = "1";
  std::string a2 = tmp;
  std::vector<char*> args = {a0.data(), a1.data(), a2.data(), a3.data(),
                             a4.data(), a5.data(), a6.data()};
  M2_CHECK(cmd_make_tiny(static_cast<int>(args.size()), args.data()) == 0,
           "cannot make the tiny model in ", tmp);
  std::error_code ec;
  std::filesystem::rename(tmp, dir, ec);
  if (ec) {
    std::filesystem::remove_all(tmp);
    M2_CHECK(file_exists(dir + "/config.json"), "cannot create ", dir, ": ", ec.message());
  }
  return dir;
}

}  // namespace

int cmd_serve(int argc, char** argv) {
  CLI::App app(
      "OpenAI-compatible HTTP server (vLLM's flag names). Without a model it serves the built-in "
      "tiny model, made on first use in ~/.cache/m2fp4/tiny.",
      "m2fp4 serve");
  server::ServerConfig sc;
  std::string model_pos, model_opt, chat_template_file, load_mode = "read", kv_cache_memory,
                                                        speculative;
  std::vector<std::string> served_names;
  EngineOptions eo;
  bool no_prefix_caching = false, prefix_caching = false, chunked_prefill = false;
  double gpu_memory_utilization = 0.0;
  int64_t max_model_len = 0;
  double max_body_mb = 32.0;
  // vLLM flags accepted and ignored (their values, if any, are swallowed).
  std::vector<std::string> ignored;
  int64_t tensor_parallel = 1, pipeline_parallel = 1;

  app.add_option("model", model_pos, "checkpoint folder (as `vllm serve MODEL`)");
  app.add_option("--model", model_opt, "checkpoint folder");
  app.add_option("--served-model-name", served_names,
                 "name(s) clients use in \"model\" (default: the model path)")
      ->expected(1, 8);
  app.add_option("--host", sc.host,
                 "address to listen on (default 127.0.0.1, loopback only; vLLM's is 0.0.0.0)");
  app.add_option("--port", sc.port, "port (default 8000; 0: any free port)")
      ->check(CLI::Range(0, 65535));
  app.add_option("--api-key", sc.api_key, "require 'Authorization: Bearer KEY' (not on /health)");
  app.add_option("--chat-template", chat_template_file, "Jinja chat template file");
  app.add_option("--max-model-len", max_model_len, "context length (0: the model's, capped by KV)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--tool-call-parser", sc.tool_call_parser, "minimax_m2")
      ->check(CLI::IsMember({"minimax_m2"}));
  app.add_option("--reasoning-parser", sc.reasoning_parser,
                 "minimax_m2 | minimax_m2_append_think (default: none, all output is content)")
      ->check(CLI::IsMember({"minimax_m2", "minimax_m2_append_think", "none"}));
  app.add_flag("--enable-auto-tool-choice", sc.enable_auto_tool_choice,
               "allow tool_choice auto (needs --tool-call-parser)");
  app.add_option("--threads", eo.threads, "engine worker threads (0: all cores)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--max-num-seqs", eo.max_num_seqs, "sequences in a batch at most")
      ->check(CLI::PositiveNumber);
  app.add_option("--max-num-batched-tokens", eo.max_num_batched_tokens, "tokens per step at most")
      ->check(CLI::PositiveNumber);
  app.add_option("--block-size", eo.block_size, "KV cache block size in tokens")
      ->check(CLI::PositiveNumber);
  app.add_option("--kv-cache-memory", kv_cache_memory, "KV cache bytes (e.g. 4G)");
  app.add_option("--gpu-memory-utilization", gpu_memory_utilization,
                 "fraction of free RAM for the KV cache when --kv-cache-memory is not given")
      ->check(CLI::Range(0.0, 1.0));
  app.add_flag("--enable-prefix-caching", prefix_caching, "reuse cached prompt prefixes (default)");
  app.add_flag("--no-enable-prefix-caching", no_prefix_caching, "turn prefix caching off");
  app.add_flag("--enable-chunked-prefill", chunked_prefill, "chunked prefill (always on)");
  app.add_option("--speculative-config", speculative,
                 "{\"method\":\"ngram\",\"num_speculative_tokens\":K,\"prompt_lookup_min\":a,"
                 "\"prompt_lookup_max\":b}");
  app.add_option("--load-mode", load_mode, "read (weights in memory) | mmap")
      ->check(CLI::IsMember({"read", "mmap"}));
  app.add_option("--max-request-body-mb", max_body_mb, "largest request body")
      ->check(CLI::PositiveNumber);
  app.add_option("--http-threads", sc.http_threads, "HTTP connection threads (0: automatic)")
      ->check(CLI::NonNegativeNumber);
  cli::RuntimeFlags runtime;
  add_runtime_flags(app, runtime);
  // Accepted for vLLM command lines, ignored (one log line names them).
  auto ignore_flag = [&](const char* name) {
    app.add_flag_callback(
           name, [&ignored, name] { ignored.push_back(name); }, "ignored (vLLM)")
        ->group("vLLM flags accepted and ignored");
  };
  auto ignore_option = [&](const char* name) {
    app.add_option_function<std::string>(
           name,
           [&ignored, name](const std::string& v) {
             ignored.push_back(std::string(name) + " " + v);
           },
           "ignored (vLLM)")
        ->group("vLLM flags accepted and ignored");
  };
  app.add_option("--tensor-parallel-size", tensor_parallel, "must be 1")
      ->check(CLI::Range(1, 1))
      ->group("vLLM flags accepted and ignored");
  app.add_option("--pipeline-parallel-size", pipeline_parallel, "must be 1")
      ->check(CLI::Range(1, 1))
      ->group("vLLM flags accepted and ignored");
  for (const char* f :
       {"--trust-remote-code", "--enforce-eager", "--disable-log-requests", "--disable-log-stats",
        "--enable-log-requests", "--disable-custom-all-reduce", "--async-scheduling",
        "--no-enable-chunked-prefill", "--disable-frontend-multiprocessing"}) {
    ignore_flag(f);
  }
  for (const char* f : {"--dtype", "--seed", "--swap-space", "--uvicorn-log-level", "--max-log-len",
                        "--download-dir", "--load-format", "--distributed-executor-backend",
                        "--generation-config", "--compilation-config", "--data-parallel-size",
                        "--max-seq-len-to-capture", "--revision", "--tokenizer-mode"}) {
    ignore_option(f);
  }
  if (int rc = parse_args(app, argc, argv); rc >= 0) return rc;
  if (!model_pos.empty() && !model_opt.empty() && model_pos != model_opt) {
    std::fprintf(stderr, "m2fp4 serve: error: the model is given twice ('%s' and '%s')\n",
                 model_pos.c_str(), model_opt.c_str());
    return kUsageError;
  }
  if (prefix_caching && no_prefix_caching) {
    std::fprintf(stderr,
                 "m2fp4 serve: error: --enable-prefix-caching and "
                 "--no-enable-prefix-caching contradict each other\n");
    return kUsageError;
  }

  return run_guarded(app.get_name(), [&] {
    set_log_level(LogLevel::kInfo);  // a server reports its start, flags and shutdown
    M2_CHECK(runtime.device == "cpu", "serve runs the CPU engine; --device cuda is not served yet");
    std::string model_dir = model_pos.empty() ? model_opt : model_pos;
    std::string default_name = model_dir;
    if (model_dir.empty()) {
      model_dir = tiny_model_dir();
      default_name = "m2fp4-tiny";
      log_info("no model given: serving the built-in tiny model from " + model_dir);
    }
    M2_CHECK(file_exists(model_dir + "/config.json"), model_dir,
             " is not a checkpoint folder (no config.json)");
    if (!ignored.empty()) {
      std::string line = "ignoring vLLM flags that do not apply here:";
      for (const auto& f : ignored) line += " " + f;
      log_info(line);
    }
    sc.model_dir = model_dir;
    sc.served_model_names =
        served_names.empty() ? std::vector<std::string>{default_name} : served_names;
    if (!chat_template_file.empty()) sc.chat_template_source = read_text_file(chat_template_file);
    if (sc.reasoning_parser == "none") sc.reasoning_parser.clear();
    sc.max_body_bytes = static_cast<size_t>(max_body_mb * 1024 * 1024);
    sc.max_num_seqs = eo.max_num_seqs;
    eo.max_model_len = max_model_len;
    eo.enable_prefix_caching = !no_prefix_caching;
    eo.kv_cache_dtype = parse_kv_cache_dtype(runtime.kv_cache_dtype);
    eo.nvfp4_w4a4 = runtime.w4a4;
    if (!kv_cache_memory.empty()) eo.kv_cache_memory = parse_bytes(kv_cache_memory);
    if (gpu_memory_utilization > 0.0) eo.kv_memory_fraction = gpu_memory_utilization;
    eo.speculative = parse_speculative(speculative);

    // SIGTERM/SIGINT are taken by one thread (sigwait); every other thread blocks them.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    const Tokenizer tokenizer = Tokenizer::load(model_dir);
    auto model = LoadedModel::open(model_dir, parse_load_mode(load_mode));
    Engine engine(*model, eo);
    log_info("model " + model_dir + ": max_model_len " + std::to_string(engine.max_model_len()) +
             ", KV cache " + std::to_string(engine.kv_cache_tokens()) + " tokens (" +
             std::to_string(static_cast<double>(engine.kv_cache_tokens()) /
                            static_cast<double>(engine.max_model_len())) +
             " requests of max_model_len), prefix caching " +
             (eo.enable_prefix_caching ? "on" : "off"));
    server::OpenAiServer server(engine, tokenizer, sc);
    const int port = server.bind();
    log_info("serving " + sc.served_model_names.front() + " on http://" + sc.host + ":" +
             std::to_string(port) + " (OpenAI API under /v1)");
    std::fflush(stderr);
    std::atomic<bool> signalled{false};
    std::thread signal_thread([&] {
      int sig = 0;
      sigwait(&stop_signals, &sig);
      if (signalled.exchange(true)) return;  // our own wake-up below
      log_info("signal " + std::to_string(sig) + ": draining (new requests get 503)");
      server.drain_and_stop();
    });
    server.listen();
    // listen() failed on its own: wake the signal thread (SIGTERM stays blocked, sigwait takes it).
    if (!signalled.exchange(true)) kill(getpid(), SIGTERM);
    signal_thread.join();
    engine.drain();
    log_info("stopped");
    return 0;
  });
}

}  // namespace m2fp4::cli
