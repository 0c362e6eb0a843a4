// m2fp4 run: generate from a checkpoint on the command line.
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/file.h"
#include "base/thread_pool.h"
#include "base/timer.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "engine/sampler.h"
#include "model/minimax_m2.h"

namespace m2fp4::cli {
namespace {

std::vector<int32_t> parse_token_list(const std::string& text) {
  std::vector<int32_t> ids;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    M2_CHECK(used > 0 && item.find_first_not_of(" \t", used) == std::string::npos && v >= 0 &&
                 v <= INT32_MAX,
             "--tokens: '", item, "' is not a token id");
    ids.push_back(static_cast<int32_t>(v));
  }
  M2_CHECK(!ids.empty(), "--tokens: no token ids given");
  return ids;
}

}  // namespace

int cmd_run(int argc, char** argv) {
  CLI::App app("Generate from a MiniMax-M2 checkpoint.", "m2fp4 run");
  std::string model_dir, tokens_arg, dump_logits, load_mode = "read";
  int64_t max_tokens = 16, ctx_size = 0, top_k = 0;
  float temperature = 0.0f, top_p = 1.0f;
  uint64_t seed = 0;
  int threads = 0;
  bool ignore_eos = false;
  app.add_option("--model", model_dir, "checkpoint folder")->required();
  app.add_option("--tokens", tokens_arg, "prompt token ids, comma-separated")->required();
  app.add_option("--max-tokens", max_tokens, "tokens to generate (0: prompt only)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--temperature", temperature, "sampling temperature (0: greedy)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--top-k", top_k, "sample from the k most likely tokens (0: off)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--top-p", top_p, "nucleus sampling mass (1: off)")->check(CLI::Range(0.0, 1.0));
  app.add_option("--seed", seed, "sampling seed");
  app.add_option("--dump-logits", dump_logits,
                 "write float32 logits of every prompt position, [n_prompt_tokens, vocab]");
  app.add_option("--threads", threads, "worker threads (0: all cores)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--ctx-size", ctx_size, "context length (0: max_position_embeddings)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--load-mode", load_mode, "read (weights in memory) | mmap")
      ->check(CLI::IsMember({"read", "mmap"}));
  app.add_flag("--ignore-eos", ignore_eos, "keep generating past the end-of-sequence token");
  if (int rc = parse_args(app, argc, argv); rc >= 0) return rc;

  return run_guarded(app.get_name(), [&] {
    const std::vector<int32_t> prompt = parse_token_list(tokens_arg);
    Timer load_timer;
    auto model = LoadedModel::open(model_dir, parse_load_mode(load_mode));
    const ModelConfig& c = model->config;
    const double load_s = load_timer.seconds();
    int64_t context = ctx_size > 0
                          ? ctx_size
                          : (c.max_position_embeddings > 0 ? c.max_position_embeddings : 4096);
    M2_CHECK(static_cast<int64_t>(prompt.size()) <= context, "the prompt has ", prompt.size(),
             " tokens but the context is ", context);

    ThreadPool pool(threads);
    MiniMaxM2 net(c, model->weights, pool);
    KvCache cache(c, context);
    Sampler sampler(SamplingParams{temperature, top_k, top_p, seed});

    // Prefill: the whole prompt in one batch.
    Batch batch;
    const bool dump = !dump_logits.empty();
    for (size_t i = 0; i < prompt.size(); ++i) {
      batch.add(prompt[i], static_cast<int32_t>(i), 0, dump || i + 1 == prompt.size());
    }
    std::vector<float> logits;
    Timer prefill_timer;
    net.forward(batch, cache, logits);
    const double prefill_s = prefill_timer.seconds();
    if (dump) {
      write_file_atomic(dump_logits, std::string_view(reinterpret_cast<const char*>(logits.data()),
                                                      logits.size() * sizeof(float)));
    }
    const float* last = logits.data() + logits.size() - static_cast<size_t>(c.vocab_size);

    std::vector<int32_t> generated;
    Timer decode_timer;
    int64_t position = static_cast<int64_t>(prompt.size());
    std::vector<float> step_logits(last, last + c.vocab_size);
    while (static_cast<int64_t>(generated.size()) < max_tokens && position < context) {
      const int32_t next = sampler.sample(step_logits.data(), c.vocab_size);
      generated.push_back(next);
      if (!ignore_eos && c.eos_token_id >= 0 && next == c.eos_token_id) break;
      if (static_cast<int64_t>(generated.size()) == max_tokens) break;
      batch.clear();
      batch.add(next, static_cast<int32_t>(position), 0, true);
      net.forward(batch, cache, step_logits);
      ++position;
    }
    const double decode_s = decode_timer.seconds();

    std::fprintf(
        stderr, "load %.2f s | prefill %zu tokens %.1f tok/s | decode %zu tokens %.1f tok/s\n",
        load_s, prompt.size(), static_cast<double>(prompt.size()) / prefill_s, generated.size(),
        generated.size() > 1 ? static_cast<double>(generated.size() - 1) / decode_s : 0.0);
    std::string line;
    for (size_t i = 0; i < generated.size(); ++i) {
      line += (i ? "," : "") + std::to_string(generated[i]);
    }
    std::printf("%s\n", line.c_str());
    return 0;
  });
}

}  // namespace m2fp4::cli
