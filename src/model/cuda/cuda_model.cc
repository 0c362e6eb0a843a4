#include "model/cuda/cuda_model.h"

#include <algorithm>

#include "base/error.h"
#include "base/log.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/device_weights.h"
#include "kernels/cuda/launch_plan.h"

namespace m2fp4 {

using cuda::DeviceBuffer;

namespace {

// f32 vector to a new device buffer (norm weights, routing bias).
DeviceBuffer upload_floats(const std::vector<float>& v, cuda::Stream stream) {
  DeviceBuffer b(static_cast<int64_t>(v.size() * sizeof(float)));
  cuda::copy_to_device(b.get(), v.data(), b.bytes(), stream);
  return b;
}

// The FP8 KV scales MiniMaxM2::kv_scales picks (quant-formats.md §4.3): the checkpoint's, 1.0
// when both are absent, the larger when one is.
std::pair<float, float> fp8_kv_scales(const LayerWeights& L) {
  if (L.k_scale > 0.0f && L.v_scale > 0.0f) return {L.k_scale, L.v_scale};
  if (L.k_scale <= 0.0f && L.v_scale <= 0.0f) return {1.0f, 1.0f};
  const float both = std::max(L.k_scale, L.v_scale);
  return {both, both};
}

}  // namespace

struct CudaMiniMaxM2::State {
  cuda::Stream stream = nullptr;
  cuda::DeviceWeightArena weights;
  // Indexes into `weights`.
  size_t embed = 0, lm_head = 0;
  struct Layer {
    size_t q, k, v, o, router;
    DeviceBuffer input_norm, q_norm, k_norm, post_norm, router_bias;
    DeviceBuffer w1_table, w3_table, w2_table;  // device arrays of n_experts Weights
    Weight w1_shape, w3_shape, w2_shape;
    DeviceBuffer k_cache, v_cache;
    float k_scale = 1.0f, v_scale = 1.0f;
  };
  std::vector<Layer> layers;
  DeviceBuffer final_norm;

  // Activations, sized for `cap_tokens` tokens and `cap_out` logits rows.
  int64_t cap_tokens = 0, cap_out = 0, generation = 0;
  DeviceBuffer tokens, positions, out_rows;
  DeviceBuffer x, h, q, k, v, attn, proj, router, ids, weights_k, gate, up, down;
  DeviceBuffer slot_of_pos, pos_of_slot, tiles, n_tiles, sort_scratch;
  DeviceBuffer rows, logits;

  cuda::DecodeGraphBook book;
  cuda::GraphExec graph = nullptr;

  ~State() {
    cuda::graph_destroy(graph);
    cuda::stream_destroy(stream);
  }
};

CudaMiniMaxM2::CudaMiniMaxM2(const ModelConfig& config, const ModelWeights& weights,
                             ModelOptions options, CudaModelOptions cuda_options)
    : config_(config), options_(options), cuda_options_(cuda_options) {
  cuda::require_device();
  M2_CHECK(!options.nvfp4_w4a4,
           "--w4a4 (NVFP4 activation emulation) is not implemented on --device cuda");
  M2_CHECK(cuda_options.max_context >= 1, "CUDA model: max_context must be positive");
  const ModelConfig& c = config;
  M2_CHECK(c.num_experts_per_tok <= cuda::kMaxTopK, "CUDA model: num_experts_per_tok ",
           c.num_experts_per_tok, " exceeds ", cuda::kMaxTopK);
  s_ = std::make_unique<State>();
  s_->stream = cuda::stream_create();
  cuda::Stream st = s_->stream;

  // Every matrix of the model into one arena, in stored format.
  std::vector<const Weight*> all;
  auto add = [&](const Weight& w) {
    all.push_back(&w);
    return all.size() - 1;
  };
  s_->embed = add(weights.embed_tokens);
  s_->lm_head = add(weights.lm_head);
  struct ExpertIdx {
    std::vector<size_t> w1, w3, w2;
  };
  std::vector<ExpertIdx> expert_idx(weights.layers.size());
  s_->layers.resize(weights.layers.size());
  for (size_t l = 0; l < weights.layers.size(); ++l) {
    const LayerWeights& L = weights.layers[l];
    State::Layer& D = s_->layers[l];
    D.q = add(L.q_proj);
    D.k = add(L.k_proj);
    D.v = add(L.v_proj);
    D.o = add(L.o_proj);
    D.router = add(L.router_gate);
    M2_CHECK(static_cast<int64_t>(L.experts.size()) == c.num_local_experts, "layer ", l, " has ",
             L.experts.size(), " experts, config says ", c.num_local_experts);
    for (const ExpertWeights& e : L.experts) {
      expert_idx[l].w1.push_back(add(e.w1));
      expert_idx[l].w3.push_back(add(e.w3));
      expert_idx[l].w2.push_back(add(e.w2));
    }
  }
  s_->weights = cuda::DeviceWeightArena(all, st);
  log_info(str_cat("CUDA: ", cuda::device_name(), ", weights ", s_->weights.bytes() / (1 << 20),
                   " MiB uploaded in stored formats"));

  const bool fp8 = cuda_options.kv_dtype == KvCacheDtype::kFp8E4M3;
  const int64_t kv_bytes = cuda_options.max_context * c.kv_width() * (fp8 ? 1 : 4);
  for (size_t l = 0; l < weights.layers.size(); ++l) {
    const LayerWeights& L = weights.layers[l];
    State::Layer& D = s_->layers[l];
    D.input_norm = upload_floats(L.input_norm, st);
    D.q_norm = upload_floats(L.q_norm, st);
    D.k_norm = upload_floats(L.k_norm, st);
    D.post_norm = upload_floats(L.post_attention_norm, st);
    if (!L.router_bias.empty()) D.router_bias = upload_floats(L.router_bias, st);
    auto table = [&](const std::vector<size_t>& idx, Weight& shape, const char* what) {
      std::vector<Weight> t;
      for (size_t i : idx) t.push_back(s_->weights[i]);
      for (const Weight& w : t) {
        M2_CHECK(w.rows == t[0].rows && w.cols == t[0].cols, "layer ", l, ": experts' ", what,
                 " differ in shape");
      }
      shape = t[0];
      DeviceBuffer b(static_cast<int64_t>(t.size() * sizeof(Weight)));
      cuda::copy_to_device(b.get(), t.data(), b.bytes(), st);
      cuda::stream_sync(st);  // `t` is a local
      return b;
    };
    D.w1_table = table(expert_idx[l].w1, D.w1_shape, "w1");
    D.w3_table = table(expert_idx[l].w3, D.w3_shape, "w3");
    D.w2_table = table(expert_idx[l].w2, D.w2_shape, "w2");
    D.k_cache = DeviceBuffer(kv_bytes);
    D.v_cache = DeviceBuffer(kv_bytes);
    if (fp8) {
      const auto [ks, vs] = fp8_kv_scales(L);
      D.k_scale = ks;
      D.v_scale = vs;
    }
  }
  s_->final_norm = upload_floats(weights.final_norm, st);
  cuda::stream_sync(st);
}

CudaMiniMaxM2::~CudaMiniMaxM2() = default;

int64_t CudaMiniMaxM2::graph_captures() const {
  return s_->book.captures();
}
int64_t CudaMiniMaxM2::weight_bytes() const {
  return s_->weights.bytes();
}

void CudaMiniMaxM2::validate(const Batch& batch) const {
  const int64_t n = batch.size();
  M2_CHECK(batch.positions.size() == batch.tokens.size() &&
               batch.seq_ids.size() == batch.tokens.size() &&
               batch.want_logits.size() == batch.tokens.size(),
           "batch arrays differ in length");
  for (int64_t i = 0; i < n; ++i) {
    M2_CHECK(batch.tokens[i] >= 0 && batch.tokens[i] < config_.vocab_size, "token id ",
             batch.tokens[i], " is outside the vocabulary [0, ", config_.vocab_size, ")");
    M2_CHECK(batch.seq_ids[i] == batch.seq_ids[0],
             "--device cuda runs one sequence per batch (got sequences ", batch.seq_ids[0], " and ",
             batch.seq_ids[i], ")");
    if (i > 0) {
      M2_CHECK(batch.positions[i] == batch.positions[i - 1] + 1, "sequence ", batch.seq_ids[i],
               ": positions in a batch must be consecutive (got ", batch.positions[i], " after ",
               batch.positions[i - 1], ")");
    }
  }
  const int64_t held = batch.seq_ids[0] == seq_ ? length_ : 0;
  M2_CHECK(batch.positions[0] >= 0 && batch.positions[0] <= held, "sequence ", batch.seq_ids[0],
           ": position ", batch.positions[0], " skips past the cached length ", held);
  M2_CHECK(batch.positions[n - 1] < cuda_options_.max_context, "sequence ", batch.seq_ids[0],
           " needs ", int64_t{batch.positions[n - 1]} + 1, " positions but the context is ",
           cuda_options_.max_context, " tokens");
}

void CudaMiniMaxM2::ensure_capacity(int64_t n, int64_t n_out) {
  State& s = *s_;
  if (n <= s.cap_tokens && n_out <= s.cap_out) return;
  const ModelConfig& c = config_;
  const int64_t N = std::max(n, s.cap_tokens), O = std::max<int64_t>({n_out, s.cap_out, 1});
  const int64_t H = c.hidden_size, QW = c.q_width(), KW = c.kv_width(), E = c.num_local_experts;
  const int64_t K = c.num_experts_per_tok, I = c.intermediate_size, slots = N * K;
  const int64_t max_tiles = cuda::expert_max_tiles(slots, E);
  auto f32 = [](int64_t n_floats) { return DeviceBuffer(n_floats * 4); };
  s.tokens = f32(N);
  s.positions = f32(N);
  s.out_rows = f32(O);
  s.x = f32(N * H);
  s.h = f32(N * H);
  s.q = f32(N * QW);
  s.k = f32(N * KW);
  s.v = f32(N * KW);
  s.attn = f32(N * QW);
  s.proj = f32(N * H);
  s.router = f32(N * E);
  s.ids = f32(slots);
  s.weights_k = f32(slots);
  s.gate = f32(slots * I);
  s.up = f32(slots * I);
  s.down = f32(slots * H);
  s.slot_of_pos = f32(slots);
  s.pos_of_slot = f32(slots);
  s.tiles = f32(3 * max_tiles);
  s.n_tiles = f32(1);
  s.sort_scratch = f32(2 * E);
  s.rows = f32(O * H);
  s.logits = f32(O * c.vocab_size);
  s.cap_tokens = N;
  s.cap_out = O;
  ++s.generation;  // a captured graph baked the old addresses in
}

void CudaMiniMaxM2::enqueue_step(int64_t n, int64_t n_out) {
  const ModelConfig& c = config_;
  State& s = *s_;
  cuda::Stream st = s.stream;
  const int64_t H = c.hidden_size, QW = c.q_width(), KW = c.kv_width(), E = c.num_local_experts;
  const int64_t K = c.num_experts_per_tok, I = c.intermediate_size, slots = n * K;
  const float eps = c.rms_norm_eps;
  const bool fp8 = cuda_options_.kv_dtype == KvCacheDtype::kFp8E4M3;
  const int32_t* pos = s.positions.as<int32_t>();
  float* x = s.x.as<float>();
  float* h = s.h.as<float>();

  cuda::embed_rows(s.weights[s.embed], s.tokens.as<int32_t>(), n, x, st);
  for (State::Layer& L : s.layers) {
    // x += Attention(RMSNorm(x))
    cuda::rms_norm(x, L.input_norm.as<float>(), n, H, eps, h, st);
    cuda::matmul(s.weights[L.q], h, n, s.q.as<float>(), st);
    cuda::matmul(s.weights[L.k], h, n, s.k.as<float>(), st);
    cuda::matmul(s.weights[L.v], h, n, s.v.as<float>(), st);
    if (c.use_qk_norm) {  // one statistic over the whole projection, before RoPE
      cuda::rms_norm(s.q.as<float>(), L.q_norm.as<float>(), n, QW, eps, s.q.as<float>(), st);
      cuda::rms_norm(s.k.as<float>(), L.k_norm.as<float>(), n, KW, eps, s.k.as<float>(), st);
    }
    cuda::rope_neox(s.q.as<float>(), n, c.num_attention_heads, c.head_dim, c.rotary_dim, pos,
                    c.rope_theta, st);
    cuda::rope_neox(s.k.as<float>(), n, c.num_key_value_heads, c.head_dim, c.rotary_dim, pos,
                    c.rope_theta, st);
    cuda::kv_store(s.k.as<float>(), s.v.as<float>(), n, KW, pos, L.k_cache.get(), L.v_cache.get(),
                   fp8, L.k_scale, L.v_scale, st);
    cuda::attention(s.q.as<float>(), L.k_cache.get(), L.v_cache.get(), fp8, L.k_scale, L.v_scale,
                    pos, n, KW, c.num_attention_heads, c.num_key_value_heads, c.head_dim,
                    s.attn.as<float>(), st);
    cuda::matmul(s.weights[L.o], s.attn.as<float>(), n, s.proj.as<float>(), st);
    cuda::add_inplace(x, s.proj.as<float>(), n * H, st);

    // x += MoE(RMSNorm(x)): f32 router, sigmoid + bias for the choice, SwiGLU experts.
    cuda::rms_norm(x, L.post_norm.as<float>(), n, H, eps, h, st);
    cuda::matmul(s.weights[L.router], h, n, s.router.as<float>(), st);
    cuda::route_sigmoid_topk(s.router.as<float>(), L.router_bias.as<float>(), n, E, K,
                             s.ids.as<int32_t>(), s.weights_k.as<float>(), st);
    const Weight* w1 = L.w1_table.as<Weight>();
    const Weight* w3 = L.w3_table.as<Weight>();
    const Weight* w2 = L.w2_table.as<Weight>();
    if (slots <= cuda::kExpertSlotsMax) {  // decode: one GEMV per (token, expert) slot
      cuda::expert_matmul_slots(w1, L.w1_shape, s.ids.as<int32_t>(), slots, h, K,
                                s.gate.as<float>(), st);
      cuda::expert_matmul_slots(w3, L.w3_shape, s.ids.as<int32_t>(), slots, h, K, s.up.as<float>(),
                                st);
      cuda::silu_mul(s.gate.as<float>(), s.up.as<float>(), slots * I, s.gate.as<float>(), st);
      cuda::expert_matmul_slots(w2, L.w2_shape, s.ids.as<int32_t>(), slots, s.gate.as<float>(), 1,
                                s.down.as<float>(), st);
      cuda::moe_combine(x, s.down.as<float>(), s.ids.as<int32_t>(), s.weights_k.as<float>(),
                        nullptr, n, K, H, st);
    } else {  // prefill: tokens grouped by expert, each expert's weights read once per tile row
      const int64_t max_tiles = cuda::expert_max_tiles(slots, E);
      cuda::expert_sort(s.ids.as<int32_t>(), slots, E, s.slot_of_pos.as<int32_t>(),
                        s.pos_of_slot.as<int32_t>(), s.tiles.as<int32_t>(), s.n_tiles.as<int32_t>(),
                        s.sort_scratch.as<int32_t>(), st);
      cuda::expert_matmul_grouped(w1, L.w1_shape, s.tiles.as<int32_t>(), s.n_tiles.as<int32_t>(),
                                  max_tiles, h, s.slot_of_pos.as<int32_t>(), K, s.gate.as<float>(),
                                  st);
      cuda::expert_matmul_grouped(w3, L.w3_shape, s.tiles.as<int32_t>(), s.n_tiles.as<int32_t>(),
                                  max_tiles, h, s.slot_of_pos.as<int32_t>(), K, s.up.as<float>(),
                                  st);
      cuda::silu_mul(s.gate.as<float>(), s.up.as<float>(), slots * I, s.gate.as<float>(), st);
      cuda::expert_matmul_grouped(w2, L.w2_shape, s.tiles.as<int32_t>(), s.n_tiles.as<int32_t>(),
                                  max_tiles, s.gate.as<float>(), nullptr, 1, s.down.as<float>(),
                                  st);
      cuda::moe_combine(x, s.down.as<float>(), s.ids.as<int32_t>(), s.weights_k.as<float>(),
                        s.pos_of_slot.as<int32_t>(), n, K, H, st);
    }
  }
  if (n_out == 0) return;
  // Final norm and lm_head for the rows whose logits are wanted.
  cuda::gather_rows(x, s.out_rows.as<int32_t>(), n_out, H, s.rows.as<float>(), st);
  cuda::rms_norm(s.rows.as<float>(), s.final_norm.as<float>(), n_out, H, eps, s.rows.as<float>(),
                 st);
  cuda::matmul(s.weights[s.lm_head], s.rows.as<float>(), n_out, s.logits.as<float>(), st);
}

void CudaMiniMaxM2::forward(const Batch& batch, std::vector<float>& logits) {
  logits.clear();
  const int64_t n = batch.size();
  if (n == 0) return;
  validate(batch);
  std::vector<int32_t> out_rows;
  for (int64_t i = 0; i < n; ++i) {
    if (batch.want_logits[i]) out_rows.push_back(static_cast<int32_t>(i));
  }
  const int64_t n_out = static_cast<int64_t>(out_rows.size());
  ensure_capacity(n, n_out);
  State& s = *s_;
  cuda::copy_to_device(s.tokens.get(), batch.tokens.data(), n * 4, s.stream);
  cuda::copy_to_device(s.positions.get(), batch.positions.data(), n * 4, s.stream);
  cuda::copy_to_device(s.out_rows.get(), out_rows.data(), n_out * 4, s.stream);

  const bool decode_step = cuda_options_.use_graphs && n == 1 && n_out == 1;
  if (decode_step) {
    const cuda::GraphKey key{1, s.generation};
    if (!s.book.can_replay(key)) {
      cuda::graph_destroy(s.graph);
      s.graph = nullptr;
      s.book.invalidate();
      cuda::capture_begin(s.stream);
      enqueue_step(n, n_out);
      s.graph = cuda::capture_end(s.stream);
      s.book.captured(key);
    }
    cuda::graph_launch(s.graph, s.stream);
  } else {
    enqueue_step(n, n_out);
  }
  logits.resize(static_cast<size_t>(n_out * config_.vocab_size));
  cuda::copy_to_host(logits.data(), s.logits.get(), n_out * config_.vocab_size * 4, s.stream);
  cuda::stream_sync(s.stream);
  seq_ = batch.seq_ids[0];
  length_ = int64_t{batch.positions[n - 1]} + 1;
}

}  // namespace m2fp4
