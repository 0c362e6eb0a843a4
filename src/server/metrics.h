// Prometheus text for GET /metrics, with vLLM's metric names (`vllm:` prefix) so dashboards and
// scrapers written for vLLM read m2fp4 unchanged; m2fp4-only series use `m2fp4:`.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace m2fp4::server {

// A cumulative histogram with fixed upper bounds (seconds).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  // Appends `name_bucket{le=..}`, `name_sum`, `name_count` lines with `labels` (`k="v"` pairs).
  void render(const std::string& name, const std::string& help, const std::string& labels,
              std::string& out) const;

 private:
  std::vector<double> bounds_;
  mutable std::mutex mutex_;
  std::vector<uint64_t> counts_;  // per bound, plus +Inf last (not cumulative)
  double sum_ = 0.0;
  uint64_t count_ = 0;
};

class ServerMetrics {
 public:
  ServerMetrics();

  Histogram time_to_first_token;
  Histogram inter_token_latency;
  Histogram e2e_request_latency;
  Histogram request_prompt_tokens;
  Histogram request_generation_tokens;

  void count_finished(const std::string& finish_reason);  // stop | length | abort | error ...
  void count_http(int status);

  // The whole exposition text.
  std::string render(const std::string& model_name, const EngineStats& stats) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, uint64_t> finished_;
  std::map<int, uint64_t> http_;
};

}  // namespace m2fp4::server
