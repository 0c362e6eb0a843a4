#include "model/minimax_m2.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <mutex>

#include "base/error.h"
#include "base/huge_pages.h"
#include "base/log.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/nvfp4_activation.h"
#include "kernels/cpu/ops.h"

namespace m2fp4 {

std::unique_ptr<LoadedModel> LoadedModel::open(const std::string& dir, LoadMode mode) {
  auto m = std::make_unique<LoadedModel>();
  m->checkpoint = Checkpoint::open(dir, mode);
  M2_CHECK(m->checkpoint.has_config(), dir, ": config.json is missing");
  m->config = ModelConfig::from_json(m->checkpoint.config());
  if (!m->config.quantization_config.is_null()) {
    // Formats are recognised per module from the stored tensors (quantized_weights.h); the
    // config only has to name a method whose layouts m2fp4 reads.
    const std::string method = m->config.quantization_config.value("quant_method", "");
    M2_CHECK(method == "fp8" || method == "modelopt" || method == "compressed-tensors" ||
                 method == "mxfp4_16",
             dir, ": quantization method '", method,
             "' is not supported (fp8, modelopt, compressed-tensors, mxfp4_16)");
  }
  m->weights = ModelWeights::load(m->checkpoint, m->config);
  return m;
}

// Activations of one batch, [n_tokens, width] row-major f32.
struct MiniMaxM2::Scratch {
  int64_t n = 0;
  std::vector<float> x;             // residual stream [n, hidden] (points to the caller's)
  std::vector<float> h;             // normed input of a block [n, hidden]
  std::vector<float> q, k, v;       // projections [n, q_width] / [n, kv_width]
  std::vector<float> attn;          // attention output before o_proj [n, q_width]
  std::vector<float> proj;          // o_proj output [n, hidden]
  std::vector<float> router;        // router logits [n, n_experts]
  std::vector<int32_t> expert_ids;  // [n, top_k]
  std::vector<float> expert_w;      // [n, top_k]
  // Per expert, its tokens' rows gathered [routed rows, hidden], then w2's outputs in their
  // place: no row is read after its expert's w1/w3 ran, and a separate output buffer as large
  // was ~0.8 GB more at the real model's widths for an 8192-token prefill.
  std::vector<float> expert_rows;
  std::vector<float> gate, up;                   // w1 and w3 outputs [routed rows, intermediate]
  std::vector<std::vector<float>> attn_scratch;  // per thread, [max n_ctx]
  std::deque<std::vector<float>> w4a4;           // NVFP4-quantized copies of linear inputs
  // Per pool thread, for the MoE's expert tasks: a one-thread pool (each expert's matmuls run on
  // the thread that claimed it), its job list and its W4A4 copies.
  std::vector<std::unique_ptr<ThreadPool>> serial;
  std::vector<std::vector<MatmulJob>> task_jobs;
  std::vector<std::deque<std::vector<float>>> task_w4a4;
};

MiniMaxM2::MiniMaxM2(const ModelConfig& config, const ModelWeights& weights, ThreadPool& pool,
                     ModelOptions options)
    : config_(config),
      weights_(weights),
      pool_(pool),
      options_(options),
      s_(std::make_unique<Scratch>()) {}

std::pair<float, float> MiniMaxM2::kv_scales(const LayerWeights& L) const {
  if (L.k_scale > 0.0f && L.v_scale > 0.0f) return {L.k_scale, L.v_scale};
  if (L.k_scale <= 0.0f && L.v_scale <= 0.0f) {
    static std::once_flag warned;
    std::call_once(
        warned, [] { log_warn("FP8 KV cache: the checkpoint has no k_scale/v_scale, using 1.0"); });
    return {1.0f, 1.0f};
  }
  const float both = std::max(L.k_scale, L.v_scale);
  return {both, both};
}

void MiniMaxM2::quantize_w4a4_inputs(std::vector<MatmulJob>& jobs,
                                     std::deque<std::vector<float>>& buffers) const {
  if (!options_.nvfp4_w4a4) return;
  // Each distinct (input, scale) pair is quantized once.
  std::vector<std::pair<std::pair<const float*, float>, const float*>> done;
  buffers.clear();
  for (MatmulJob& job : jobs) {
    const Weight& w = *job.w;
    if (w.format != WeightFormat::kNvfp4 || w.input_scale <= 0.0f) continue;
    const auto key = std::make_pair(job.x, w.input_scale);
    const float* quantized = nullptr;
    for (const auto& [k, q] : done) {
      if (k == key) quantized = q;
    }
    if (quantized == nullptr) {
      buffers.emplace_back(static_cast<size_t>(job.n_tokens * w.cols));
      nvfp4_quantize_activations(job.x, job.n_tokens, w.cols, w.input_scale, buffers.back().data());
      quantized = buffers.back().data();
      done.emplace_back(key, quantized);
    }
    job.x = quantized;
  }
}

void MiniMaxM2::run_linear(std::vector<MatmulJob>& jobs, bool experts) {
  if (profile_) {
    double bytes = 0.0;
    for (const MatmulJob& job : jobs) bytes += static_cast<double>(job.w->nbytes());
    (experts ? profile_->expert_bytes : profile_->dense_bytes) += bytes;
  }
  quantize_w4a4_inputs(jobs, s_->w4a4);
  matmul_batch(jobs.data(), static_cast<int64_t>(jobs.size()), pool_);
}

MiniMaxM2::~MiniMaxM2() = default;

void MiniMaxM2::forward(const Batch& batch, KvCache& cache, std::vector<float>& logits,
                        ForwardObserver* observer) {
  logits.clear();
  if (batch.size() == 0) return;
  prepare(batch, cache);
  if (profile_) {
    profile_->forwards += 1;
    profile_->tokens += batch.size();
  }
  PhaseClock clock(profile_);
  std::vector<float> x;
  embed(batch, x);
  clock.mark(ForwardProfile::kEmbed);
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    decoder_layer(l, weights_.layers[l], batch, cache, x, observer);
  }
  final_logits(batch, x, logits);
}

void MiniMaxM2::prepare(const Batch& batch, KvCache& cache) const {
  const ModelConfig& c = config_;
  const int64_t n = batch.size();
  M2_CHECK(batch.positions.size() == batch.tokens.size() &&
               batch.seq_ids.size() == batch.tokens.size() &&
               batch.want_logits.size() == batch.tokens.size(),
           "batch arrays differ in length");
  // Each sequence's tokens: consecutive positions, starting at most at its cached length.
  std::map<int32_t, std::pair<int32_t, int32_t>> span;  // seq -> (first pos, last pos)
  for (int64_t i = 0; i < n; ++i) {
    const int32_t tok = batch.tokens[i];
    M2_CHECK(tok >= 0 && tok < c.vocab_size, "token id ", tok, " is outside the vocabulary [0, ",
             c.vocab_size, ")");
    auto [it, inserted] =
        span.try_emplace(batch.seq_ids[i], batch.positions[i], batch.positions[i]);
    if (!inserted) {
      M2_CHECK(batch.positions[i] == it->second.second + 1, "sequence ", batch.seq_ids[i],
               ": positions in a batch must be consecutive (got ", batch.positions[i], " after ",
               it->second.second, ")");
      it->second.second = batch.positions[i];
    }
  }
  for (const auto& [seq, range] : span) {
    M2_CHECK(range.first >= 0 && range.first <= cache.length(seq), "sequence ", seq, ": position ",
             range.first, " skips past the cached length ", cache.length(seq));
    M2_CHECK(range.second < cache.max_context(), "sequence ", seq, " needs ",
             int64_t{range.second} + 1, " positions but the context is ", cache.max_context(),
             " tokens");
  }
  for (const auto& [seq, range] : span) cache.resize(seq, static_cast<int64_t>(range.second) + 1);
}

void MiniMaxM2::embed(const Batch& batch, std::vector<float>& x) const {
  const int64_t H = config_.hidden_size;
  x.resize(static_cast<size_t>(batch.size() * H));
  for (int64_t i = 0; i < batch.size(); ++i) {
    decode_weight_row(weights_.embed_tokens, batch.tokens[i], x.data() + i * H);
  }
}

void MiniMaxM2::decoder_layer(int64_t l, const LayerWeights& L, const Batch& batch, KvCache& cache,
                              std::vector<float>& x, ForwardObserver* observer) {
  Scratch& s = *s_;
  s.n = batch.size();
  s.x.swap(x);  // work on the caller's residual stream in place
  resize_on_huge_pages(s.h, s.x.size());
  int64_t max_ctx = 0;
  for (int32_t p : batch.positions) max_ctx = std::max<int64_t>(max_ctx, p + 1);
  s.attn_scratch.resize(static_cast<size_t>(pool_.size()));
  for (auto& a : s.attn_scratch) {
    if (static_cast<int64_t>(a.size()) < max_ctx) a.resize(static_cast<size_t>(max_ctx));
  }
  attention_block(l, L, batch, cache, observer);  // x += Attention(RMSNorm(x))
  moe_block(l, L, observer);                      // x += MoE(RMSNorm(x))
  s.x.swap(x);
}

void MiniMaxM2::final_logits(const Batch& batch, const std::vector<float>& x,
                             std::vector<float>& logits) {
  const ModelConfig& c = config_;
  const int64_t H = c.hidden_size;
  // Final norm and lm_head, only for the rows whose logits are wanted.
  std::vector<float> rows;
  for (int64_t i = 0; i < batch.size(); ++i) {
    if (!batch.want_logits[i]) continue;
    rows.insert(rows.end(), x.begin() + i * H, x.begin() + (i + 1) * H);
  }
  const int64_t n_out = static_cast<int64_t>(rows.size()) / H;
  logits.clear();
  if (n_out == 0) return;
  PhaseClock clock(profile_);
  rms_norm(rows.data(), weights_.final_norm.data(), n_out, H, c.rms_norm_eps, rows.data());
  logits.resize(static_cast<size_t>(n_out * c.vocab_size));
  std::vector<MatmulJob> head = {{&weights_.lm_head, rows.data(), n_out, logits.data()}};
  run_linear(head);
  clock.mark(ForwardProfile::kLmHead);
}

void MiniMaxM2::attention_block(int64_t l, const LayerWeights& L, const Batch& batch,
                                KvCache& cache, ForwardObserver* observer) {
  const ModelConfig& c = config_;
  Scratch& s = *s_;
  const int64_t n = s.n, H = c.hidden_size, QW = c.q_width(), KW = c.kv_width();
  PhaseClock clock(profile_);

  rms_norm(s.x.data(), L.input_norm.data(), n, H, c.rms_norm_eps, s.h.data());
  if (observer) observer->on_linear_input(l, LinearSite::kQkv, -1, s.h.data(), n, H);
  resize_on_huge_pages(s.q, static_cast<size_t>(n * QW));
  resize_on_huge_pages(s.k, static_cast<size_t>(n * KW));
  resize_on_huge_pages(s.v, static_cast<size_t>(n * KW));
  // q, k and v in one parallel region (one synchronisation, as vLLM's fused qkv_proj).
  std::vector<MatmulJob> qkv = {{&L.q_proj, s.h.data(), n, s.q.data()},
                                {&L.k_proj, s.h.data(), n, s.k.data()},
                                {&L.v_proj, s.h.data(), n, s.v.data()}};
  run_linear(qkv);

  // QK-norm over the whole projection of each token (one statistic for all heads), before RoPE.
  if (c.use_qk_norm) {
    rms_norm(s.q.data(), L.q_norm.data(), n, QW, c.rms_norm_eps, s.q.data());
    rms_norm(s.k.data(), L.k_norm.data(), n, KW, c.rms_norm_eps, s.k.data());
  }
  const bool fp8_cache = cache.dtype() == KvCacheDtype::kFp8E4M3;
  // Plain variables, not a structured binding: the lambdas below capture them (clang 14 cannot
  // capture structured bindings).
  const std::pair<float, float> kv_scale =
      fp8_cache ? kv_scales(L) : std::pair<float, float>{1.0f, 1.0f};
  const float k_scale = kv_scale.first, v_scale = kv_scale.second;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t pos = batch.positions[i];
    rope_neox(s.q.data() + i * QW, c.num_attention_heads, c.head_dim, c.rotary_dim, pos,
              c.rope_theta);
    rope_neox(s.k.data() + i * KW, c.num_key_value_heads, c.head_dim, c.rotary_dim, pos,
              c.rope_theta);
    if (fp8_cache) {
      kv_store_fp8(s.k.data() + i * KW, KW, k_scale, cache.keys8(batch.seq_ids[i], l, pos));
      kv_store_fp8(s.v.data() + i * KW, KW, v_scale, cache.values8(batch.seq_ids[i], l, pos));
    } else {
      std::copy_n(s.k.data() + i * KW, KW, cache.keys(batch.seq_ids[i], l, pos));
      std::copy_n(s.v.data() + i * KW, KW, cache.values(batch.seq_ids[i], l, pos));
    }
  }
  if (observer) observer->on_kv(l, s.k.data(), s.v.data(), n, KW);
  clock.mark(ForwardProfile::kQkv);

  // Causal attention: token i sees its sequence's positions 0..pos (all keys are in the cache).
  // A contiguous cache gives each sequence's rows as one array; a paged one its block table
  // (the paged kernels read rows in place, bit-identical to the contiguous ones).
  struct SeqRows {
    int32_t seq = 0;
    const float* k = nullptr;
    const float* v = nullptr;
    const uint8_t* k8 = nullptr;
    const uint8_t* v8 = nullptr;
    std::vector<const float*> k_blocks, v_blocks;
    std::vector<const uint8_t*> k8_blocks, v8_blocks;
  };
  const bool paged = cache.is_paged();
  const int64_t bs = cache.block_size();
  std::vector<SeqRows> rows;
  std::vector<size_t> row_of(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    size_t r = 0;
    while (r < rows.size() && rows[r].seq != batch.seq_ids[i]) ++r;
    if (r == rows.size()) {
      SeqRows sr;
      sr.seq = batch.seq_ids[i];
      if (paged && fp8_cache) {
        cache.block_rows8(sr.seq, l, sr.k8_blocks, sr.v8_blocks);
      } else if (paged) {
        cache.block_rows(sr.seq, l, sr.k_blocks, sr.v_blocks);
      } else if (fp8_cache) {
        sr.k8 = cache.keys8(sr.seq, l, 0);
        sr.v8 = cache.values8(sr.seq, l, 0);
      } else {
        sr.k = cache.keys(sr.seq, l, 0);
        sr.v = cache.values(sr.seq, l, 0);
      }
      rows.push_back(std::move(sr));
    }
    row_of[i] = r;
  }
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads, HD = c.head_dim;
  resize_on_huge_pages(s.attn, static_cast<size_t>(n * QW));
  // One token: its heads split across threads. More: each sequence's queries attended together
  // (attention_batch: flash-style blocks of queries x the heads of one KV head, so K/V are read
  // once per block, not once per query).
  if (n == 1) {
    const SeqRows& sr = rows[0];
    const int64_t n_ctx = batch.positions[0] + 1;
    const float* q = s.q.data();
    float* out = s.attn.data();
    if (paged && fp8_cache) {
      attention_fp8_paged_parallel(q, sr.k8_blocks.data(), sr.v8_blocks.data(), bs, n_ctx, KW, NH,
                                   NKV, HD, k_scale, v_scale, out, pool_);
    } else if (paged) {
      attention_paged_parallel(q, sr.k_blocks.data(), sr.v_blocks.data(), bs, n_ctx, KW, NH, NKV,
                               HD, out, pool_);
    } else if (fp8_cache) {
      attention_fp8_parallel(q, sr.k8, sr.v8, n_ctx, KW, NH, NKV, HD, k_scale, v_scale, out, pool_);
    } else {
      attention_parallel(q, sr.k, sr.v, n_ctx, KW, NH, NKV, HD, out, pool_);
    }
  } else {
    std::vector<std::vector<int64_t>> tokens(rows.size()), n_ctx(rows.size());
    for (int64_t i = 0; i < n; ++i) {
      tokens[row_of[i]].push_back(i);
      n_ctx[row_of[i]].push_back(batch.positions[i] + 1);
    }
    std::vector<AttentionSequence> seqs(rows.size());
    for (size_t r = 0; r < rows.size(); ++r) {
      SeqRows& sr = rows[r];
      AttentionSequence& a = seqs[r];
      a.tokens = tokens[r].data();
      a.n_ctx = n_ctx[r].data();
      a.n_tokens = static_cast<int64_t>(tokens[r].size());
      // A contiguous cache is one block holding every row the queries see.
      a.block_size = paged ? bs : *std::max_element(n_ctx[r].begin(), n_ctx[r].end());
      if (!paged && fp8_cache) {
        sr.k8_blocks = {sr.k8};
        sr.v8_blocks = {sr.v8};
      } else if (!paged) {
        sr.k_blocks = {sr.k};
        sr.v_blocks = {sr.v};
      }
      if (fp8_cache) {
        a.k8_blocks = sr.k8_blocks.data();
        a.v8_blocks = sr.v8_blocks.data();
      } else {
        a.k_blocks = sr.k_blocks.data();
        a.v_blocks = sr.v_blocks.data();
      }
    }
    const AttentionShape shape{KW, NH, NKV, HD, k_scale, v_scale};
    attention_batch(s.q.data(), seqs.data(), static_cast<int64_t>(seqs.size()), shape,
                    s.attn.data(), pool_);
  }
  clock.mark(ForwardProfile::kAttention);

  if (observer) observer->on_linear_input(l, LinearSite::kO, -1, s.attn.data(), n, QW);
  resize_on_huge_pages(s.proj, static_cast<size_t>(n * H));
  std::vector<MatmulJob> o = {{&L.o_proj, s.attn.data(), n, s.proj.data()}};
  run_linear(o);
  for (int64_t i = 0; i < n * H; ++i) s.x[i] += s.proj[i];
  clock.mark(ForwardProfile::kOProj);
}

void MiniMaxM2::moe_block(int64_t l, const LayerWeights& L, ForwardObserver* observer) {
  const ModelConfig& c = config_;
  Scratch& s = *s_;
  const int64_t n = s.n, H = c.hidden_size, E = c.num_local_experts, K = c.num_experts_per_tok;
  const int64_t I = c.intermediate_size;
  PhaseClock clock(profile_);

  rms_norm(s.x.data(), L.post_attention_norm.data(), n, H, c.rms_norm_eps, s.h.data());
  if (observer) observer->on_linear_input(l, LinearSite::kRouter, -1, s.h.data(), n, H);

  // Router in f32: sigmoid scores, bias only to choose, chosen scores renormalised.
  resize_on_huge_pages(s.router, static_cast<size_t>(n * E));
  std::vector<MatmulJob> router = {{&L.router_gate, s.h.data(), n, s.router.data()}};
  run_linear(router);
  s.expert_ids.resize(static_cast<size_t>(n * K));
  s.expert_w.resize(static_cast<size_t>(n * K));
  const float* bias = L.router_bias.empty() ? nullptr : L.router_bias.data();
  for (int64_t i = 0; i < n; ++i) {
    route_sigmoid_topk(s.router.data() + i * E, bias, E, K, s.expert_ids.data() + i * K,
                       s.expert_w.data() + i * K);
  }

  // Group tokens by expert so each expert's weights are read once per batch. With an observer
  // that wants all experts, every token runs through every expert but only the routed ones add
  // to the output (weight 0 marks an observation-only row).
  const bool all_experts = observer != nullptr && observer->all_experts();
  std::vector<std::vector<std::pair<int32_t, float>>> routed(static_cast<size_t>(E));
  std::vector<int64_t> counts(static_cast<size_t>(E), 0);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < K; ++j) counts[s.expert_ids[i * K + j]] += 1;
  }
  if (all_experts) {
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t i = 0; i < n; ++i) routed[e].emplace_back(static_cast<int32_t>(i), 0.0f);
    }
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < K; ++j)
        routed[s.expert_ids[i * K + j]][i].second = s.expert_w[i * K + j];
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < K; ++j) {
        routed[s.expert_ids[i * K + j]].emplace_back(static_cast<int32_t>(i),
                                                     s.expert_w[i * K + j]);
      }
    }
  }
  if (observer) observer->on_routing(l, counts.data(), E);

  // Gather each active expert's rows into one buffer; then all w1/w3 in one parallel region,
  // SiLU, and all w2 in another: two synchronisations per layer however many experts are hit.
  std::vector<int64_t> offset(static_cast<size_t>(E + 1), 0);
  for (int64_t e = 0; e < E; ++e)
    offset[e + 1] = offset[e] + static_cast<int64_t>(routed[e].size());
  const int64_t total = offset[E];
  resize_on_huge_pages(s.expert_rows, static_cast<size_t>(total * H));
  resize_on_huge_pages(s.gate, static_cast<size_t>(total * I));
  resize_on_huge_pages(s.up, static_cast<size_t>(total * I));
  if (profile_) {
    for (int64_t e = 0; e < E; ++e) profile_->experts_run += offset[e + 1] > offset[e] ? 1 : 0;
    profile_->expert_rows += total;
  }
  clock.mark(ForwardProfile::kRouter);

  // Expert tasks when no expert holds more than a few tokens (decode steps: every expert's
  // matmuls take the few-token GEMV path) and none outweighs a fair share of the work.
  // Cost model as the kernels' (bytes streamed plus arithmetic in byte-equivalents).
  std::vector<double> cost(static_cast<size_t>(E), 0.0);
  double total_cost = 0.0, max_cost = 0.0, routed_bytes = 0.0;
  int64_t max_rows = 0;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t m = offset[e + 1] - offset[e];
    if (m == 0) continue;
    const ExpertWeights& X = L.experts[e];
    const double bytes = static_cast<double>(X.w1.nbytes() + X.w3.nbytes() + X.w2.nbytes());
    routed_bytes += bytes;
    cost[e] = bytes + 0.375 * static_cast<double>(m * H * I);
    total_cost += cost[e];
    max_cost = std::max(max_cost, cost[e]);
    max_rows = std::max(max_rows, m);
  }
  constexpr int64_t kMaxTaskRows = 16;
  const MoeSchedule schedule =
      observer != nullptr ? MoeSchedule::kRowSplit  // observers are called in expert order
      : options_.moe_schedule != MoeSchedule::kAuto ? options_.moe_schedule
      : max_rows <= kMaxTaskRows && max_cost * 2.0 * pool_.size() <= total_cost
          ? MoeSchedule::kExpertTasks
          : MoeSchedule::kRowSplit;
  if (schedule == MoeSchedule::kExpertTasks) {
    if (profile_) profile_->expert_bytes += routed_bytes;
    run_expert_tasks(L, offset, routed, cost);
    clock.mark(ForwardProfile::kExpertTasks);
  } else {
    std::vector<MatmulJob> jobs;
    jobs.reserve(static_cast<size_t>(2 * E));
    for (int64_t e = 0; e < E; ++e) {
      const int64_t m = offset[e + 1] - offset[e];
      if (m == 0) continue;
      float* in = s.expert_rows.data() + offset[e] * H;
      for (int64_t r = 0; r < m; ++r)
        std::copy_n(s.h.data() + routed[e][r].first * H, H, in + r * H);
      if (observer) observer->on_linear_input(l, LinearSite::kExpertW13, e, in, m, H);
      jobs.push_back({&L.experts[e].w1, in, m, s.gate.data() + offset[e] * I});
      jobs.push_back({&L.experts[e].w3, in, m, s.up.data() + offset[e] * I});
    }
    if (observer && !observer->wants_expert_outputs(l)) {
      clock.mark(ForwardProfile::kExpertsUp);
      return;
    }
    run_linear(jobs, true);
    silu_mul(s.gate.data(), s.up.data(), total * I, s.gate.data());
    clock.mark(ForwardProfile::kExpertsUp);
    jobs.clear();
    for (int64_t e = 0; e < E; ++e) {
      const int64_t m = offset[e + 1] - offset[e];
      if (m == 0) continue;
      const float* act = s.gate.data() + offset[e] * I;
      if (observer) observer->on_linear_input(l, LinearSite::kExpertW2, e, act, m, I);
      jobs.push_back({&L.experts[e].w2, act, m, s.expert_rows.data() + offset[e] * H});
    }
    run_linear(jobs, true);
    clock.mark(ForwardProfile::kExpertsDown);
  }

  // x += sum over chosen experts of weight * expert output.
  for (int64_t e = 0; e < E; ++e) {
    for (size_t r = 0; r < routed[e].size(); ++r) {
      const float w = routed[e][r].second;
      if (w == 0.0f) continue;  // observation-only row (all-experts calibration)
      add_scaled(s.x.data() + routed[e][r].first * H,
                 s.expert_rows.data() + (offset[e] + static_cast<int64_t>(r)) * H, w, H);
    }
  }
  clock.mark(ForwardProfile::kCombine);
}

void MiniMaxM2::run_expert_tasks(const LayerWeights& L, const std::vector<int64_t>& offset,
                                 const std::vector<std::vector<std::pair<int32_t, float>>>& routed,
                                 const std::vector<double>& cost) {
  const ModelConfig& c = config_;
  Scratch& s = *s_;
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  const int64_t E = static_cast<int64_t>(routed.size());
  const size_t threads = static_cast<size_t>(pool_.size());
  if (s.serial.size() != threads) {
    s.serial.clear();
    for (size_t t = 0; t < threads; ++t) s.serial.push_back(std::make_unique<ThreadPool>(1));
    s.task_jobs.assign(threads, {});
    s.task_w4a4.assign(threads, {});
  }
  // Costliest first: the tasks claimed last are the small ones, which evens out the threads.
  std::vector<int32_t> order;
  for (int64_t e = 0; e < E; ++e) {
    if (offset[e + 1] > offset[e]) order.push_back(static_cast<int32_t>(e));
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return cost[a] > cost[b]; });
  pool_.run(static_cast<int64_t>(order.size()), [&](int64_t task, int thread) {
    const int64_t e = order[static_cast<size_t>(task)];
    const int64_t m = offset[e + 1] - offset[e];
    const ExpertWeights& X = L.experts[e];
    float* in = s.expert_rows.data() + offset[e] * H;
    float* gate = s.gate.data() + offset[e] * I;
    float* up = s.up.data() + offset[e] * I;
    float* down = in;  // w2's outputs over the rows w1/w3 have read
    for (int64_t r = 0; r < m; ++r) std::copy_n(s.h.data() + routed[e][r].first * H, H, in + r * H);
    std::vector<MatmulJob>& jobs = s.task_jobs[static_cast<size_t>(thread)];
    std::deque<std::vector<float>>& w4a4 = s.task_w4a4[static_cast<size_t>(thread)];
    ThreadPool& serial = *s.serial[static_cast<size_t>(thread)];
    jobs.assign({{&X.w1, in, m, gate}, {&X.w3, in, m, up}});
    quantize_w4a4_inputs(jobs, w4a4);
    matmul_batch(jobs.data(), static_cast<int64_t>(jobs.size()), serial);
    silu_mul(gate, up, m * I, gate);
    jobs.assign({{&X.w2, gate, m, down}});
    quantize_w4a4_inputs(jobs, w4a4);
    matmul_batch(jobs.data(), static_cast<int64_t>(jobs.size()), serial);
  });
}

}  // namespace m2fp4
