// Offline quantizer throughput: bytes of bf16 source quantized per second, for one MiniMax-M2
// expert matrix (w1: 1536 x 3072), per format, with 1 and 2 threads of the default pool.
//
// Run: build-*/bench/quant_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "base/thread_pool.h"
#include "numerics/bf16.h"
#include "quant/fp8.h"
#include "quant/iq4nl16.h"
#include "quant/mxfp4.h"
#include "quant/nvfp4.h"

namespace m2fp4 {
namespace {

constexpr int64_t kRows = 1536;
constexpr int64_t kCols = 3072;

const std::vector<uint16_t>& source() {
  static const std::vector<uint16_t> bits = [] {
    std::vector<uint16_t> v(static_cast<size_t>(kRows * kCols));
    std::mt19937_64 rng(1);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    for (uint16_t& b : v) b = f32_to_bf16(normal(rng));
    return v;
  }();
  return bits;
}

template <typename Fn>
void run(benchmark::State& state, Fn quantize) {
  set_default_threads(static_cast<int>(state.range(0)));
  const ConstMatrix m = ConstMatrix::bf16(source(), kRows, kCols);
  for (auto _ : state) benchmark::DoNotOptimize(quantize(m));
  state.SetBytesProcessed(state.iterations() * kRows * kCols * 2);
}

void BM_Nvfp4Modelopt(benchmark::State& state) {
  run(state, [](const ConstMatrix& m) { return nvfp4_quantize_weight(m, matrix_amax(m), {}); });
}
void BM_Nvfp4CompressedTensors(benchmark::State& state) {
  Nvfp4Options o;
  o.convention = Nvfp4Convention::kCompressedTensors;
  run(state, [&](const ConstMatrix& m) { return nvfp4_quantize_weight(m, matrix_amax(m), o); });
}
void BM_Mxfp4Ocp(benchmark::State& state) {
  run(state, [](const ConstMatrix& m) { return mxfp4_quantize(m, Mxfp4Rule::kOcp); });
}
void BM_Iq4nl16(benchmark::State& state) {
  run(state, [](const ConstMatrix& m) { return iq4nl16_quantize(m); });
}
void BM_Fp8Block(benchmark::State& state) {
  run(state, [](const ConstMatrix& m) { return fp8_quantize(m); });
}

// The FP8 source path (§5): 128x128 block-scaled E4M3 -> bf16; bytes are bf16 output bytes.
void BM_Fp8DequantizeBf16(benchmark::State& state) {
  set_default_threads(static_cast<int>(state.range(0)));
  const Fp8Tensor t = fp8_quantize(ConstMatrix::bf16(source(), kRows, kCols));
  for (auto _ : state) benchmark::DoNotOptimize(fp8_dequantize_bf16(t));
  state.SetBytesProcessed(state.iterations() * kRows * kCols * 2);
}

BENCHMARK(BM_Nvfp4Modelopt)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Nvfp4CompressedTensors)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Mxfp4Ocp)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Iq4nl16)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Fp8Block)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Fp8DequantizeBf16)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace m2fp4

BENCHMARK_MAIN();
