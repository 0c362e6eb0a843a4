#include "model/cuda/cuda_model.h"

#include <algorithm>

#include "base/error.h"
#include "base/log.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/device_weights.h"
#include "kernels/cuda/launch_plan.h"
#include "model/cuda/cuda_layer.h"

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
  size_t embed = 0, lm_head = 0;  // indexes into `weights`
  // Per layer: device buffers (norms, bias, expert tables, KV cache) and the view over them.
  struct LayerBuffers {
    DeviceBuffer input_norm, q_norm, k_norm, post_norm, router_bias;
    DeviceBuffer w1_table, w3_table, w2_table, k_cache, v_cache;
  };
  std::vector<LayerBuffers> buffers;
  std::vector<CudaLayer> layers;
  DeviceBuffer final_norm;

  // Activations for `cap_tokens` tokens and `cap_out` logits rows; `generation` counts
  // reallocations (a captured graph holds the old addresses).
  int64_t cap_tokens = 0, cap_out = 0, generation = 0;
  CudaActivationBuffers act;
  DeviceBuffer tokens, out_rows, rows, logits;

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
  struct LayerIdx {
    size_t q, k, v, o, router;
    ExpertIdx experts;
  };
  std::vector<LayerIdx> idx(weights.layers.size());
  for (size_t l = 0; l < weights.layers.size(); ++l) {
    const LayerWeights& L = weights.layers[l];
    idx[l].q = add(L.q_proj);
    idx[l].k = add(L.k_proj);
    idx[l].v = add(L.v_proj);
    idx[l].o = add(L.o_proj);
    idx[l].router = add(L.router_gate);
    M2_CHECK(static_cast<int64_t>(L.experts.size()) == c.num_local_experts, "layer ", l, " has ",
             L.experts.size(), " experts, config says ", c.num_local_experts);
    for (const ExpertWeights& e : L.experts) {
      idx[l].experts.w1.push_back(add(e.w1));
      idx[l].experts.w3.push_back(add(e.w3));
      idx[l].experts.w2.push_back(add(e.w2));
    }
  }
  s_->weights = cuda::DeviceWeightArena(all, st);
  log_info(str_cat("CUDA: ", cuda::device_name(), ", weights ", s_->weights.bytes() / (1 << 20),
                   " MiB uploaded in stored formats"));

  const bool fp8 = cuda_options.kv_dtype == KvCacheDtype::kFp8E4M3;
  const int64_t kv_bytes = cuda_options.max_context * c.kv_width() * (fp8 ? 1 : 4);
  s_->buffers.resize(weights.layers.size());
  s_->layers.resize(weights.layers.size());
  for (size_t l = 0; l < weights.layers.size(); ++l) {
    const LayerWeights& L = weights.layers[l];
    State::LayerBuffers& B = s_->buffers[l];
    CudaLayer& D = s_->layers[l];
    D.q = s_->weights[idx[l].q];
    D.k = s_->weights[idx[l].k];
    D.v = s_->weights[idx[l].v];
    D.o = s_->weights[idx[l].o];
    D.router = s_->weights[idx[l].router];
    B.input_norm = upload_floats(L.input_norm, st);
    B.q_norm = upload_floats(L.q_norm, st);
    B.k_norm = upload_floats(L.k_norm, st);
    B.post_norm = upload_floats(L.post_attention_norm, st);
    if (!L.router_bias.empty()) B.router_bias = upload_floats(L.router_bias, st);
    D.input_norm = B.input_norm.as<float>();
    D.q_norm = B.q_norm.as<float>();
    D.k_norm = B.k_norm.as<float>();
    D.post_norm = B.post_norm.as<float>();
    D.router_bias = B.router_bias.as<float>();
    auto table = [&](const std::vector<size_t>& ids, Weight& shape, const char* what) {
      std::vector<Weight> t;
      for (size_t i : ids) t.push_back(s_->weights[i]);
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
    B.w1_table = table(idx[l].experts.w1, D.w1_shape, "w1");
    B.w3_table = table(idx[l].experts.w3, D.w3_shape, "w3");
    B.w2_table = table(idx[l].experts.w2, D.w2_shape, "w2");
    D.w1_table = B.w1_table.as<Weight>();
    D.w3_table = B.w3_table.as<Weight>();
    D.w2_table = B.w2_table.as<Weight>();
    B.k_cache = DeviceBuffer(kv_bytes);
    B.v_cache = DeviceBuffer(kv_bytes);
    D.k_cache = B.k_cache.get();
    D.v_cache = B.v_cache.get();
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
  s.act = CudaActivationBuffers(c, N);
  s.tokens = DeviceBuffer(N * 4);
  s.out_rows = DeviceBuffer(O * 4);
  s.rows = DeviceBuffer(O * c.hidden_size * 4);
  s.logits = DeviceBuffer(O * c.vocab_size * 4);
  s.cap_tokens = N;
  s.cap_out = O;
  ++s.generation;  // a captured graph baked the old addresses in
}

void CudaMiniMaxM2::enqueue_step(int64_t n, int64_t n_out) {
  const ModelConfig& c = config_;
  State& s = *s_;
  const CudaActivations& a = s.act.view();
  const bool fp8 = cuda_options_.kv_dtype == KvCacheDtype::kFp8E4M3;
  cuda::embed_rows(s.weights[s.embed], s.tokens.as<int32_t>(), n, a.x, s.stream);
  for (const CudaLayer& layer : s.layers) enqueue_decoder_layer(c, layer, a, n, fp8, s.stream);
  if (n_out == 0) return;
  // Final norm and lm_head for the rows whose logits are wanted.
  const int64_t H = c.hidden_size;
  cuda::gather_rows(a.x, s.out_rows.as<int32_t>(), n_out, H, s.rows.as<float>(), s.stream);
  cuda::rms_norm(s.rows.as<float>(), s.final_norm.as<float>(), n_out, H, c.rms_norm_eps,
                 s.rows.as<float>(), s.stream);
  cuda::matmul(s.weights[s.lm_head], s.rows.as<float>(), n_out, s.logits.as<float>(), s.stream);
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
  cuda::copy_to_device(s.act.positions(), batch.positions.data(), n * 4, s.stream);
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
