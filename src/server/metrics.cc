#include "server/metrics.h"

#include <cstdio>

namespace m2fp4::server {
namespace {

std::string format_number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

void add_metric(std::string& out, const std::string& name, const char* type,
                const std::string& help, const std::string& labels, double value) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  out += name + "{" + labels + "} " + format_number(value) + "\n";
}

std::vector<double> latency_bounds() {
  return {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25, 0.5,
          0.75,  1.0,   2.5,  5.0,  7.5,  10.0, 20.0, 40.0, 80.0};
}

std::vector<double> token_bounds() {
  return {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000};
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  std::lock_guard<std::mutex> lock(mutex_);
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += value;
  ++count_;
}

void Histogram::render(const std::string& name, const std::string& help, const std::string& labels,
                       std::string& out) const {
  std::lock_guard<std::mutex> lock(mutex_);
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i];
    const std::string le = i < bounds_.size() ? format_number(bounds_[i]) : "+Inf";
    out += name + "_bucket{" + labels + ",le=\"" + le + "\"} " + std::to_string(cumulative) + "\n";
  }
  out += name + "_sum{" + labels + "} " + format_number(sum_) + "\n";
  out += name + "_count{" + labels + "} " + std::to_string(count_) + "\n";
}

ServerMetrics::ServerMetrics()
    : time_to_first_token(latency_bounds()),
      inter_token_latency(latency_bounds()),
      e2e_request_latency(latency_bounds()),
      request_prompt_tokens(token_bounds()),
      request_generation_tokens(token_bounds()) {}

void ServerMetrics::count_finished(const std::string& finish_reason) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++finished_[finish_reason];
}

void ServerMetrics::count_http(int status) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++http_[status];
}

std::string ServerMetrics::render(const std::string& model_name, const EngineStats& s) const {
  // Label values are escaped as Prometheus wants (backslash, quote, newline).
  std::string escaped;
  for (char c : model_name) {
    if (c == '\\' || c == '"') escaped += '\\';
    if (c == '\n') {
      escaped += "\\n";
      continue;
    }
    escaped += c;
  }
  const std::string labels = "model_name=\"" + escaped + "\"";
  std::string out;
  add_metric(out, "vllm:num_requests_running", "gauge", "Requests in the running batch.", labels,
             static_cast<double>(s.running));
  add_metric(out, "vllm:num_requests_waiting", "gauge", "Requests waiting to be scheduled.", labels,
             static_cast<double>(s.waiting));
  const double usage = s.kv_blocks_total > 0 ? static_cast<double>(s.kv_blocks_used) /
                                                   static_cast<double>(s.kv_blocks_total)
                                             : 0.0;
  add_metric(out, "vllm:kv_cache_usage_perc", "gauge",
             "KV cache usage: blocks referenced by running requests / all blocks (1 = 100%).",
             labels, usage);
  add_metric(out, "m2fp4:kv_blocks_total", "gauge", "KV cache blocks in all.", labels,
             static_cast<double>(s.kv_blocks_total));
  add_metric(out, "m2fp4:kv_blocks_used", "gauge", "KV cache blocks referenced by requests.",
             labels, static_cast<double>(s.kv_blocks_used));
  add_metric(out, "m2fp4:kv_blocks_cached", "gauge",
             "KV cache blocks unreferenced but holding a reusable prefix.", labels,
             static_cast<double>(s.kv_blocks_cached));
  add_metric(out, "vllm:prefix_cache_queries_total", "counter",
             "Prompt tokens looked up in the prefix cache.", labels,
             static_cast<double>(s.prefix_cache_queries));
  add_metric(out, "vllm:prefix_cache_hits_total", "counter",
             "Prompt tokens found in the prefix cache.", labels,
             static_cast<double>(s.prefix_cache_hits));
  add_metric(out, "m2fp4:prefix_cache_hit_rate", "gauge",
             "prefix_cache_hits / prefix_cache_queries since start.", labels,
             s.prefix_cache_queries > 0 ? static_cast<double>(s.prefix_cache_hits) /
                                              static_cast<double>(s.prefix_cache_queries)
                                        : 0.0);
  add_metric(out, "vllm:prompt_tokens_total", "counter", "Prefill tokens processed.", labels,
             static_cast<double>(s.prompt_tokens));
  add_metric(out, "vllm:generation_tokens_total", "counter", "Generation tokens processed.", labels,
             static_cast<double>(s.generation_tokens));
  add_metric(out, "vllm:num_preemptions_total", "counter", "Preemptions (by recompute).", labels,
             static_cast<double>(s.preemptions));
  add_metric(out, "vllm:spec_decode_num_draft_tokens_total", "counter",
             "Speculative draft tokens proposed.", labels,
             static_cast<double>(s.spec_draft_tokens));
  add_metric(out, "vllm:spec_decode_num_accepted_tokens_total", "counter",
             "Speculative draft tokens accepted.", labels,
             static_cast<double>(s.spec_accepted_tokens));
  add_metric(out, "m2fp4:spec_decode_acceptance_rate", "gauge",
             "Accepted / proposed draft tokens since start.", labels,
             s.spec_draft_tokens > 0 ? static_cast<double>(s.spec_accepted_tokens) /
                                           static_cast<double>(s.spec_draft_tokens)
                                     : 0.0);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    out += "# HELP vllm:request_success_total Finished requests by finish reason.\n";
    out += "# TYPE vllm:request_success_total counter\n";
    for (const auto& [reason, n] : finished_) {
      out += "vllm:request_success_total{" + labels + ",finished_reason=\"" + reason + "\"} " +
             std::to_string(n) + "\n";
    }
    out += "# HELP m2fp4:http_responses_total HTTP responses by status code.\n";
    out += "# TYPE m2fp4:http_responses_total counter\n";
    for (const auto& [status, n] : http_) {
      out += "m2fp4:http_responses_total{" + labels + ",status=\"" + std::to_string(status) +
             "\"} " + std::to_string(n) + "\n";
    }
  }
  time_to_first_token.render("vllm:time_to_first_token_seconds",
                             "Time from request arrival to its first token.", labels, out);
  inter_token_latency.render("vllm:inter_token_latency_seconds",
                             "Time between consecutive tokens of a request.", labels, out);
  e2e_request_latency.render("vllm:e2e_request_latency_seconds",
                             "Time from request arrival to its last token.", labels, out);
  request_prompt_tokens.render("vllm:request_prompt_tokens", "Prompt tokens per request.", labels,
                               out);
  request_generation_tokens.render("vllm:request_generation_tokens",
                                   "Generated tokens per request.", labels, out);
  return out;
}

}  // namespace m2fp4::server
