// Hooks into the forward pass for calibration: what each linear layer sees as input, and what
// goes into the KV cache. The quantizer records amaxes through these (quant-formats.md §7).
#pragma once

#include <cstdint>

namespace m2fp4 {

// The linear layers whose inputs are observed. Layers fed by the same input share a site:
// q/k/v (one fused qkv GEMM in vLLM) and w1/w3 (the fused w13).
enum class LinearSite : uint8_t { kQkv, kO, kRouter, kExpertW13, kExpertW2 };

class ForwardObserver {
 public:
  virtual ~ForwardObserver() = default;
  // x: n rows of `width` floats, the input of the site's linear layer(s) in `layer`;
  // expert is -1 except for expert sites.
  virtual void on_linear_input(int64_t layer, LinearSite site, int64_t expert, const float* x,
                               int64_t n, int64_t width) = 0;
  // Keys after k_norm and RoPE and values after v_proj, as written to the cache.
  virtual void on_kv(int64_t layer, const float* k, const float* v, int64_t n, int64_t width) = 0;
  // Tokens routed to each expert of a layer in this batch (counts[e], n_experts entries).
  virtual void on_routing(int64_t layer, const int64_t* counts, int64_t n_experts) = 0;
  // When true, every token also goes through every expert so every expert's input is observed
  // (the remedy for cold experts); the layer's output still mixes only the routed top-k.
  virtual bool all_experts() const { return false; }
  // When false, nothing reads this layer's expert outputs (quantize's last layer when no
  // recipe scale needs the experts' w2 inputs): the MoE block stops after routing and the w1/w3
  // input observations, and the residual stream it leaves lacks the experts' contribution.
  virtual bool wants_expert_outputs(int64_t /*layer*/) const { return true; }
};

}  // namespace m2fp4
