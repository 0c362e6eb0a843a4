// Full-width MiniMax-M2 decoder layer on the GPU (hidden 3072, 48/8 heads of 128, 256 experts of
// 1536, top-8), random weights generated on the device in their stored formats, run through the
// model's own layer code (model/cuda/cuda_layer.h). Reports, next to the HBM bandwidth measured
// in the same run (a read kernel, and a device copy):
// - decode (one token, CUDA graph over --layers distinct layers so L2 cannot hold the weights):
//   time per layer and the active weights' bytes/s as a fraction of the measured bandwidth;
// - the 4-bit GEMV alone (a matrix larger than L2) and the 8-slot expert GEMV, same fraction;
// - prefill of --prefill tokens (512): time per layer and tokens/s.
//   cuda_layer_bench [--expert-format nvfp4|mxfp4|iq4nl16|fp8|bf16] [--attn-format fp8|bf16|nvfp4]
//                    [--layers 4] [--ctx 4096] [--prefill 512] [--reps 50] [--kv f32|fp8]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/launch_plan.h"
#include "model/config.h"
#include "model/cuda/cuda_layer.h"

namespace m2fp4 {
namespace {

using cuda::DeviceBuffer;

__device__ __forceinline__ uint64_t mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

enum class Fill { kBytes, kFp8, kE4m3Scale, kE8m0Scale, kF16Scale, kBf16, kF32 };

// Random contents of every kind the formats need (finite values only: no NaN codes).
__global__ void fill_kernel(void* p, int64_t n_elems, uint64_t seed, Fill kind, float amp) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n_elems;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint64_t r = mix(seed * 0x100000001B3ull + static_cast<uint64_t>(i));
    const float u = static_cast<float>(r >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f;  // [-1, 1)
    switch (kind) {
      case Fill::kBytes:
        static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(r);
        break;
      case Fill::kFp8: {
        uint8_t b = static_cast<uint8_t>(r);
        if ((b & 0x7F) == 0x7F) b ^= 1;
        static_cast<uint8_t*>(p)[i] = b;
        break;
      }
      case Fill::kE4m3Scale:
        static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(0x28 + r % 24);
        break;
      case Fill::kE8m0Scale:
        static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(118 + r % 8);
        break;
      case Fill::kF16Scale:  // positive f16 around 2^-7
        static_cast<uint16_t*>(p)[i] = static_cast<uint16_t>(0x2000 + r % 0x400);
        break;
      case Fill::kBf16:
        static_cast<uint16_t*>(p)[i] = static_cast<uint16_t>(__float_as_uint(u * amp) >> 16);
        break;
      case Fill::kF32:
        static_cast<float*>(p)[i] = u * amp;
        break;
    }
  }
}

void fill(void* p, int64_t n, uint64_t seed, Fill kind, float amp = 1.0f) {
  fill_kernel<<<1024, 256>>>(p, n, seed, kind, amp);
  M2_CUDA(cudaGetLastError());
}

// Streaming read of a buffer: the bandwidth roofline of this run.
__global__ void read_kernel(const uint4* p, int64_t n, unsigned* sink) {
  unsigned acc = 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint4 v = p[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x12345678u) *sink = acc;  // keeps the loads alive
}

class Timer {
 public:
  Timer() {
    M2_CUDA(cudaEventCreate(&a_));
    M2_CUDA(cudaEventCreate(&b_));
  }
  ~Timer() {
    cudaEventDestroy(a_);
    cudaEventDestroy(b_);
  }
  void start(cudaStream_t s) { M2_CUDA(cudaEventRecord(a_, s)); }
  double stop_seconds(cudaStream_t s) {
    M2_CUDA(cudaEventRecord(b_, s));
    M2_CUDA(cudaEventSynchronize(b_));
    float ms = 0;
    M2_CUDA(cudaEventElapsedTime(&ms, a_, b_));
    return ms * 1e-3;
  }

 private:
  cudaEvent_t a_, b_;
};

struct Args {
  std::string expert_format = "nvfp4", attn_format = "fp8", kv = "f32";
  int64_t layers = 4, ctx = 4096, prefill = 512, reps = 50;
};

WeightFormat parse_format(const std::string& s) {
  if (s == "nvfp4") return WeightFormat::kNvfp4;
  if (s == "mxfp4") return WeightFormat::kMxfp4;
  if (s == "iq4nl16") return WeightFormat::kIq4nl16;
  if (s == "fp8") return WeightFormat::kFp8Block128;
  if (s == "bf16") return WeightFormat::kBF16;
  if (s == "f32") return WeightFormat::kF32;
  fail("unknown format '", s, "' (nvfp4, mxfp4, iq4nl16, fp8, bf16, f32)");
}

// Device memory of every generated weight, kept for the whole run.
std::vector<DeviceBuffer> g_memory;
uint64_t g_seed = 1;

void* alloc(int64_t bytes) {
  g_memory.emplace_back(bytes);
  return g_memory.back().get();
}

Weight make_weight(WeightFormat format, int64_t rows, int64_t cols) {
  Weight w;
  w.format = format;
  w.rows = rows;
  w.cols = cols;
  const int64_t n = rows * cols;
  const float amp = 1.0f / static_cast<float>(cols);
  switch (format) {
    case WeightFormat::kF32:
      w.data = alloc(n * 4);
      fill(const_cast<void*>(w.data), n, g_seed++, Fill::kF32, amp * 8);
      break;
    case WeightFormat::kBF16:
      w.data = alloc(n * 2);
      fill(const_cast<void*>(w.data), n, g_seed++, Fill::kBf16, amp * 8);
      break;
    case WeightFormat::kFp8Block128: {
      w.data = alloc(n);
      fill(const_cast<void*>(w.data), n, g_seed++, Fill::kFp8);
      w.scale_cols = cuda::ceil_div(cols, 128);
      const int64_t ns = cuda::ceil_div(rows, 128) * w.scale_cols;
      float* s = static_cast<float*>(alloc(ns * 4));
      fill(s, ns, g_seed++, Fill::kF32, 1e-4f);
      w.block_scale = s;
      break;
    }
    case WeightFormat::kNvfp4:
    case WeightFormat::kMxfp4:
    case WeightFormat::kIq4nl16: {
      w.group_size = format == WeightFormat::kMxfp4 ? 32 : 16;
      w.data = alloc(n / 2);
      fill(const_cast<void*>(w.data), n / 2, g_seed++, Fill::kBytes);
      const int64_t groups = rows * (cols / w.group_size);
      if (format == WeightFormat::kIq4nl16) {
        uint8_t* s = static_cast<uint8_t*>(alloc(groups * 2));
        fill(s, groups, g_seed++, Fill::kF16Scale);
        w.group_scale = s;
      } else {
        uint8_t* s = static_cast<uint8_t*>(alloc(groups));
        fill(s, groups, g_seed++,
             format == WeightFormat::kNvfp4 ? Fill::kE4m3Scale : Fill::kE8m0Scale);
        w.group_scale = s;
        w.global_scale = 1.0f / 2688.0f;
      }
      break;
    }
    default:
      fail("no generator for ", weight_format_name(format));
  }
  return w;
}

const float* device_floats(int64_t n, float amp, float offset) {
  float* p = static_cast<float*>(alloc(n * 4));
  fill(p, n, g_seed++, Fill::kF32, amp);
  if (offset != 0.0f) {
    std::vector<float> host(static_cast<size_t>(n));
    M2_CUDA(cudaMemcpy(host.data(), p, n * 4, cudaMemcpyDeviceToHost));
    for (float& v : host) v += offset;
    M2_CUDA(cudaMemcpy(p, host.data(), n * 4, cudaMemcpyHostToDevice));
  }
  return p;
}

struct BenchLayer {
  CudaLayer view;
  int64_t attn_bytes = 0, router_bytes = 0, expert_bytes = 0;  // one expert: w1 + w3 + w2
};

BenchLayer make_layer(const ModelConfig& c, WeightFormat attn, WeightFormat experts, bool fp8_kv,
                      int64_t kv_rows) {
  BenchLayer b;
  CudaLayer& L = b.view;
  const int64_t H = c.hidden_size, QW = c.q_width(), KW = c.kv_width();
  L.q = make_weight(attn, QW, H);
  L.k = make_weight(attn, KW, H);
  L.v = make_weight(attn, KW, H);
  L.o = make_weight(attn, H, QW);
  L.router = make_weight(WeightFormat::kF32, c.num_local_experts, H);
  L.input_norm = device_floats(H, 0.1f, 1.0f);
  L.q_norm = device_floats(QW, 0.1f, 1.0f);
  L.k_norm = device_floats(KW, 0.1f, 1.0f);
  L.post_norm = device_floats(H, 0.1f, 1.0f);
  L.router_bias = device_floats(c.num_local_experts, 0.01f, 0.0f);
  std::vector<Weight> w1, w3, w2;
  for (int64_t e = 0; e < c.num_local_experts; ++e) {
    w1.push_back(make_weight(experts, c.intermediate_size, H));
    w3.push_back(make_weight(experts, c.intermediate_size, H));
    w2.push_back(make_weight(experts, H, c.intermediate_size));
  }
  auto table = [&](const std::vector<Weight>& t) {
    Weight* d = static_cast<Weight*>(alloc(static_cast<int64_t>(t.size() * sizeof(Weight))));
    M2_CUDA(cudaMemcpy(d, t.data(), t.size() * sizeof(Weight), cudaMemcpyHostToDevice));
    return d;
  };
  L.w1_table = table(w1);
  L.w3_table = table(w3);
  L.w2_table = table(w2);
  L.w1_shape = w1[0];
  L.w3_shape = w3[0];
  L.w2_shape = w2[0];
  const int64_t kv_bytes = kv_rows * KW * (fp8_kv ? 1 : 4);
  L.k_cache = alloc(kv_bytes);
  L.v_cache = alloc(kv_bytes);
  if (fp8_kv) {
    fill(L.k_cache, kv_bytes, g_seed++, Fill::kFp8);
    fill(L.v_cache, kv_bytes, g_seed++, Fill::kFp8);
    L.k_scale = L.v_scale = 0.01f;
  } else {
    fill(L.k_cache, kv_bytes / 4, g_seed++, Fill::kF32, 1.0f);
    fill(L.v_cache, kv_bytes / 4, g_seed++, Fill::kF32, 1.0f);
  }
  b.attn_bytes = L.q.nbytes() + L.k.nbytes() + L.v.nbytes() + L.o.nbytes();
  b.router_bytes = L.router.nbytes();
  b.expert_bytes = w1[0].nbytes() + w3[0].nbytes() + w2[0].nbytes();
  return b;
}

int run(const Args& args) {
  cuda::require_device();
  cudaDeviceProp prop{};
  M2_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, L2 %d MiB\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20);
  ModelConfig c;
  c.hidden_size = 3072;
  c.num_attention_heads = 48;
  c.num_key_value_heads = 8;
  c.head_dim = 128;
  c.rotary_dim = 64;
  c.rope_theta = 5e6;
  c.intermediate_size = 1536;
  c.num_local_experts = 256;
  c.num_experts_per_tok = 8;
  c.rms_norm_eps = 1e-6f;
  const WeightFormat ef = parse_format(args.expert_format), af = parse_format(args.attn_format);
  const bool fp8_kv = args.kv == "fp8";
  cudaStream_t stream = nullptr;
  M2_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cuda::Stream st = stream;
  Timer timer;

  // HBM bandwidth: best of 5 streaming reads of 2 GiB, and a 1 GiB device copy.
  const int64_t bw_bytes = int64_t{2} << 30;
  DeviceBuffer big(bw_bytes), sink(4);
  fill(big.get(), bw_bytes, 99, Fill::kBytes);
  double read_gbps = 0, copy_gbps = 0;
  for (int i = 0; i < 5; ++i) {
    timer.start(stream);
    read_kernel<<<prop.multiProcessorCount * 8, 512, 0, stream>>>(big.as<uint4>(), bw_bytes / 16,
                                                                  sink.as<unsigned>());
    read_gbps = std::max(read_gbps, bw_bytes / timer.stop_seconds(stream) / 1e9);
    timer.start(stream);
    M2_CUDA(cudaMemcpyAsync(big.as<char>() + bw_bytes / 2, big.get(), bw_bytes / 2,
                            cudaMemcpyDeviceToDevice, stream));
    copy_gbps = std::max(copy_gbps, 2.0 * (bw_bytes / 2) / timer.stop_seconds(stream) / 1e9);
  }
  big = DeviceBuffer();
  std::printf("HBM: read kernel %.0f GB/s, device copy %.0f GB/s (read + write)\n", read_gbps,
              copy_gbps);

  // Layers.
  const int64_t kv_rows = std::max(args.ctx, args.prefill);
  std::vector<BenchLayer> layers;
  for (int64_t l = 0; l < args.layers; ++l)
    layers.push_back(make_layer(c, af, ef, fp8_kv, kv_rows));
  M2_CUDA(cudaDeviceSynchronize());
  std::printf("layer: attention %s, experts %s, KV %s, %lld layers of weights, context %lld\n",
              weight_format_name(af), weight_format_name(ef), fp8_kv ? "fp8" : "f32",
              static_cast<long long>(args.layers), static_cast<long long>(args.ctx));

  // Decode: one token at position ctx - 1 through all layers, captured into a graph that also
  // resets the residual stream each replay.
  CudaActivationBuffers act(c, std::max<int64_t>(args.prefill, 1));
  const CudaActivations& a = act.view();
  const int64_t H = c.hidden_size;
  const int64_t x0_rows = std::max<int64_t>(args.prefill, 1);
  DeviceBuffer x0(x0_rows * H * 4);
  fill(x0.get(), x0_rows * H, 7, Fill::kF32, 1.0f);
  const int32_t pos_decode = static_cast<int32_t>(args.ctx - 1);
  M2_CUDA(cudaMemcpy(act.positions(), &pos_decode, 4, cudaMemcpyHostToDevice));
  M2_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  M2_CUDA(cudaMemcpyAsync(a.x, x0.get(), H * 4, cudaMemcpyDeviceToDevice, stream));
  for (const BenchLayer& b : layers) enqueue_decoder_layer(c, b.view, a, 1, fp8_kv, st);
  cudaGraph_t graph = nullptr;
  M2_CUDA(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec = nullptr;
  M2_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  for (int i = 0; i < 3; ++i) M2_CUDA(cudaGraphLaunch(exec, stream));
  timer.start(stream);
  for (int64_t i = 0; i < args.reps; ++i) M2_CUDA(cudaGraphLaunch(exec, stream));
  const double t_layer = timer.stop_seconds(stream) / args.reps / args.layers;
  const BenchLayer& b0 = layers[0];
  const int64_t active = b0.attn_bytes + b0.router_bytes + c.num_experts_per_tok * b0.expert_bytes;
  const int64_t kv_read = 2 * args.ctx * c.kv_width() * (fp8_kv ? 1 : 4);
  const double decode_gbps = active / t_layer / 1e9;
  std::printf(
      "decode: %.1f us/layer, active weights %.1f MB/layer -> %.0f GB/s = %.1f%% of read "
      "bandwidth (weights + KV %.1f MB: %.1f%%)\n",
      t_layer * 1e6, active / 1e6, decode_gbps, 100.0 * decode_gbps / read_gbps,
      (active + kv_read) / 1e6, 100.0 * (active + kv_read) / t_layer / 1e9 / read_gbps);

  // The 4-bit (expert format) GEMV alone: two matrices larger than L2, alternated.
  const Weight g0 = make_weight(ef, 65536, H), g1 = make_weight(ef, 65536, H);
  DeviceBuffer gy(65536 * 4);
  for (int i = 0; i < 3; ++i) cuda::matmul(g0, a.h, 1, gy.as<float>(), st);
  timer.start(stream);
  for (int64_t i = 0; i < args.reps; ++i) cuda::matmul(i % 2 ? g1 : g0, a.h, 1, gy.as<float>(), st);
  const double t_gemv = timer.stop_seconds(stream) / args.reps;
  const double gemv_gbps = g0.nbytes() / t_gemv / 1e9;
  std::printf("GEMV %s [65536 x 3072]: %.1f us, %.1f MB -> %.0f GB/s = %.1f%% of read bandwidth\n",
              weight_format_name(ef), t_gemv * 1e6, g0.nbytes() / 1e6, gemv_gbps,
              100.0 * gemv_gbps / read_gbps);

  // The 8-slot expert GEMV (w1 of the routed experts), cycling over the layers.
  timer.start(stream);
  for (int64_t i = 0; i < args.reps; ++i) {
    const CudaLayer& L = layers[i % args.layers].view;
    cuda::expert_matmul_slots(L.w1_table, L.w1_shape, a.expert_ids, c.num_experts_per_tok, a.h,
                              c.num_experts_per_tok, a.gate, st);
  }
  const double t_slots = timer.stop_seconds(stream) / args.reps;
  const int64_t slot_bytes = c.num_experts_per_tok * b0.view.w1_shape.nbytes();
  std::printf("expert GEMV w1 x 8 slots: %.1f us, %.1f MB -> %.1f%% of read bandwidth\n",
              t_slots * 1e6, slot_bytes / 1e6, 100.0 * slot_bytes / t_slots / 1e9 / read_gbps);

  // Prefill: args.prefill tokens at positions 0.. through every layer (no graph).
  double t_prefill_layer = 0;
  if (args.prefill > 0) {
    std::vector<int32_t> pos(static_cast<size_t>(args.prefill));
    for (int64_t i = 0; i < args.prefill; ++i) pos[i] = static_cast<int32_t>(i);
    M2_CUDA(cudaMemcpy(act.positions(), pos.data(), args.prefill * 4, cudaMemcpyHostToDevice));
    auto pass = [&] {
      M2_CUDA(
          cudaMemcpyAsync(a.x, x0.get(), args.prefill * H * 4, cudaMemcpyDeviceToDevice, stream));
      for (const BenchLayer& b : layers)
        enqueue_decoder_layer(c, b.view, a, args.prefill, fp8_kv, st);
    };
    pass();
    const int prefill_reps = 3;
    timer.start(stream);
    for (int i = 0; i < prefill_reps; ++i) pass();
    t_prefill_layer = timer.stop_seconds(stream) / prefill_reps / args.layers;
    std::printf(
        "prefill %lld tokens: %.2f ms/layer -> %.0f tok/s through one layer, %.0f tok/s for 62 "
        "layers (embedding and lm_head excluded)\n",
        static_cast<long long>(args.prefill), t_prefill_layer * 1e3, args.prefill / t_prefill_layer,
        args.prefill / t_prefill_layer / 62);
  }
  std::printf(
      "{\"device\": \"%s\", \"experts\": \"%s\", \"attention\": \"%s\", \"read_gbps\": %.1f, "
      "\"copy_gbps\": %.1f, \"decode_us_per_layer\": %.2f, \"decode_weight_fraction\": %.4f, "
      "\"gemv_fraction\": %.4f, \"expert_slots_fraction\": %.4f, \"prefill_tokens\": %lld, "
      "\"prefill_ms_per_layer\": %.3f, \"prefill_tok_s_62_layers\": %.1f}\n",
      prop.name, weight_format_name(ef), weight_format_name(af), read_gbps, copy_gbps,
      t_layer * 1e6, decode_gbps / read_gbps, gemv_gbps / read_gbps,
      slot_bytes / t_slots / 1e9 / read_gbps, static_cast<long long>(args.prefill),
      t_prefill_layer * 1e3, t_prefill_layer > 0 ? args.prefill / t_prefill_layer / 62 : 0.0);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  g_memory.clear();
  cudaStreamDestroy(stream);
  return 0;
}

}  // namespace
}  // namespace m2fp4

int main(int argc, char** argv) {
  m2fp4::Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "cuda_layer_bench: %s needs a value\n", k.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (k == "--expert-format") {
      args.expert_format = value();
    } else if (k == "--attn-format") {
      args.attn_format = value();
    } else if (k == "--kv") {
      args.kv = value();
    } else if (k == "--layers") {
      args.layers = std::atoll(value().c_str());
    } else if (k == "--ctx") {
      args.ctx = std::atoll(value().c_str());
    } else if (k == "--prefill") {
      args.prefill = std::atoll(value().c_str());
    } else if (k == "--reps") {
      args.reps = std::atoll(value().c_str());
    } else {
      std::fprintf(stderr, "cuda_layer_bench: unknown argument %s (see the header comment)\n",
                   k.c_str());
      return 2;
    }
  }
  if (args.layers < 1 || args.ctx < 1 || args.prefill < 0 || args.reps < 1) {
    std::fprintf(stderr, "cuda_layer_bench: --layers, --ctx, --reps must be >= 1\n");
    return 2;
  }
  try {
    return m2fp4::run(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuda_layer_bench: error: %s\n", e.what());
    return 1;
  }
}
