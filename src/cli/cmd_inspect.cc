// m2fp4 inspect: what is in a checkpoint folder.
#include <cstdio>
#include <map>
#include <string>
#include <tuple>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "io/checkpoint.h"
#include "model/config.h"
#include "model/minimax_m2.h"

namespace m2fp4::cli {
namespace {

// The role of a tensor in the MiniMax-M2 layout, from its name.
std::string tensor_role(const std::string& name, int64_t n_layers) {
  if (name.find("embed_tokens") != std::string::npos) return "embedding";
  if (name.rfind("lm_head", 0) == 0) return "lm_head";
  const std::string prefix = "model.layers.";
  if (name.rfind(prefix, 0) == 0) {
    const int64_t layer = std::stoll(name.substr(prefix.size()));
    if (layer >= n_layers) return "mtp (ignored)";
    if (name.find(".experts.") != std::string::npos) return "experts";
    if (name.find("block_sparse_moe.gate") != std::string::npos ||
        name.find("e_score_correction_bias") != std::string::npos) {
      return "router";
    }
    if (name.find("q_norm") != std::string::npos || name.find("k_norm") != std::string::npos) {
      return "qk_norm";
    }
    if (name.find("layernorm") != std::string::npos) return "norms";
    if (name.find("self_attn") != std::string::npos) return "attention";
  }
  if (name == "model.norm.weight") return "norms";
  return "other";
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000.0 && u < 4) {
    b /= 1000.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", b, units[u]);
  return buf;
}

// How each linear layer is stored, as the model loads it (4-bit layouts are recognised per
// module), and the bytes saved against BF16.
void print_linear_formats(const std::string& model_dir) {
  const auto model = LoadedModel::open(model_dir, LoadMode::kMmap);
  struct Totals {
    int64_t matrices = 0, params = 0, bytes = 0;
  };
  std::map<std::tuple<std::string, std::string>, Totals> groups;
  auto add = [&](const char* role, const Weight& w) {
    Totals& t = groups[{role, weight_format_name(w.format)}];
    t.matrices += 1;
    t.params += w.rows * w.cols;
    t.bytes += w.nbytes();
  };
  add("embedding", model->weights.embed_tokens);
  add("lm_head", model->weights.lm_head);
  for (const LayerWeights& L : model->weights.layers) {
    for (const Weight* w : {&L.q_proj, &L.k_proj, &L.v_proj, &L.o_proj}) add("attention", *w);
    add("router", L.router_gate);
    for (const ExpertWeights& e : L.experts) {
      for (const Weight* w : {&e.w1, &e.w3, &e.w2}) add("experts", *w);
    }
  }
  std::printf("\n%-12s %-13s %9s %15s %12s %8s %12s\n", "matrices", "format", "count", "params",
              "bytes", "bits/w", "saved vs bf16");
  int64_t bytes = 0, params = 0;
  for (const auto& [key, t] : groups) {
    std::printf("%-12s %-13s %9lld %15lld %12s %8.2f %12s\n", std::get<0>(key).c_str(),
                std::get<1>(key).c_str(), (long long)t.matrices, (long long)t.params,
                human_bytes(static_cast<double>(t.bytes)).c_str(),
                8.0 * static_cast<double>(t.bytes) / static_cast<double>(t.params),
                human_bytes(static_cast<double>(2 * t.params - t.bytes)).c_str());
    bytes += t.bytes;
    params += t.params;
  }
  std::printf("%-12s %-13s %9s %15lld %12s %8.2f %12s\n", "total", "", "", (long long)params,
              human_bytes(static_cast<double>(bytes)).c_str(),
              8.0 * static_cast<double>(bytes) / static_cast<double>(params),
              human_bytes(static_cast<double>(2 * params - bytes)).c_str());
  const int64_t active = model->weights.active_bytes_per_token(model->config);
  std::printf("read per decode token: %s\n", human_bytes(static_cast<double>(active)).c_str());
}

}  // namespace

int cmd_inspect(int argc, char** argv) {
  CLI::App app("Summarise a checkpoint: config, tensors by role and format, bytes.",
               "m2fp4 inspect");
  std::string model_dir;
  app.add_option("--model", model_dir, "checkpoint folder")->required();
  if (int rc = parse_args(app, argc, argv); rc >= 0) return rc;
  return run_guarded(app.get_name(), [&] {
    const Checkpoint ckpt = Checkpoint::open(model_dir, LoadMode::kMmap);
    int64_t n_layers = INT64_MAX;
    if (ckpt.has_config()) {
      const ModelConfig c = ModelConfig::from_json(ckpt.config());
      n_layers = c.num_hidden_layers;
      std::printf("model: %s (%s)\n", c.architecture.c_str(), model_dir.c_str());
      std::printf("  layers %lld, hidden %lld, heads %lld/%lld x %lld (rotary %lld), vocab %lld\n",
                  (long long)c.num_hidden_layers, (long long)c.hidden_size,
                  (long long)c.num_attention_heads, (long long)c.num_key_value_heads,
                  (long long)c.head_dim, (long long)c.rotary_dim, (long long)c.vocab_size);
      std::printf("  experts %lld (top-%lld), expert intermediate %lld, context %lld\n",
                  (long long)c.num_local_experts, (long long)c.num_experts_per_tok,
                  (long long)c.intermediate_size, (long long)c.max_position_embeddings);
      std::printf("  quantization: %s\n",
                  c.quantization_config.is_null()
                      ? "none"
                      : c.quantization_config.value("quant_method", "?").c_str());
    }
    std::printf("files: %zu shard(s), %s\n", ckpt.shards().size(),
                human_bytes(static_cast<double>(ckpt.total_bytes())).c_str());

    struct Totals {
      int64_t tensors = 0, elements = 0;
      uint64_t bytes = 0;
    };
    std::map<std::tuple<std::string, std::string>, Totals> groups;
    Totals all;
    for (const std::string& name : ckpt.names()) {
      const TensorView t = ckpt.tensor(name);
      Totals& g = groups[{tensor_role(name, n_layers), std::string(dtype_name(t.dtype()))}];
      g.tensors += 1;
      g.elements += t.numel();
      g.bytes += t.nbytes();
      all.tensors += 1;
      all.elements += t.numel();
      all.bytes += t.nbytes();
    }
    std::printf("\n%-16s %-8s %9s %15s %12s\n", "role", "dtype", "tensors", "elements", "bytes");
    for (const auto& [key, g] : groups) {
      std::printf("%-16s %-8s %9lld %15lld %12s\n", std::get<0>(key).c_str(),
                  std::get<1>(key).c_str(), (long long)g.tensors, (long long)g.elements,
                  human_bytes(static_cast<double>(g.bytes)).c_str());
    }
    std::printf("%-16s %-8s %9lld %15lld %12s\n", "total", "", (long long)all.tensors,
                (long long)all.elements, human_bytes(static_cast<double>(all.bytes)).c_str());
    if (ckpt.has_config()) print_linear_formats(model_dir);
    return 0;
  });
}

}  // namespace m2fp4::cli
