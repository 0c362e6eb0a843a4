// m2fp4 eval: perplexity and KL divergence of a (quantized) model against its reference.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/file.h"
#include "base/timer.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "engine/evaluate.h"
#include "model/cuda/cuda_model.h"
#include "text/tokenizer/tokenizer.h"

namespace m2fp4::cli {
namespace {

std::vector<int32_t> read_token_ids(const std::string& path) {
  const std::string text = read_text_file(path);
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] >= '0' && text[i] <= '9') {
      size_t j = i;
      int64_t v = 0;
      while (j < text.size() && text[j] >= '0' && text[j] <= '9' && v <= INT32_MAX) {
        v = v * 10 + (text[j++] - '0');
      }
      M2_CHECK(v <= INT32_MAX, path, ": token id too large");
      ids.push_back(static_cast<int32_t>(v));
      i = j;
    } else {
      M2_CHECK(
          text[i] == ',' || text[i] == ' ' || text[i] == '\n' || text[i] == '\r' || text[i] == '\t',
          path, ": expected comma-separated token ids, found '", text[i], "'");
      ++i;
    }
  }
  return ids;
}

}  // namespace

int cmd_eval(int argc, char** argv) {
  CLI::App app("Perplexity, KL divergence and top-1 agreement of a model against a reference.",
               "m2fp4 eval");
  std::string model_dir, reference_dir, text_file, tokens_file, tokenizer_dir;
  std::string load_mode = "read";
  EvalOptions options;
  int threads = 0;
  bool json_out = false;
  app.add_option("--model", model_dir, "the model to evaluate (e.g. quantized)")->required();
  app.add_option("--reference", reference_dir, "the reference model (e.g. BF16 source)")
      ->required();
  auto* text_opt = app.add_option("--text", text_file, "text file to evaluate on");
  app.add_option("--tokens", tokens_file, "file of comma-separated token ids instead of --text")
      ->excludes(text_opt);
  app.add_option("--tokenizer", tokenizer_dir,
                 "folder with tokenizer.json (default: the model's, else the reference's)");
  app.add_option("--ctx", options.context, "tokens per chunk")->check(CLI::Range(2, 1 << 20));
  app.add_option("--chunks", options.max_chunks, "evaluate at most this many chunks (0: all)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--threads", threads, "worker threads (0: all cores)")
      ->check(CLI::NonNegativeNumber);
  RuntimeFlags runtime;
  add_runtime_flags(app, runtime);
  app.add_option("--load-mode", load_mode, "read | mmap")->check(CLI::IsMember({"read", "mmap"}));
  app.add_flag("--json", json_out, "print one JSON object instead of a table");
  if (int rc = parse_args(app, argc, argv); rc >= 0) return rc;
  if (text_file.empty() && tokens_file.empty()) {
    std::fprintf(stderr, "%s: error: one of --text or --tokens is required\n",
                 app.get_name().c_str());
    return kUsageError;
  }

  return run_guarded(app.get_name(), [&] {
    std::vector<int32_t> tokens;
    if (!tokens_file.empty()) {
      tokens = read_token_ids(tokens_file);
    } else {
      if (tokenizer_dir.empty()) {
        tokenizer_dir =
            std::filesystem::exists(model_dir + "/tokenizer.json") ? model_dir : reference_dir;
      }
      M2_CHECK(std::filesystem::exists(tokenizer_dir + "/tokenizer.json"), "no tokenizer.json in ",
               tokenizer_dir, " (use --tokenizer DIR or --tokens FILE)");
      const Tokenizer tokenizer = Tokenizer::load(tokenizer_dir);
      tokens = tokenizer.encode(read_text_file(text_file));
    }
    const LoadMode mode = parse_load_mode(load_mode);
    auto model = LoadedModel::open(model_dir, mode);
    auto reference = LoadedModel::open(reference_dir, mode);
    ThreadPool pool(threads);
    options.model_kv_dtype = parse_kv_cache_dtype(runtime.kv_cache_dtype);
    MiniMaxM2 reference_net(reference->config, reference->weights, pool);
    Timer timer;
    DivergenceStats s;
    if (runtime.device == "cuda") {
      // The evaluated model on the GPU, the reference on the CPU: a batch at position 0 restarts
      // the device cache.
      CudaMiniMaxM2 gpu(model->config, model->weights, ModelOptions{runtime.w4a4},
                        CudaModelOptions{options.context, options.model_kv_dtype, true});
      const EvalForward forward = [&](const Batch& batch, std::vector<float>& logits) {
        gpu.forward(batch, logits);
      };
      s = evaluate_divergence(forward, model->config.vocab_size, reference_net, tokens, options);
    } else {
      MiniMaxM2 model_net(model->config, model->weights, pool, ModelOptions{runtime.w4a4});
      s = evaluate_divergence(model_net, reference_net, tokens, options);
    }
    const double seconds = timer.seconds();

    if (json_out) {
      nlohmann::json j = {{"model", model_dir},
                          {"reference", reference_dir},
                          {"tokens", s.count()},
                          {"ppl_model", s.model_perplexity()},
                          {"ppl_reference", s.reference_perplexity()},
                          {"kld_mean", s.mean_kld()},
                          {"kld_max", s.max_kld()},
                          {"kld_p99", s.kld_quantile(0.99)},
                          {"top1_agreement", s.top1_agreement()},
                          {"seconds", seconds}};
      std::printf("%s\n", j.dump().c_str());
      return 0;
    }
    std::printf("%-24s %s\n", "model", model_dir.c_str());
    std::printf("%-24s %s\n", "reference", reference_dir.c_str());
    std::printf("%-24s %lld\n", "predicted tokens", static_cast<long long>(s.count()));
    std::printf("%-24s %.4f\n", "PPL model", s.model_perplexity());
    std::printf("%-24s %.4f\n", "PPL reference", s.reference_perplexity());
    std::printf("%-24s %.6f\n", "KLD mean", s.mean_kld());
    std::printf("%-24s %.6f\n", "KLD p99", s.kld_quantile(0.99));
    std::printf("%-24s %.6f\n", "KLD max", s.max_kld());
    std::printf("%-24s %.2f%%\n", "top-1 agreement", 100.0 * s.top1_agreement());
    return 0;
  });
}

}  // namespace m2fp4::cli
