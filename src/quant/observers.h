// Calibration statistics of one decoder layer (quant-formats.md §7): the "max" calibrator's
// running max |x| of every quantized Linear's input (q/k/v and w1/w3 observed once per fused
// group, since they share the input), the cached keys/values after RoPE, and how many tokens the
// router sent to each expert. Statistics of separate batches merge by max / sum, and serialise to
// JSON exactly (float32 values round-trip), for calibration checkpoints and resume.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

namespace m2fp4 {

// Inputs observed: fused groups fed by the same input share a site.
enum class InputSite : uint8_t { kQkv, kO, kRouter, kExpertW13, kExpertW2 };

struct LayerCalibration {
  int64_t layer = -1;
  int64_t tokens = 0;  // calibration tokens that went through the layer
  float qkv_input_amax = 0.0f;
  float o_input_amax = 0.0f;
  float router_input_amax = 0.0f;
  float k_amax = 0.0f;  // cached keys after k_norm and RoPE
  float v_amax = 0.0f;
  std::vector<float> w13_input_amax;   // per expert
  std::vector<float> w2_input_amax;    // per expert
  std::vector<int64_t> observed_rows;  // per expert: input rows its w13 saw (all tokens with
                                       // --all-experts)
  std::vector<int64_t> routed_tokens;  // per expert: tokens the router chose it for

  LayerCalibration() = default;
  LayerCalibration(int64_t layer, int64_t n_experts);
  int64_t n_experts() const { return static_cast<int64_t>(w13_input_amax.size()); }

  // x: n rows of `width` floats. Throws m2fp4::Error on NaN or infinity (modelopt's max
  // calibrator asserts the same). `expert` is used only for expert sites.
  void observe_input(InputSite site, int64_t expert, const float* x, int64_t n, int64_t width);
  void observe_kv(const float* k, const float* v, int64_t n, int64_t width);
  void observe_routing(const int64_t* counts, int64_t n_experts);
  void add_tokens(int64_t n) { tokens += n; }

  // Max of amaxes, sum of counts; both must describe the same layer and expert count.
  void merge(const LayerCalibration& other);

  nlohmann::json to_json() const;
  // Validates the layer, the expert count and every value; throws m2fp4::Error naming `what`.
  static LayerCalibration from_json(const nlohmann::json& json, int64_t layer, int64_t n_experts,
                                    const char* what);
};

// max |x| over n values; throws m2fp4::Error naming `what` on NaN or infinity.
float observed_amax(const float* x, int64_t n, const char* what);

// The per-expert input amaxes used for export (§7.2): experts whose w13 saw no calibration row
// get the layer max over the experts that did (modelopt's set_expert_quantizer_amax fallback);
// the others keep their own.
struct ExpertInputAmax {
  std::vector<float> w13;
  std::vector<float> w2;
  std::vector<int64_t> filled;  // experts that received the layer max
};
ExpertInputAmax resolve_expert_input_amax(const LayerCalibration& calibration);

// Experts whose input quantizers saw fewer than `min_tokens` calibration tokens: the tokens the
// router sent them, or every token with --all-experts (observed_rows).
std::vector<int64_t> starved_experts(const LayerCalibration& calibration, int64_t min_tokens);

}  // namespace m2fp4
