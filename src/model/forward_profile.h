// Where a forward's time goes and which weights it streams (m2fp4 bench --profile): wall time
// per phase on the calling thread, and the bytes of every weight matrix each matmul call reads
// (the kernels stream a matrix once per call, for all of the call's tokens), split into the
// dense part (attention, router, lm_head: read once per step whatever the batch) and the experts
// (read once per expert that any token of the step is routed to).
#pragma once

#include <chrono>
#include <cstdint>

namespace m2fp4 {

struct ForwardProfile {
  enum Phase : int {
    kEmbed,        // embedding rows
    kQkv,          // input norm, q/k/v projections, qk-norm, RoPE, KV-cache stores
    kAttention,    // softmax(q k^T) v over the cache
    kOProj,        // o_proj and the residual add
    kRouter,       // post-attention norm, router matmul, top-k, grouping tokens by expert
    kExpertsUp,    // gathering expert inputs, w1/w3 of every routed expert, SiLU * up
    kExpertsDown,  // w2 of every routed expert
    kExpertTasks,  // or, with expert tasks: gather, w1/w3, SiLU and w2 of every routed expert
    kCombine,      // weighted sum of expert outputs into the residual
    kLmHead,       // final norm and lm_head for the rows whose logits are wanted
    kPhases
  };
  static const char* name(int phase) {
    static const char* const kNames[kPhases] = {
        "embed",       "qkv",        "attention",    "o_proj",  "router",
        "experts_w13", "experts_w2", "expert_tasks", "combine", "lm_head"};
    return phase >= 0 && phase < kPhases ? kNames[phase] : "?";
  }

  double seconds[kPhases] = {};
  double dense_bytes = 0.0;   // weight bytes of the non-expert matmuls
  double expert_bytes = 0.0;  // weight bytes of the expert matmuls
  int64_t experts_run = 0;    // (layer, expert) pairs with at least one token
  int64_t expert_rows = 0;    // (token, expert) pairs
  int64_t forwards = 0;
  int64_t tokens = 0;

  void clear() { *this = ForwardProfile{}; }
};

// Adds the time since the previous mark (or construction) to a phase; no-op without a profile.
class PhaseClock {
 public:
  explicit PhaseClock(ForwardProfile* profile) : profile_(profile) {
    if (profile_) last_ = std::chrono::steady_clock::now();
  }
  void mark(ForwardProfile::Phase phase) {
    if (!profile_) return;
    const auto now = std::chrono::steady_clock::now();
    profile_->seconds[phase] += std::chrono::duration<double>(now - last_).count();
    last_ = now;
  }

 private:
  ForwardProfile* profile_;
  std::chrono::steady_clock::time_point last_;
};

}  // namespace m2fp4
