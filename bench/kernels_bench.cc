// CPU kernel benchmarks: read-only memory bandwidth (the roofline), matmul per weight format (f32,
// bf16, f16, fp8-block128, and the 4-bit nvfp4, mxfp4, iq4nl-16) at decode (1 token) and prefill
// (64 tokens) shapes, 1 and 2 threads, and decode attention over f32 and FP8 KV caches.
//
// Counters: GBps = weight bytes streamed per second; bw_GBps = read bandwidth of a plain stream
// interleaved with the matmuls (one stream of equal size after each matmul, same thread count);
// of_bw = GBps / bw_GBps, the fraction of the roofline (the host's bandwidth swings minute to
// minute, so only this ratio is comparable across runs). Weights are cycled over several copies
// totalling >= 512 MiB so every pass comes from memory, not the last-level cache.
//
// Run: build-*/bench/kernels_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul4_int8.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/simd_target.h"
#include "kernels/weight.h"
#include "numerics/bf16.h"
#include "numerics/f16.h"
#include "numerics/fp8_e4m3.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace m2fp4 {
namespace {

constexpr int64_t kStreamBytes = int64_t{512} << 20;

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<uint8_t, FreeDeleter>;

Buffer allocate(int64_t bytes) {
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64));
  if (!p) std::abort();
  return Buffer(p);
}

// Sums 64-bit words of [p, p + bytes); wide loads where the CPU has them.
#if defined(__x86_64__)
__attribute__((target("avx2"))) uint64_t sum_avx2(const uint8_t* p, int64_t bytes) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 128 <= bytes; i += 128) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  uint64_t lanes[4];
  std::memcpy(lanes, &s, sizeof(lanes));
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}
#endif

uint64_t sum_words(const uint8_t* p, int64_t bytes) {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2")) return sum_avx2(p, bytes);
#endif
  uint64_t a[4] = {};
  for (int64_t i = 0; i + 32 <= bytes; i += 32) {
    for (int k = 0; k < 4; ++k) {
      uint64_t v;
      std::memcpy(&v, p + i + 8 * k, 8);
      a[k] += v;
    }
  }
  return a[0] + a[1] + a[2] + a[3];
}

// One read pass over the buffer split into contiguous per-thread slices; returns seconds.
double stream_pass(const uint8_t* p, int64_t bytes, ThreadPool& pool) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<uint64_t> sums(pool.size());
  const int64_t lines = bytes / 128;
  pool.parallel_for(lines, 1024, [&](int64_t b, int64_t e, int thread) {
    sums[thread] += sum_words(p + b * 128, (e - b) * 128);
  });
  benchmark::DoNotOptimize(sums.data());
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The 512 MiB read-only buffer the roofline is measured on (larger than any last-level cache).
const uint8_t* stream_buffer() {
  static Buffer buffer = [] {
    Buffer b = allocate(kStreamBytes);
    std::memset(b.get(), 1, kStreamBytes);
    return b;
  }();
  return buffer.get();
}

void BM_MemoryBandwidth(benchmark::State& state) {
  ThreadPool pool(static_cast<int>(state.range(0)));
  stream_pass(stream_buffer(), kStreamBytes, pool);  // first touch, warm-up
  double seconds = 0;
  for (auto _ : state) seconds += stream_pass(stream_buffer(), kStreamBytes, pool);
  state.counters["GBps"] = kStreamBytes * 1e-9 * state.iterations() / seconds;
  state.SetBytesProcessed(kStreamBytes * state.iterations());
}
BENCHMARK(BM_MemoryBandwidth)->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime()->MinTime(1.0);

// Copies of one random weight, enough to total >= 512 MiB.
struct WeightSet {
  std::vector<Buffer> data;
  std::vector<float> scales;
  std::vector<Weight> weights;
};

bool is_four_bit(WeightFormat format) {
  return format == WeightFormat::kNvfp4 || format == WeightFormat::kMxfp4 ||
         format == WeightFormat::kIq4nl16;
}

// A 4-bit weight: random codes and realistic group scales in one buffer per copy (codes, then
// scales), so the scales stream from memory with the codes.
WeightSet make_four_bit_weights(WeightFormat format, int64_t rows, int64_t cols) {
  WeightSet set;
  Weight proto{format, rows, cols, nullptr, nullptr, 0};
  proto.group_size = format == WeightFormat::kMxfp4 ? 32 : 16;
  proto.global_scale = 4.0f / 2688.0f;
  const int64_t code_bytes = rows * cols / 2;
  const int64_t bytes = proto.nbytes();
  const int64_t n_groups = rows * (cols / proto.group_size);
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> byte(0, 255), e4m3(0x28, 0x7E), e8m0(120, 130);
  std::uniform_real_distribution<float> f16_scale(-0.02f, 0.02f);
  Buffer first = allocate(bytes);
  for (int64_t i = 0; i < code_bytes; ++i) first.get()[i] = static_cast<uint8_t>(byte(rng));
  uint8_t* scales = first.get() + code_bytes;
  for (int64_t g = 0; g < n_groups; ++g) {
    if (format == WeightFormat::kNvfp4) {
      scales[g] = static_cast<uint8_t>(e4m3(rng));
    } else if (format == WeightFormat::kMxfp4) {
      scales[g] = static_cast<uint8_t>(e8m0(rng));
    } else {
      const uint16_t h = f32_to_f16(f16_scale(rng));
      std::memcpy(scales + 2 * g, &h, 2);
    }
  }
  const int64_t copies = std::max<int64_t>(2, (kStreamBytes + bytes - 1) / bytes);
  for (int64_t k = 0; k < copies; ++k) {
    Buffer b = allocate(bytes);
    std::memcpy(b.get(), first.get(), bytes);
    Weight w = proto;
    w.data = b.get();
    w.group_scale = b.get() + code_bytes;
    set.weights.push_back(w);
    set.data.push_back(std::move(b));
  }
  return set;
}

WeightSet make_weights(WeightFormat format, int64_t rows, int64_t cols) {
  if (is_four_bit(format)) return make_four_bit_weights(format, rows, cols);
  WeightSet set;
  Weight proto{format, rows, cols, nullptr, nullptr, 0};
  if (format == WeightFormat::kFp8Block128) {
    proto.scale_cols = (cols + 127) / 128;
    set.scales.assign(((rows + 127) / 128) * proto.scale_cols, 0.01f);
  }
  const int64_t elem = format == WeightFormat::kF32                                      ? 4
                       : (format == WeightFormat::kBF16 || format == WeightFormat::kF16) ? 2
                                                                                         : 1;
  const int64_t bytes = rows * cols * elem;
  const int64_t copies = std::max<int64_t>(2, (kStreamBytes + bytes - 1) / bytes);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Buffer first = allocate(bytes);
  for (int64_t i = 0; i < rows * cols; ++i) {
    const float v = normal(rng);
    switch (format) {
      case WeightFormat::kF32:
        std::memcpy(first.get() + 4 * i, &v, 4);
        break;
      case WeightFormat::kBF16: {
        const uint16_t h = f32_to_bf16(v);
        std::memcpy(first.get() + 2 * i, &h, 2);
        break;
      }
      case WeightFormat::kF16: {
        const uint16_t h = f32_to_f16(v);
        std::memcpy(first.get() + 2 * i, &h, 2);
        break;
      }
      case WeightFormat::kFp8Block128:
        first.get()[i] = f32_to_e4m3(v * 64);
        break;
      default:
        break;
    }
  }
  for (int64_t k = 0; k < copies; ++k) {
    Buffer b = allocate(bytes);
    std::memcpy(b.get(), first.get(), bytes);
    Weight w = proto;
    w.data = b.get();
    w.block_scale = set.scales.empty() ? nullptr : set.scales.data();
    set.weights.push_back(w);
    set.data.push_back(std::move(b));
  }
  return set;
}

// Args: format, rows, cols, n_tokens, threads.
void BM_Matmul(benchmark::State& state) {
  const auto format = static_cast<WeightFormat>(state.range(0));
  const int64_t rows = state.range(1), cols = state.range(2), n_tokens = state.range(3);
  ThreadPool pool(static_cast<int>(state.range(4)));
  WeightSet set = make_weights(format, rows, cols);
  std::vector<float> x(n_tokens * cols), y(n_tokens * rows);
  std::mt19937 rng(2);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto& v : x) v = normal(rng);
  for (const Weight& w : set.weights) matmul(w, x.data(), n_tokens, y.data(), pool);  // warm-up
  // Each matmul is followed by a read-only stream of as many bytes (from a rotating offset of
  // the 512 MiB buffer), timed separately: the roofline is measured in the same seconds as the
  // kernel, which matters on a host whose bandwidth swings minute to minute.
  const int64_t bytes = set.weights[0].nbytes();
  const int64_t stream_bytes = std::max<int64_t>(bytes / 128 * 128, 128);
  const int64_t n_slices = std::max<int64_t>(1, kStreamBytes / stream_bytes);
  stream_pass(stream_buffer(), kStreamBytes, pool);  // first touch
  size_t k = 0;
  int64_t slice = 0;
  double matmul_seconds = 0, stream_seconds = 0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    matmul(set.weights[k], x.data(), n_tokens, y.data(), pool);
    benchmark::DoNotOptimize(y.data());
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    state.SetIterationTime(seconds);
    matmul_seconds += seconds;
    stream_seconds += stream_pass(stream_buffer() + slice * stream_bytes, stream_bytes, pool);
    k = (k + 1) % set.weights.size();
    slice = (slice + 1) % n_slices;
  }
  const double iterations = static_cast<double>(state.iterations());
  const double gbps = static_cast<double>(bytes) * iterations * 1e-9 / matmul_seconds;
  const double bandwidth = static_cast<double>(stream_bytes) * iterations * 1e-9 / stream_seconds;
  const bool four_bit = format == WeightFormat::kNvfp4 || format == WeightFormat::kMxfp4 ||
                        format == WeightFormat::kIq4nl16;
  const char* activations = !four_bit                                             ? ""
                            : four_bit_activations() == FourBitActivations::kInt8 ? " a=int8"
                                                                                  : " a=f32";
  state.SetLabel(std::string(weight_format_name(format)) + " " + kernels_simd_target() +
                 activations);
  state.counters["GBps"] = gbps;
  state.counters["GFLOPs"] = 2.0 * rows * cols * n_tokens * iterations * 1e-9 / matmul_seconds;
  state.counters["bw_GBps"] = bandwidth;
  state.counters["of_bw"] = gbps / bandwidth;
}

void matmul_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"fmt", "rows", "cols", "tokens", "threads"});
  const WeightFormat formats[] = {
      WeightFormat::kF32,   WeightFormat::kBF16,  WeightFormat::kF16,    WeightFormat::kFp8Block128,
      WeightFormat::kNvfp4, WeightFormat::kMxfp4, WeightFormat::kIq4nl16};
  const int64_t shapes[][2] = {{4096, 4096}, {32768, 1024}};
  for (int64_t tokens : {1, 64}) {
    for (auto& shape : shapes) {
      for (WeightFormat f : formats) {
        for (int threads : {1, 2}) {
          b->Args({static_cast<int64_t>(f), shape[0], shape[1], tokens, threads});
        }
      }
    }
  }
}
BENCHMARK(BM_Matmul)->Apply(matmul_args)->UseManualTime()->MinTime(0.5);

// Token-count sweep (expert matmuls see a few tokens each; prefill many): BF16 4096 x 4096 on
// 2 threads.
void token_sweep_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"fmt", "rows", "cols", "tokens", "threads"});
  for (int64_t tokens : {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 128}) {
    b->Args({static_cast<int64_t>(WeightFormat::kBF16), 4096, 4096, tokens, 2});
  }
}
BENCHMARK(BM_Matmul)
    ->Name("BM_MatmulTokenSweep")
    ->Apply(token_sweep_args)
    ->UseManualTime()
    ->MinTime(0.3);

// Decode attention of one token, MiniMax-M2 shape (48 query heads, 8 KV heads, head_dim 128, f32
// KV rows of 2048 floats: K and V of all KV heads), over n_ctx positions. GBps = K/V bytes read
// per second.
void BM_Attention(benchmark::State& state) {
  const int64_t n_ctx = state.range(0);
  ThreadPool pool(static_cast<int>(state.range(1)));
  const int64_t n_heads = 48, n_kv = 8, hd = 128, stride = n_kv * hd;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> q(n_heads * hd), k(n_ctx * stride), v(n_ctx * stride), out(n_heads * hd);
  for (auto* vec : {&q, &k, &v}) {
    for (auto& e : *vec) e = normal(rng);
  }
  for (auto _ : state) {
    attention_parallel(q.data(), k.data(), v.data(), n_ctx, stride, n_heads, n_kv, hd, out.data(),
                       pool);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["GBps"] = benchmark::Counter(2.0 * n_ctx * stride * 4 * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(kernels_simd_target());
}
BENCHMARK(BM_Attention)
    ->ArgNames({"n_ctx", "threads"})
    ->Args({512, 1})
    ->Args({512, 2})
    ->Args({4096, 1})
    ->Args({4096, 2})
    ->UseRealTime();

// The same over an FP8 (E4M3) cache: GBps = K/V bytes (1 per element) read per second.
void BM_AttentionFp8(benchmark::State& state) {
  const int64_t n_ctx = state.range(0);
  ThreadPool pool(static_cast<int>(state.range(1)));
  const int64_t n_heads = 48, n_kv = 8, hd = 128, stride = n_kv * hd;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> q(n_heads * hd), kv(n_ctx * stride), out(n_heads * hd);
  for (auto* vec : {&q, &kv}) {
    for (auto& e : *vec) e = normal(rng);
  }
  std::vector<uint8_t> k8(n_ctx * stride), v8(n_ctx * stride);
  kv_store_fp8(kv.data(), n_ctx * stride, 5.0f / 448, k8.data());
  std::reverse(kv.begin(), kv.end());
  kv_store_fp8(kv.data(), n_ctx * stride, 5.0f / 448, v8.data());
  for (auto _ : state) {
    attention_fp8_parallel(q.data(), k8.data(), v8.data(), n_ctx, stride, n_heads, n_kv, hd,
                           5.0f / 448, 5.0f / 448, out.data(), pool);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["GBps"] = benchmark::Counter(2.0 * n_ctx * stride * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(kernels_simd_target());
}
BENCHMARK(BM_AttentionFp8)
    ->ArgNames({"n_ctx", "threads"})
    ->Args({512, 1})
    ->Args({512, 2})
    ->Args({4096, 1})
    ->Args({4096, 2})
    ->UseRealTime();

}  // namespace
}  // namespace m2fp4

BENCHMARK_MAIN();
