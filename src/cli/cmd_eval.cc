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

// evaluate_divergence() with the evaluated model on the GPU (--device cuda) and the reference on
// the CPU: the same chunks, pieces and predicted positions.
DivergenceStats evaluate_divergence_cuda(CudaMiniMaxM2& model, MiniMaxM2& reference,
                                         const std::vector<int32_t>& tokens,
                                         const EvalOptions& options) {
  const int64_t vocab = reference.config().vocab_size;
  M2_CHECK(options.context >= 2, "eval context must be at least 2 tokens");
  M2_CHECK(tokens.size() >= 2, "eval needs at least 2 tokens of text");
  DivergenceStats stats;
  KvCache reference_cache(reference.config(), options.context);
  std::vector<float> model_logits, reference_logits;
  int64_t chunks = 0;
  for (size_t start = 0; start + 1 < tokens.size(); start += static_cast<size_t>(options.context)) {
    if (options.max_chunks > 0 && chunks == options.max_chunks) break;
    ++chunks;
    const size_t end = std::min(tokens.size(), start + static_cast<size_t>(options.context));
    reference_cache.drop(0);
    for (size_t piece = start; piece < end; piece += static_cast<size_t>(options.logits_batch)) {
      const size_t piece_end = std::min(end, piece + static_cast<size_t>(options.logits_batch));
      Batch batch;
      for (size_t i = piece; i < piece_end; ++i) {
        batch.add(tokens[i], static_cast<int32_t>(i - start), 0, i + 1 < end);
      }
      model.forward(batch, model_logits);  // position 0 restarts the device cache
      reference.forward(batch, reference_cache, reference_logits);
      const int64_t rows = static_cast<int64_t>(model_logits.size()) / vocab;
      for (int64_t r = 0; r < rows; ++r) {
        stats.add(model_logits.data() + r * vocab, reference_logits.data() + r * vocab, vocab,
                  tokens[piece + static_cast<size_t>(r) + 1]);
      }
    }
  }
  return stats;
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
    MiniMaxM2 model_net(model->config, model->weights, pool, ModelOptions{runtime.w4a4});
    options.model_kv_dtype = parse_kv_cache_dtype(runtime.kv_cache_dtype);
    MiniMaxM2 reference_net(reference->config, reference->weights, pool);
    Timer timer;
    DivergenceStats s;
    if (runtime.device == "cuda") {
      M2_CHECK(model->config.vocab_size == reference->config.vocab_size, "the model's vocabulary (",
               model->config.vocab_size, ") differs from the reference's (",
               reference->config.vocab_size, ")");
      CudaMiniMaxM2 gpu(model->config, model->weights, ModelOptions{runtime.w4a4},
                        CudaModelOptions{options.context, options.model_kv_dtype, true});
      s = evaluate_divergence_cuda(gpu, reference_net, tokens, options);
    } else {
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
