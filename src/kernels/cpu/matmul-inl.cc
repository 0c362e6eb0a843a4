// Per-target (Highway) entry of the fast matmul: plans each job's path, prepares the inputs, and
// splits the rows of all jobs across the pool's threads. Included by matmul.cc once per SIMD
// target via foreach_target.h. Not compiled on its own (the CMake glob skips *-inl.cc).
//
// Numerics: every weight is decoded exactly to f32 (for FP8, e4m3 * block scale rounded once, as
// the scalar twin does) and multiplied/accumulated with f32 FMA; only the summation order
// differs from scalar::matmul.
//
// Two paths:
// - GEMV (few tokens, matmul_gemv-inl.cc): R weight rows at a time are decoded straight from
//   memory into registers and dotted with up to 4 tokens. This is the decode path and must run
//   at memory bandwidth.
// - GEMM (many tokens, prefill and busy experts, matmul_gemm-inl.cc): the input is transposed
//   once so tokens lie along the vector lanes, R rows are decoded into an f32 tile, and a
//   register-blocked kernel updates R x TV token vectors per column.
// BF16 weights take their own GEMM from 8-9 tokens (gemm_bf16-inl.cc: rows along the lanes,
// tokens broadcast, weights decoded once per call).
// The 4-bit formats (NVFP4, MXFP4, IQ4_NL x16) take both paths with the chunked decoder of
// matmul4-inl.cc, which yields columns in a permuted order: their GEMV input is permuted and their
// GEMM input packed in that same order, once per call on the calling thread.

#if defined(M2FP4_KERNELS_CPU_MATMUL_INL_CC_) == defined(HWY_TARGET_TOGGLE)
#ifdef M2FP4_KERNELS_CPU_MATMUL_INL_CC_
#undef M2FP4_KERNELS_CPU_MATMUL_INL_CC_
#else
#define M2FP4_KERNELS_CPU_MATMUL_INL_CC_
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "base/thread_pool.h"
#include "hwy/highway.h"
#include "kernels/cpu/gemm_bf16-inl.cc"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul4-inl.cc"
#include "kernels/cpu/matmul4_int8-inl.cc"
#include "kernels/cpu/matmul4_int8_gemm-inl.cc"
#include "kernels/cpu/matmul_bf16dot.h"
#include "kernels/cpu/matmul_formats-inl.cc"
#include "kernels/cpu/matmul_fp8dot.h"
#include "kernels/cpu/matmul_gemm-inl.cc"
#include "kernels/cpu/matmul_gemv-inl.cc"
#include "kernels/cpu/scratch.h"
#include "kernels/cpu/weight_decode.h"
#include "kernels/weight.h"

HWY_BEFORE_NAMESPACE();
namespace m2fp4 {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// GEMM pays off once a register tile holds at least two full token vectors: with one, the
// broadcast loads outnumber the multiply-adds and the GEMV path (4 tokens per pass over rows
// cached in L1) is as fast (measured with BM_MatmulTokenSweep).
bool use_gemm(int64_t n_tokens) {
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  return n_tokens >= std::max<int64_t>(8, 2 * n);
}

bool fp8_scales_small(const Weight& w) {
  const int64_t n = ((w.rows + 127) / 128) * w.scale_cols;
  for (int64_t i = 0; i < n; ++i) {
    if (!(std::abs(w.block_scale[i]) < 256.0f)) return false;
  }
  return true;
}

// How one job runs on a range of its rows.
struct JobPlan {
  const MatmulJob* job;
  bool gemm;
  bool four_bit;         // chunked 4-bit decoder (four_bit::Source)
  const float* xt;       // GEMM: packed input blocks
  const float* xp;       // 4-bit GEMV: the input in four_bit's permuted column order
  const uint8_t* xq;     // 4-bit GEMV with int8 activations: the input quantized (matmul4_int8.h)
  const uint16_t* xb;    // BF16 GEMV with bf16 activations: the input rounded (matmul_bf16dot.h)
  const float* x_tiles;  // BF16 GEMM: the input packed in token tiles (gemm_bf16-inl.cc, rounded
                         // to bf16 with bf16 activations); else nullptr
  int64_t block_tokens;
  int64_t unit;  // rows per scheduling unit (a register tile)
  int64_t n_units;
  double unit_cost;
  void (*run)(const JobPlan&, int64_t row_begin, int64_t row_end);
};

template <class Format>
void run_rows(const JobPlan& plan, int64_t row_begin, int64_t row_end) {
  const Weight& w = *plan.job->w;
  const RowSource<Format> src{static_cast<const typename Format::Stored*>(w.data), w.cols,
                              w.block_scale, w.scale_cols};
  if (plan.gemm) {
    auto decode = [&](int64_t r0, int64_t nr, int64_t c0, int64_t c1, float* out) {
      decode_tile(src, r0, nr, c0, c1, out);
    };
    gemm_rows(decode, w.cols, row_begin, row_end, plan.xt, plan.job->n_tokens, plan.block_tokens,
              w.rows, plan.job->y);
  } else {
    gemv_rows<Format>(src, row_begin, row_end, plan.job->x, plan.job->n_tokens, w.rows,
                      plan.job->y);
  }
}

bool is_four_bit(const Weight& w) {
  return w.format == WeightFormat::kNvfp4 || w.format == WeightFormat::kMxfp4 ||
         w.format == WeightFormat::kIq4nl16;
}

// The 4-bit formats with the chunked decoder (matmul4-inl.cc): GEMV on the permuted input, or
// GEMM on decoded tiles against the input packed in the same permuted order.
void run_rows_four_bit(const JobPlan& plan, int64_t row_begin, int64_t row_end) {
  const Weight& w = *plan.job->w;
  const four_bit::Source src = four_bit::make_source(w);
  if (plan.gemm) {
    auto decode = [&](int64_t r0, int64_t nr, int64_t c0, int64_t c1, float* out) {
      four_bit::decode_tile(src, r0, nr, kGemmRows, c0, c1, out);
    };
    gemm_rows(decode, w.cols, row_begin, row_end, plan.xt, plan.job->n_tokens, plan.block_tokens,
              w.rows, plan.job->y);
  } else {
    four_bit::gemv_rows(src, row_begin, row_end, plan.xp, plan.job->n_tokens, w.rows, plan.job->y);
  }
}

// The 4-bit GEMV / GEMM with activations rounded to int8 (matmul4_int8*-inl.cc).
void run_rows_four_bit_int8(const JobPlan& plan, int64_t row_begin, int64_t row_end) {
  four_bit_int8::matmul_rows(*plan.job->w, plan.job->x, plan.xq, plan.job->n_tokens, row_begin,
                             row_end, plan.job->y);
}

// BF16 weights with activations rounded to bf16 (matmul_bf16dot.h) on the AVX-512 targets of CPUs
// with AVX512_BF16: up to kMaxBf16DotTokens tokens take the vdpbf16ps GEMV, more the BF16 GEMM
// (gemm_bf16-inl.cc, f32 multiply-adds on the activations rounded as they are packed: the same
// exact products, and vdpbf16ps measured about half the f32 FMA's multiply-adds per second on
// this Xeon host). So no such job reaches the f32 GEMV or GEMM tiles. Other targets and CPUs
// keep f32 activations whatever the setting.
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
constexpr bool kTargetHasBf16Dot = true;
#else
constexpr bool kTargetHasBf16Dot = false;
#endif

// Token counts up to which the vdpbf16ps GEMV beats the f32 GEMV on bf16-rounded activations
// (measured with BM_MatmulTokenSweep, BF16 4096 x 4096, 2 threads: 1.3-1.9x at 1-6 tokens, even
// at 8, slower from 12 where the multiply-adds, not the weight stream, bound it).
constexpr int64_t kMaxBf16DotTokens = 8;

bool use_bf16_activations(const Weight& w) {
  return kTargetHasBf16Dot && w.format == WeightFormat::kBF16 &&
         bf16_activations() == Bf16Activations::kBf16 && bf16dot::cpu_supported();
}

void run_rows_bf16_dot(const JobPlan& plan, int64_t row_begin, int64_t row_end) {
  bf16dot::matmul_rows(*plan.job->w, plan.xb, plan.job->n_tokens, row_begin, row_end, plan.job->y);
}

// BF16 weights from this many tokens take the rows-along-lanes GEMM (gemm_bf16-inl.cc); fewer
// take the GEMV kernels. With bf16 activations the vdpbf16ps GEMV keeps up to kMaxBf16DotTokens.
constexpr int64_t kMinBf16GemmTokens = 8;

bool use_bf16_gemm(const Weight& w, int64_t n_tokens) {
  if (w.format != WeightFormat::kBF16) return false;
  return n_tokens >= (use_bf16_activations(w) ? kMaxBf16DotTokens + 1 : kMinBf16GemmTokens);
}

// On the input packed in token tiles (plan.x_tiles, rounded to bf16 with bf16 activations).
void run_rows_bf16_gemm(const JobPlan& plan, int64_t row_begin, int64_t row_end) {
  const Weight& w = *plan.job->w;
  bf16_gemm::gemm_rows(static_cast<const uint16_t*>(w.data), w.cols, row_begin, row_end,
                       plan.x_tiles, plan.job->n_tokens, w.rows, plan.job->y);
}

// FP8 weights with activations rounded to bf16 (matmul_fp8dot.h), same targets and CPUs: the GEMV
// (fewer tokens than the GEMM threshold) takes the vdpbf16ps kernel, which reads x itself (each
// thread scales and rounds it once per 128-row block); the GEMM keeps its f32 tiles.
bool use_fp8_dot(const Weight& w) {
  return kTargetHasBf16Dot && w.format == WeightFormat::kFp8Block128 &&
         bf16_activations() == Bf16Activations::kBf16 && fp8dot::cpu_supported();
}

void run_rows_fp8_dot(const JobPlan& plan, int64_t row_begin, int64_t row_end) {
  fp8dot::matmul_rows(*plan.job->w, plan.job->x, plan.job->n_tokens, row_begin, row_end,
                      plan.job->y);
}

// 4-bit weights the chunked decoder does not handle (group sizes that are not a multiple of 8
// lining up with the chunks): each row is decoded once into an f32 buffer, then dotted with
// every token.
void run_rows_decoded(const JobPlan& plan, int64_t row_begin, int64_t row_end) {
  const Weight& w = *plan.job->w;
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t cols = w.cols;
  float* row = thread_scratch(1, static_cast<size_t>(cols));
  for (int64_t r = row_begin; r < row_end; ++r) {
    decode_weight_row(w, r, row);
    for (int64_t t = 0; t < plan.job->n_tokens; ++t) {
      const float* xt = plan.job->x + t * cols;
      VF acc0 = hn::Zero(df), acc1 = hn::Zero(df);
      int64_t c = 0;
      for (; c + 2 * N <= cols; c += 2 * N) {
        acc0 = hn::MulAdd(hn::LoadU(df, row + c), hn::LoadU(df, xt + c), acc0);
        acc1 = hn::MulAdd(hn::LoadU(df, row + c + N), hn::LoadU(df, xt + c + N), acc1);
      }
      float acc = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0, acc1)));
      for (; c < cols; ++c) acc += row[c] * xt[c];
      plan.job->y[t * w.rows + r] = acc;
    }
  }
}

auto* runner_for(const Weight& w) {
  switch (w.format) {
    case WeightFormat::kF32:
      return &run_rows<FormatF32>;
    case WeightFormat::kBF16:
      return &run_rows<FormatBF16>;
    case WeightFormat::kF16:
      return &run_rows<FormatF16>;
    case WeightFormat::kFp8Block128:
      return fp8_scales_small(w) ? &run_rows<FormatFp8> : &run_rows<FormatFp8TwoStep>;
    case WeightFormat::kNvfp4:
    case WeightFormat::kMxfp4:
    case WeightFormat::kIq4nl16:
      return four_bit::supported(w) ? &run_rows_four_bit : &run_rows_decoded;
  }
  return &run_rows<FormatF32>;
}

// One input of int8 4-bit jobs to quantize (int8_gemv::quantize).
struct Int8QuantizeTask {
  const Weight* w;
  const float* x;
  int64_t n_tokens;
  uint8_t* out;
};

// From this many tokens in all (prefill) the quantizations are split by tokens over the pool's
// threads: on the calling thread alone they took ~8% of a 4-bit pp512 run while the others
// waited (the inputs are other ops' fresh outputs, partly in the other cores' caches).
constexpr int64_t kMinParallelQuantizeTokens = 64;

void run_int8_quantize_tasks(const std::vector<Int8QuantizeTask>& tasks, int64_t n_tokens,
                             ThreadPool& pool) {
  auto quantize_part = [&](int64_t k, int64_t parts) {
    for (const Int8QuantizeTask& q : tasks) {
      const int64_t t0 = q.n_tokens * k / parts, t1 = q.n_tokens * (k + 1) / parts;
      const int64_t token_bytes = int8_gemv::activation_bytes(q.w->cols, 1);
      if (t0 < t1)
        int8_gemv::quantize(*q.w, q.x + t0 * q.w->cols, t1 - t0, q.out + t0 * token_bytes);
    }
  };
  if (n_tokens < kMinParallelQuantizeTokens || pool.size() == 1) {
    quantize_part(0, 1);
  } else {
    pool.run(pool.size(), [&](int64_t k, int) { quantize_part(k, pool.size()); });
  }
}

// Below this much work (~bytes streamed) a job list runs on the calling thread alone: waking a
// worker costs about a microsecond, in which ~64 KiB stream.
constexpr double kMinParallelCost = 64 << 10;

// An input of BF16 GEMM jobs to pack (bf16_gemm::pack_tokens).
struct Bf16PackTask {
  const float* x;
  int64_t cols, n_tokens;
  bool round;
  float* out;
};

// Packs on all threads, each a share of every input's token tiles, from this many floats (the
// calling thread alone would leave the others waiting: ~6% of a BF16 prefill's samples).
constexpr int64_t kMinParallelPackFloats = 64 << 10;

void run_bf16_pack_tasks(const std::vector<Bf16PackTask>& tasks, int64_t floats, ThreadPool& pool) {
  auto pack_part = [&](int64_t k, int64_t parts) {
    for (const Bf16PackTask& t : tasks) {
      bf16_gemm::pack_tokens(t.x, t.cols, t.n_tokens, t.round, t.out, k, parts);
    }
  };
  if (floats < kMinParallelPackFloats || pool.size() == 1) {
    pack_part(0, 1);
  } else {
    pool.run(pool.size(), [&](int64_t k, int) { pack_part(k, pool.size()); });
  }
}

// Entry point for this target; jobs already validated, none empty.
void MatmulBatchImpl(const MatmulJob* jobs, int64_t n_jobs, ThreadPool& pool) {
  const DF df;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  const int64_t block_tokens = gemm_block_tokens(lanes);
  // Reused across calls (no allocation per call). Named through a reference: lambdas run on the
  // workers would otherwise see their own thread's instance.
  thread_local std::vector<JobPlan> caller_plans;
  std::vector<JobPlan>& plans = caller_plans;
  plans.resize(n_jobs);
  int64_t scratch_floats = 0;
  double total_cost = 0;
  for (int64_t i = 0; i < n_jobs; ++i) {
    const Weight& w = *jobs[i].w;
    const int64_t n_tokens = jobs[i].n_tokens;
    JobPlan& p = plans[i];
    p.job = &jobs[i];
    p.run = runner_for(w);
    p.four_bit = p.run == &run_rows_four_bit;
    // int8 activations take every token count (GEMV and prefill GEMM alike), so a token's
    // result does not depend on how many tokens share the call.
    const bool int8 = p.four_bit && four_bit_int8::use_for(w);
    p.gemm = !int8 && use_gemm(n_tokens) && (!is_four_bit(w) || p.four_bit);
    if (int8) p.run = &run_rows_four_bit_int8;
    const bool bf16_dot = use_bf16_activations(w) && n_tokens <= kMaxBf16DotTokens;
    if (bf16_dot) {
      p.run = &run_rows_bf16_dot;
      p.gemm = false;
    }
    if (!p.gemm && use_fp8_dot(w) && fp8dot::takes(w.cols, n_tokens)) p.run = &run_rows_fp8_dot;
    const bool bf16_gemm_job = use_bf16_gemm(w, n_tokens);
    if (bf16_gemm_job) {
      p.run = &run_rows_bf16_gemm;
      p.gemm = false;
    }
    p.x_tiles = nullptr;
    p.block_tokens = block_tokens;
    p.unit = bf16_gemm_job ? bf16_gemm::panel_rows() : p.gemm ? kGemmRows : 4;
    p.n_units = (w.rows + p.unit - 1) / p.unit;
    // Bytes streamed plus the arithmetic in byte-equivalents (~8 multiply-adds per byte of
    // bandwidth on one core), so jobs of different formats and token counts balance. Decoding
    // 4-bit codes costs about as much again as streaming them.
    const double row_bytes = static_cast<double>(w.nbytes()) / static_cast<double>(w.rows) *
                             (is_four_bit(w) ? 2.0 : 1.0);
    p.unit_cost =
        static_cast<double>(p.unit) * (row_bytes + 0.125 * static_cast<double>(w.cols * n_tokens));
    total_cost += p.unit_cost * static_cast<double>(p.n_units);
    if (p.gemm) {
      scratch_floats += (n_tokens + block_tokens - 1) / block_tokens * w.cols * block_tokens;
    } else if (int8) {
      scratch_floats += (int8_gemv::activation_bytes(w.cols, n_tokens) + 63) / 64 * 16;
    } else if (bf16_dot) {
      scratch_floats += (bf16dot::padded_columns(w.cols) * n_tokens + 31) / 32 * 16;
    } else if (bf16_gemm_job) {
      scratch_floats += n_tokens * w.cols;
    } else if (p.four_bit) {
      scratch_floats += n_tokens * w.cols;
    }
  }
  // Pack the inputs of the GEMM jobs (tokens along the lanes), permute those of the 4-bit GEMV
  // jobs or quantize them to int8 (once per input shared by several jobs; see
  // run_int8_quantize_tasks), on the calling thread.
  float* xt = scratch_floats ? thread_scratch(0, scratch_floats) : nullptr;
  // The int8 quantizations, run after this loop (on all threads when there are many tokens).
  thread_local std::vector<Bf16PackTask> caller_pack_tasks;
  std::vector<Bf16PackTask>& pack_tasks = caller_pack_tasks;
  pack_tasks.clear();
  int64_t pack_floats = 0;
  thread_local std::vector<Int8QuantizeTask> caller_quantize_tasks;
  std::vector<Int8QuantizeTask>& quantize_tasks = caller_quantize_tasks;
  quantize_tasks.clear();
  int64_t quantize_tokens = 0;
  for (JobPlan& p : plans) {
    if (p.run == &run_rows_four_bit_int8) {
      const Weight& w = *p.job->w;
      const bool e2m1 = w.format != WeightFormat::kIq4nl16;  // the two code biases
      p.xq = nullptr;
      for (const JobPlan* q = plans.data(); q != &p && p.xq == nullptr; ++q) {
        if (q->run == &run_rows_four_bit_int8 && q->job->x == p.job->x &&
            q->job->n_tokens == p.job->n_tokens && q->job->w->cols == w.cols &&
            (q->job->w->format != WeightFormat::kIq4nl16) == e2m1) {
          p.xq = q->xq;
        }
      }
      if (p.xq == nullptr) {
        uint8_t* out = reinterpret_cast<uint8_t*>(xt);
        quantize_tasks.push_back({&w, p.job->x, p.job->n_tokens, out});
        quantize_tokens += p.job->n_tokens;
        p.xq = out;
        xt += (int8_gemv::activation_bytes(w.cols, p.job->n_tokens) + 63) / 64 * 16;
      }
      continue;
    }
    if (p.run == &run_rows_bf16_dot) {  // rounded once per input shared by several jobs
      const int64_t cols = p.job->w->cols, n_tokens = p.job->n_tokens;
      p.xb = nullptr;
      for (const JobPlan* q = plans.data(); q != &p && p.xb == nullptr; ++q) {
        if (q->run == &run_rows_bf16_dot && q->job->x == p.job->x && q->job->n_tokens == n_tokens &&
            q->job->w->cols == cols) {
          p.xb = q->xb;
        }
      }
      if (p.xb == nullptr) {
        uint16_t* out = reinterpret_cast<uint16_t*>(xt);
        bf16dot::round_activations(p.job->x, cols, n_tokens, out);
        p.xb = out;
        xt += (bf16dot::padded_columns(cols) * n_tokens + 31) / 32 * 16;
      }
      continue;
    }
    const int64_t cols = p.job->w->cols, n_tokens = p.job->n_tokens;
    if (p.run == &run_rows_bf16_gemm) {
      // Packed in token tiles (rounded to bf16 in that mode) once per input shared by jobs.
      for (const JobPlan* q = plans.data(); q != &p && p.x_tiles == nullptr; ++q) {
        if (q->run == &run_rows_bf16_gemm && q->job->x == p.job->x &&
            q->job->n_tokens == n_tokens && q->job->w->cols == cols) {
          p.x_tiles = q->x_tiles;
        }
      }
      if (p.x_tiles == nullptr) {
        pack_tasks.push_back({p.job->x, cols, n_tokens, use_bf16_activations(*p.job->w), xt});
        pack_floats += n_tokens * cols;
        p.x_tiles = xt;
        xt += n_tokens * cols;
      }
      continue;
    }
    const int64_t chunk = p.four_bit ? 8 * lanes : 0;
    const int64_t full = p.four_bit ? cols / chunk * chunk : 0;
    if (p.gemm) {
      p.xt = xt;
      for (int64_t t0 = 0; t0 < n_tokens; t0 += block_tokens) {
        pack_tokens(p.job->x, cols, t0, std::min(block_tokens, n_tokens - t0), block_tokens, chunk,
                    full, xt);
        xt += cols * block_tokens;
      }
    } else if (p.four_bit) {
      p.xp = xt;
      for (int64_t t = 0; t < n_tokens; ++t) {
        four_bit::permute_token(p.job->x + t * cols, cols, chunk, full, xt);
        xt += cols;
      }
    }
  }
  run_int8_quantize_tasks(quantize_tasks, quantize_tokens, pool);
  run_bf16_pack_tasks(pack_tasks, pack_floats, pool);
  // Thread k takes the units whose cumulative cost starts in [total * k / T, total * (k+1) / T):
  // contiguous rows, possibly spanning several jobs.
  const int n_threads = total_cost < kMinParallelCost ? 1 : pool.size();
  auto run_share = [&](int64_t k) {
    const double lo = total_cost * static_cast<double>(k) / n_threads;
    const double hi = total_cost * static_cast<double>(k + 1) / n_threads;
    double job_start = 0;
    for (const JobPlan& p : plans) {
      const double job_cost = p.unit_cost * static_cast<double>(p.n_units);
      const double job_end = job_start + job_cost;
      if (job_end > lo && job_start < hi) {
        // Units u with job_start + u * unit_cost in [lo, hi).
        auto first_unit_at = [&](double c) {
          if (c <= job_start) return int64_t{0};
          return std::min(p.n_units,
                          static_cast<int64_t>(std::ceil((c - job_start) / p.unit_cost)));
        };
        const int64_t u0 = first_unit_at(lo);
        const int64_t u1 = k + 1 == n_threads ? p.n_units : first_unit_at(hi);
        const int64_t rows = p.job->w->rows;
        if (u0 < u1) p.run(p, u0 * p.unit, std::min(rows, u1 * p.unit));
      }
      job_start = job_end;
    }
  };
  if (n_threads == 1) {
    run_share(0);
  } else {
    pool.run(n_threads, [&](int64_t k, int) { run_share(k); });
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace m2fp4
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
