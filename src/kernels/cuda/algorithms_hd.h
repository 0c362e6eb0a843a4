// The per-thread algorithms of the CUDA kernels (routing, the stable sort of expert slots, the
// order experts are added back, the FP8 KV encode), written once for both compilers so the host
// tests run the exact code the device runs against the CPU scalar twins.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/cuda/launch_plan.h"
#include "kernels/cuda/weight_decode_hd.h"

namespace m2fp4::cuda {

M2FP4_HD float sigmoid(float x) {
  return 1.0f / (1.0f + expf(-x));
}

// silu(g) * u as scalar::silu_mul computes it.
M2FP4_HD float silu_mul_value(float g, float u) {
  return g / (1.0f + expf(-g)) * u;
}

// scalar::route_sigmoid_topk for one token: selection by score + bias, ties to the lower expert
// index, chosen sigmoid scores renormalised. top_k <= kMaxTopK.
M2FP4_HD void route_token(const float* logits, const float* bias, int64_t n_experts, int64_t top_k,
                          int32_t* ids, float* weights) {
  float total = 0.0f;
  for (int64_t j = 0; j < top_k; ++j) {
    int64_t best = -1;
    float best_choice = 0.0f;
    for (int64_t e = 0; e < n_experts; ++e) {
      bool taken = false;
      for (int64_t i = 0; i < j; ++i) taken = taken || ids[i] == e;
      if (taken) continue;
      const float choice = sigmoid(logits[e]) + (bias ? bias[e] : 0.0f);
      if (best < 0 || choice > best_choice) {
        best = e;
        best_choice = choice;
      }
    }
    ids[j] = static_cast<int32_t>(best);
    weights[j] = sigmoid(logits[best]);
    total += weights[j];
  }
  for (int64_t j = 0; j < top_k; ++j) weights[j] /= total;
}

// Stable counting sort of slots by expert (one thread): slot_of_pos / pos_of_slot [n_slots];
// tiles of at most kGemmTileTokens positions of one expert as (expert, first, count) triples;
// scratch [2 * n_experts].
M2FP4_HD void sort_slots(const int32_t* expert_ids, int64_t n_slots, int64_t n_experts,
                         int32_t* slot_of_pos, int32_t* pos_of_slot, int32_t* tiles,
                         int32_t* n_tiles, int32_t* scratch) {
  int32_t* count = scratch;
  int32_t* cursor = scratch + n_experts;
  for (int64_t e = 0; e < n_experts; ++e) count[e] = 0;
  for (int64_t s = 0; s < n_slots; ++s) ++count[expert_ids[s]];
  int32_t at = 0;
  int32_t tile = 0;
  for (int64_t e = 0; e < n_experts; ++e) {
    cursor[e] = at;
    for (int32_t first = at; first < at + count[e]; first += kGemmTileTokens) {
      const int32_t rest = at + count[e] - first;
      tiles[3 * tile] = static_cast<int32_t>(e);
      tiles[3 * tile + 1] = first;
      tiles[3 * tile + 2] = rest < kGemmTileTokens ? rest : kGemmTileTokens;
      ++tile;
    }
    at += count[e];
  }
  for (int64_t s = 0; s < n_slots; ++s) {
    const int32_t p = cursor[expert_ids[s]]++;
    slot_of_pos[p] = static_cast<int32_t>(s);
    pos_of_slot[s] = p;
  }
  *n_tiles = tile;
}

// The token's slots (0..top_k-1) in ascending expert order, as the CPU path adds expert outputs
// (experts in index order). Insertion sort; top_k <= kMaxTopK.
M2FP4_HD void combine_order(const int32_t* ids, int64_t top_k, int32_t* order) {
  for (int64_t j = 0; j < top_k; ++j) {
    int64_t i = j;
    while (i > 0 && ids[order[i - 1]] > ids[j]) {
      order[i] = order[i - 1];
      --i;
    }
    order[i] = static_cast<int32_t>(j);
  }
}

M2FP4_HD uint32_t f32_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

// numerics::f32_to_e4m3(value, kSaturate): round to nearest even, overflow and inf -> +-448,
// NaN -> NaN.
M2FP4_HD uint8_t e4m3_encode_satfinite(float value) {
  const uint32_t bits = f32_bits(value);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  const uint32_t a = bits & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<uint8_t>(sign | 0x7Fu);
  if (a > 0x43E80000u) return static_cast<uint8_t>(sign | 0x7Eu);
  if (a < 0x3C800000u) {
    const float mag = bits_to_f32(a) * 512.0f;
    const uint32_t whole = static_cast<uint32_t>(mag);
    const float frac = mag - static_cast<float>(whole);
    uint32_t r = whole;
    if (frac > 0.5f || (frac == 0.5f && (whole & 1u))) r += 1;
    return static_cast<uint8_t>(sign | r);
  }
  const uint32_t q = a >> 20;
  const uint32_t rem = a & 0xFFFFFu;
  const uint32_t up = (rem > 0x80000u || (rem == 0x80000u && (q & 1u))) ? 1u : 0u;
  return static_cast<uint8_t>(sign | (q + up - (120u << 3)));
}

}  // namespace m2fp4::cuda
