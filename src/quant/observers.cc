#include "quant/observers.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "base/error.h"
#include "quant/block_kernels.h"

namespace m2fp4 {
namespace {

const char* site_name(InputSite site) {
  switch (site) {
    case InputSite::kQkv:
      return "q/k/v input";
    case InputSite::kO:
      return "o_proj input";
    case InputSite::kRouter:
      return "router input";
    case InputSite::kExpertW13:
      return "expert w1/w3 input";
    case InputSite::kExpertW2:
      return "expert w2 input";
  }
  return "?";
}

// float32 values are stored as JSON numbers (doubles): the float -> double -> text -> double ->
// float round trip is exact.
float json_amax(const nlohmann::json& j, const char* key, const char* what) {
  const auto it = j.find(key);
  M2_CHECK(it != j.end() && it->is_number(), what, ": '", key, "' is missing or not a number");
  const float v = static_cast<float>(it->get<double>());
  M2_CHECK(std::isfinite(v) && v >= 0.0f, what, ": '", key, "' must be finite and >= 0");
  return v;
}

template <typename T>
std::vector<T> json_vector(const nlohmann::json& j, const char* key, int64_t n, const char* what) {
  const auto it = j.find(key);
  M2_CHECK(it != j.end() && it->is_array() && static_cast<int64_t>(it->size()) == n, what, ": '",
           key, "' must be an array of ", n, " numbers");
  std::vector<T> out;
  out.reserve(static_cast<size_t>(n));
  for (const auto& v : *it) {
    M2_CHECK(v.is_number(), what, ": '", key, "' holds a non-number");
    if constexpr (std::is_same_v<T, float>) {
      const float f = static_cast<float>(v.get<double>());
      M2_CHECK(std::isfinite(f) && f >= 0.0f, what, ": '", key, "' holds a negative or NaN value");
      out.push_back(f);
    } else {
      M2_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0, what, ": '", key,
               "' holds a non-count");
      out.push_back(v.get<int64_t>());
    }
  }
  return out;
}

}  // namespace

float observed_amax(const float* x, int64_t n, const char* what) {
  // The SIMD kernel (the scalar max loop does not vectorize and ran on the calling thread for
  // every expert input: ~2.5% of a calibrated quantize run); NaN when any value is NaN or inf.
  const float amax = n > 0 ? quant_detail::abs_max(x, n) : 0.0f;
  M2_CHECK(!std::isnan(amax), "calibration: ", what, " holds NaN or infinity");
  return amax;
}

LayerCalibration::LayerCalibration(int64_t layer_index, int64_t n_experts)
    : layer(layer_index),
      w13_input_amax(static_cast<size_t>(n_experts), 0.0f),
      w2_input_amax(static_cast<size_t>(n_experts), 0.0f),
      observed_rows(static_cast<size_t>(n_experts), 0),
      routed_tokens(static_cast<size_t>(n_experts), 0) {}

void LayerCalibration::observe_input(InputSite site, int64_t expert, const float* x, int64_t n,
                                     int64_t width) {
  const float amax = observed_amax(x, n * width, site_name(site));
  const bool expert_site = site == InputSite::kExpertW13 || site == InputSite::kExpertW2;
  if (expert_site) {
    M2_CHECK(expert >= 0 && expert < n_experts(), "calibration: expert ", expert,
             " out of range [0, ", n_experts(), ")");
  }
  switch (site) {
    case InputSite::kQkv:
      qkv_input_amax = std::max(qkv_input_amax, amax);
      break;
    case InputSite::kO:
      o_input_amax = std::max(o_input_amax, amax);
      break;
    case InputSite::kRouter:
      router_input_amax = std::max(router_input_amax, amax);
      break;
    case InputSite::kExpertW13:
      w13_input_amax[expert] = std::max(w13_input_amax[expert], amax);
      observed_rows[expert] += n;
      break;
    case InputSite::kExpertW2:
      w2_input_amax[expert] = std::max(w2_input_amax[expert], amax);
      break;
  }
}

void LayerCalibration::observe_kv(const float* k, const float* v, int64_t n, int64_t width) {
  k_amax = std::max(k_amax, observed_amax(k, n * width, "cached keys"));
  v_amax = std::max(v_amax, observed_amax(v, n * width, "cached values"));
}

void LayerCalibration::observe_routing(const int64_t* counts, int64_t n) {
  M2_CHECK(n == n_experts(), "calibration: routing counts for ", n, " experts, expected ",
           n_experts());
  for (int64_t e = 0; e < n; ++e) routed_tokens[e] += counts[e];
}

void LayerCalibration::merge(const LayerCalibration& o) {
  M2_CHECK(o.layer == layer && o.n_experts() == n_experts(),
           "calibration: merging statistics of layer ", o.layer, " (", o.n_experts(),
           " experts) into layer ", layer, " (", n_experts(), " experts)");
  tokens += o.tokens;
  qkv_input_amax = std::max(qkv_input_amax, o.qkv_input_amax);
  o_input_amax = std::max(o_input_amax, o.o_input_amax);
  router_input_amax = std::max(router_input_amax, o.router_input_amax);
  k_amax = std::max(k_amax, o.k_amax);
  v_amax = std::max(v_amax, o.v_amax);
  for (int64_t e = 0; e < n_experts(); ++e) {
    w13_input_amax[e] = std::max(w13_input_amax[e], o.w13_input_amax[e]);
    w2_input_amax[e] = std::max(w2_input_amax[e], o.w2_input_amax[e]);
    observed_rows[e] += o.observed_rows[e];
    routed_tokens[e] += o.routed_tokens[e];
  }
}

nlohmann::json LayerCalibration::to_json() const {
  nlohmann::json j;
  j["layer"] = layer;
  j["tokens"] = tokens;
  j["qkv_input_amax"] = static_cast<double>(qkv_input_amax);
  j["o_input_amax"] = static_cast<double>(o_input_amax);
  j["router_input_amax"] = static_cast<double>(router_input_amax);
  j["k_amax"] = static_cast<double>(k_amax);
  j["v_amax"] = static_cast<double>(v_amax);
  nlohmann::json w13 = nlohmann::json::array(), w2 = nlohmann::json::array();
  for (float v : w13_input_amax) w13.push_back(static_cast<double>(v));
  for (float v : w2_input_amax) w2.push_back(static_cast<double>(v));
  j["w13_input_amax"] = std::move(w13);
  j["w2_input_amax"] = std::move(w2);
  j["observed_rows"] = observed_rows;
  j["routed_tokens"] = routed_tokens;
  return j;
}

LayerCalibration LayerCalibration::from_json(const nlohmann::json& j, int64_t layer_index,
                                             int64_t n_experts, const char* what) {
  M2_CHECK(j.is_object(), what, ": not a JSON object");
  M2_CHECK(j.contains("layer") && j["layer"].is_number_integer() &&
               j["layer"].get<int64_t>() == layer_index,
           what, ": statistics are not for layer ", layer_index);
  LayerCalibration c(layer_index, n_experts);
  M2_CHECK(
      j.contains("tokens") && j["tokens"].is_number_integer() && j["tokens"].get<int64_t>() >= 0,
      what, ": 'tokens' is missing or negative");
  c.tokens = j["tokens"].get<int64_t>();
  c.qkv_input_amax = json_amax(j, "qkv_input_amax", what);
  c.o_input_amax = json_amax(j, "o_input_amax", what);
  c.router_input_amax = json_amax(j, "router_input_amax", what);
  c.k_amax = json_amax(j, "k_amax", what);
  c.v_amax = json_amax(j, "v_amax", what);
  c.w13_input_amax = json_vector<float>(j, "w13_input_amax", n_experts, what);
  c.w2_input_amax = json_vector<float>(j, "w2_input_amax", n_experts, what);
  c.observed_rows = json_vector<int64_t>(j, "observed_rows", n_experts, what);
  c.routed_tokens = json_vector<int64_t>(j, "routed_tokens", n_experts, what);
  return c;
}

ExpertInputAmax resolve_expert_input_amax(const LayerCalibration& c) {
  ExpertInputAmax out;
  out.w13 = c.w13_input_amax;
  out.w2 = c.w2_input_amax;
  float w13_max = 0.0f, w2_max = 0.0f;
  for (int64_t e = 0; e < c.n_experts(); ++e) {
    if (c.observed_rows[e] == 0) continue;
    w13_max = std::max(w13_max, c.w13_input_amax[e]);
    w2_max = std::max(w2_max, c.w2_input_amax[e]);
  }
  for (int64_t e = 0; e < c.n_experts(); ++e) {
    if (c.observed_rows[e] != 0) continue;
    out.w13[e] = w13_max;
    out.w2[e] = w2_max;
    out.filled.push_back(e);
  }
  return out;
}

std::vector<int64_t> starved_experts(const LayerCalibration& c, int64_t min_tokens) {
  std::vector<int64_t> out;
  for (int64_t e = 0; e < c.n_experts(); ++e) {
    if (c.observed_rows[e] < min_tokens) out.push_back(e);
  }
  return out;
}

}  // namespace m2fp4
