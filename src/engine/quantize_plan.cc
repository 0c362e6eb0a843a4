#include "engine/quantize_plan.h"

#include <map>
#include <set>

#include "base/error.h"
#include "quant/export_layout.h"

namespace m2fp4 {

std::vector<TensorSpec> ExportPlan::specs() const {
  std::vector<TensorSpec> out;
  for (const ExportItem& item : items)
    out.insert(out.end(), item.outputs.begin(), item.outputs.end());
  return out;
}

QuantConfigInputs ExportPlan::config_inputs() const {
  QuantConfigInputs in;
  in.recipe = recipe;
  in.layout = layout;
  in.lm_head = lm_head;
  for (const LinearModule& m : modules) {
    (m.scheme == WeightScheme::kNone ? in.unquantized_modules : in.quantized_modules)
        .push_back(m.name);
  }
  return in;
}

int64_t ExportPlan::quantized_count() const {
  int64_t n = 0;
  for (const LinearModule& m : modules) n += m.scheme != WeightScheme::kNone;
  return n;
}

ExportPlan plan_export(const Checkpoint& ckpt, const ModelConfig& c, QuantRecipe recipe,
                       ExportLayout layout, const IgnorePatterns& ignore, WeightScheme lm_head) {
  check_recipe_layout(recipe, layout);
  ExportPlan plan;
  plan.recipe = recipe;
  plan.layout = layout;
  if (c.torch_dtype == "float32") {
    plan.model_dtype = DType::kF32;
  } else if (c.torch_dtype == "bfloat16") {
    plan.model_dtype = DType::kBF16;
  } else {
    fail("torch_dtype '", c.torch_dtype, "' is not supported (expected bfloat16 or float32)");
  }
  // compressed-tensors' observer works in the model dtype (§2.2): bf16 intermediates for a bf16
  // model, including an FP8 release (dequantized to bf16 first, §5).
  plan.ct_work_dtype = plan.model_dtype == DType::kBF16 ? WorkDtype::kBF16 : WorkDtype::kF32;
  plan.fp8_source = c.fp8.present;
  RecipeRules rules = recipe_rules(recipe);
  rules.lm_head = lm_head;
  plan.lm_head = lm_head;
  if (layout == ExportLayout::kModelopt && lm_head != WeightScheme::kNone) {
    const WeightScheme own = rules.experts;
    M2_CHECK(lm_head == own, "--lm-head ", scheme_name(lm_head),
             " in the modelopt layout: "
             "modelopt describes a checkpoint with one quant_algo (here ",
             scheme_name(own),
             "), so lm_head can only take that scheme there; use --format compressed-tensors, "
             "whose config groups give lm_head its own scheme");
  }

  std::set<std::string> used;
  auto use = [&](const std::string& name) {
    used.insert(name);
    plan.source_bytes += ckpt.tensor(name).nbytes();
  };
  auto copy = [&](const std::string& name, int64_t layer) {
    const TensorView t = ckpt.tensor(name);
    use(name);
    plan.items.push_back({ExportItemKind::kCopy, layer, name, -1, {{name, t.dtype(), t.shape()}}});
  };
  auto linear = [&](const std::string& name, LinearKind kind, int64_t layer, int64_t expert,
                    int64_t rows, int64_t cols, std::string group) {
    const std::string weight = name + ".weight";
    const TensorView t = ckpt.tensor(weight);
    M2_CHECK(t.shape() == std::vector<int64_t>({rows, cols}), "tensor ", weight, " has shape ",
             shape_string(t.shape()), ", expected [", rows, ", ", cols, "]");
    use(weight);
    if (ckpt.has(weight + "_scale_inv")) use(weight + "_scale_inv");
    LinearModule m;
    m.name = name;
    m.kind = kind;
    m.layer = layer;
    m.expert = expert;
    m.rows = rows;
    m.cols = cols;
    m.scheme = rules.scheme_for(kind);
    if (m.scheme != WeightScheme::kNone && ignore.matches(name)) m.scheme = WeightScheme::kNone;
    // lm_head's input is never calibrated: a 4-bit lm_head is weight-only.
    m.input_scale = m.scheme == WeightScheme::kNvfp4 && rules.static_input_scales &&
                    kind != LinearKind::kLmHead;
    m.fused_group = std::move(group);
    ExportItem item;
    item.layer = layer;
    item.source = weight;
    item.module = static_cast<int64_t>(plan.modules.size());
    if (m.scheme == WeightScheme::kNone) {
      item.kind = ExportItemKind::kModelDtype;
      item.outputs = {{weight, plan.model_dtype, {rows, cols}}};
    } else {
      item.kind = ExportItemKind::kQuantized;
      item.outputs = quantized_linear_specs(name, rows, cols, m.scheme, layout, m.input_scale);
    }
    plan.modules.push_back(std::move(m));
    plan.items.push_back(std::move(item));
  };

  const int64_t H = c.hidden_size, QW = c.q_width(), KW = c.kv_width(), I = c.intermediate_size;
  copy("model.embed_tokens.weight", -1);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    copy(p + "input_layernorm.weight", l);
    linear(p + "self_attn.q_proj", LinearKind::kAttentionQkv, l, -1, QW, H, p + "qkv");
    linear(p + "self_attn.k_proj", LinearKind::kAttentionQkv, l, -1, KW, H, p + "qkv");
    linear(p + "self_attn.v_proj", LinearKind::kAttentionQkv, l, -1, KW, H, p + "qkv");
    linear(p + "self_attn.o_proj", LinearKind::kAttentionO, l, -1, H, QW, "");
    if (c.use_qk_norm) {
      copy(p + "self_attn.q_norm.weight", l);
      copy(p + "self_attn.k_norm.weight", l);
    }
    if (rules.fp8_kv_scales) {
      plan.items.push_back({ExportItemKind::kKvScales,
                            l,
                            "",
                            -1,
                            {kv_scale_spec(l, 'k', layout, plan.model_dtype),
                             kv_scale_spec(l, 'v', layout, plan.model_dtype)}});
    }
    copy(p + "post_attention_layernorm.weight", l);
    const std::string moe = p + "block_sparse_moe.";
    linear(moe + "gate", LinearKind::kRouter, l, -1, c.num_local_experts, H, "");
    if (c.use_routing_bias) copy(moe + "e_score_correction_bias", l);
    for (int64_t e = 0; e < c.num_local_experts; ++e) {
      const std::string ep = moe + "experts." + std::to_string(e) + ".";
      const std::string w13 = ep + "w13";
      linear(ep + "w1", LinearKind::kExpertW13, l, e, I, H, w13);
      linear(ep + "w2", LinearKind::kExpertW2, l, e, H, I, "");
      linear(ep + "w3", LinearKind::kExpertW13, l, e, I, H, w13);
    }
  }
  copy("model.norm.weight", -1);
  if (ckpt.has("lm_head.weight")) {
    linear("lm_head", LinearKind::kLmHead, -1, -1, c.vocab_size, H, "");
  } else {
    M2_CHECK(c.tie_word_embeddings, "tensor lm_head.weight is missing");
  }

  // A fused group is quantized as a whole or not at all.
  std::map<std::string, WeightScheme> group_scheme;
  for (const LinearModule& m : plan.modules) {
    if (m.fused_group.empty()) continue;
    const auto [it, inserted] = group_scheme.emplace(m.fused_group, m.scheme);
    M2_CHECK(inserted || it->second == m.scheme, "--ignore selects ", m.name,
             " but not the other members of its fused group (q/k/v or w1/w3 run as one GEMM and "
             "must share one format): ignore all of ",
             m.fused_group.substr(0, m.fused_group.rfind('.') + 1),
             m.kind == LinearKind::kAttentionQkv ? "self_attn.{q,k,v}_proj" : "{w1,w3}",
             " or none");
  }
  for (const std::string& name : ckpt.names()) {
    if (!used.count(name)) plan.dropped.push_back(name);
  }
  return plan;
}

}  // namespace m2fp4
