// Shared fixture of the engine tests: a random tiny checkpoint (one per process, since ctest
// runs the tests of a fixture in parallel) and a plain reference generator.
#pragma once

#include <gtest/gtest.h>

#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/sampler.h"
#include "model/minimax_m2.h"
#include "model/random_checkpoint.h"

namespace m2fp4::testing {

class EngineTestBase : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = ::testing::TempDir() + "/m2fp4_engine_" + std::to_string(::getpid());
    std::filesystem::remove_all(dir_);
    ModelConfig config = preset_config("tiny");
    config.eos_token_id = 2;
    write_random_checkpoint(dir_, config, 11, CheckpointDType::kF32, 0);
    model_ = LoadedModel::open(dir_).release();
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
    std::filesystem::remove_all(dir_);
  }
  const LoadedModel& model() const { return *model_; }
  int64_t vocab() const { return model_->config.vocab_size; }

  // Greedy generation the plain way (prefill, then one token per forward), no engine.
  std::vector<int32_t> reference_greedy(const std::vector<int32_t>& prompt, int64_t max_tokens,
                                        bool stop_at_eos = false,
                                        KvCacheDtype dtype = KvCacheDtype::kF32) const {
    ThreadPool pool(2);
    MiniMaxM2 net(model_->config, model_->weights, pool);
    KvCache cache(model_->config, 1024, 0, dtype);
    Batch b;
    for (size_t i = 0; i < prompt.size(); ++i)
      b.add(prompt[i], int32_t(i), 0, i + 1 == prompt.size());
    std::vector<float> logits;
    net.forward(b, cache, logits);
    std::vector<int32_t> out;
    int32_t pos = static_cast<int32_t>(prompt.size());
    for (;;) {
      const int32_t t = argmax(logits.data(), vocab());
      out.push_back(t);
      if (static_cast<int64_t>(out.size()) == max_tokens) break;
      if (stop_at_eos && t == model_->config.eos_token_id) break;
      b.clear();
      b.add(t, pos++, 0, true);
      net.forward(b, cache, logits);
    }
    return out;
  }

  static std::string dir_;
  static LoadedModel* model_;
};

inline std::string EngineTestBase::dir_;
inline LoadedModel* EngineTestBase::model_ = nullptr;

// Collects the events of many requests (callbacks come on the engine thread).
struct Collector {
  struct Result {
    std::vector<int32_t> tokens;
    std::vector<TokenLogprob> logprobs;
    FinishReason reason = FinishReason::kNone;
    int64_t cached_prompt_tokens = 0;
    int events = 0;
    bool finished = false;
  };
  std::mutex mu;
  std::map<uint64_t, Result> results;

  std::function<void(const TokenEvent&)> callback() {
    return [this](const TokenEvent& e) {
      std::lock_guard<std::mutex> lock(mu);
      Result& r = results[e.request_id];
      EXPECT_FALSE(r.finished) << "event after the last one";
      r.tokens.insert(r.tokens.end(), e.tokens.begin(), e.tokens.end());
      r.logprobs.insert(r.logprobs.end(), e.logprobs.begin(), e.logprobs.end());
      r.events += 1;
      if (e.finished) {
        r.finished = true;
        r.reason = e.reason;
        r.cached_prompt_tokens = e.cached_prompt_tokens;
      }
    };
  }
  Result get(uint64_t id) {
    std::lock_guard<std::mutex> lock(mu);
    return results[id];
  }
};

// Engine options for tests: 2 threads, a small KV pool (4 MiB: 512 blocks of 16 tokens on the
// tiny preset) instead of a fraction of the machine's memory.
inline EngineOptions test_options() {
  EngineOptions o;
  o.threads = 2;
  o.kv_cache_memory = int64_t{4} << 20;
  return o;
}

inline GenerationRequest greedy_request(std::vector<int32_t> prompt, int64_t max_tokens,
                                        Collector& c) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.sampling.temperature = 0.0f;
  r.sampling.max_tokens = max_tokens;
  r.sampling.ignore_eos = true;
  r.on_event = c.callback();
  return r;
}

// Submits the requests so that the engine sees them all in the same step (from the final
// callback of a one-token request, which runs on the engine thread between steps), and waits
// for all of them. Returns their ids in order.
inline std::vector<uint64_t> run_together(Engine& engine, std::vector<GenerationRequest> requests) {
  std::vector<uint64_t> ids;
  GenerationRequest trigger;
  trigger.prompt = {1};
  trigger.sampling.temperature = 0.0f;
  trigger.sampling.max_tokens = 1;
  trigger.on_event = [&](const TokenEvent& e) {
    if (!e.finished) return;
    for (auto& r : requests) ids.push_back(engine.submit(std::move(r)));
  };
  engine.submit(std::move(trigger));
  engine.drain();
  return ids;
}

// A deterministic pseudo-random prompt.
inline std::vector<int32_t> make_prompt(uint32_t seed, int64_t length, int64_t vocab) {
  std::vector<int32_t> p;
  uint32_t x = seed * 2654435761u + 12345u;
  for (int64_t i = 0; i < length; ++i) {
    x = x * 1664525u + 1013904223u;
    p.push_back(static_cast<int32_t>((x >> 8) % static_cast<uint32_t>(vocab - 3)) + 3);
  }
  return p;
}

}  // namespace m2fp4::testing
