// m2fp4 make-tiny: a random-weight MiniMax-M2 checkpoint of the real architecture, scaled down.
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "base/file.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "model/random_checkpoint.h"
#include "text/chat/minimax_m2_template.h"
#include "text/tokenizer/bpe_trainer.h"
#include "text/tokenizer/tokenizer.h"

namespace m2fp4::cli {

int cmd_make_tiny(int argc, char** argv) {
  CLI::App app("Write a small random-weight MiniMax-M2 checkpoint (Hugging Face layout).",
               "m2fp4 make-tiny");
  std::string out, preset = "tiny", dtype = "bf16";
  uint64_t seed = 1;
  double max_shard_mb = 1024.0;
  app.add_option("--out", out, "output folder")->required();
  app.add_option("--preset", preset, "tiny | bench | wide (real widths, 4 layers, ~6 GB BF16)")
      ->check(CLI::IsMember({"tiny", "bench", "wide"}));
  app.add_option("--seed", seed, "random seed");
  app.add_option("--dtype", dtype, "bf16 | f32 | fp8 (official MiniMax FP8 block layout)")
      ->check(CLI::IsMember({"bf16", "f32", "fp8"}));
  app.add_option("--max-shard-size", max_shard_mb,
                 "largest safetensors shard in MB; bigger checkpoints get an index (0: one file)");
  if (int rc = parse_args(app, argc, argv); rc >= 0) return rc;
  return run_guarded(app.get_name(), [&] {
    ModelConfig config = preset_config(preset);
    // A byte-level BPE trained on built-in text with MiniMax's special tokens and the MiniMax-M2
    // chat template, so the tiny model runs end to end like the real one.
    const std::string tokenizer_json = train_byte_level_bpe_tokenizer_json(
        builtin_training_corpus(), static_cast<int>(config.vocab_size), minimax_added_tokens());
    const std::string tokenizer_config = tiny_tokenizer_config_json(minimax_m2_chat_template());
    const Tokenizer tokenizer = Tokenizer::from_json_text(tokenizer_json, tokenizer_config);
    config.bos_token_id = tokenizer.config().bos_id;
    config.eos_token_id = tokenizer.config().eos_id;
    write_random_checkpoint(out, config, seed, parse_checkpoint_dtype(dtype),
                            static_cast<uint64_t>(max_shard_mb * 1e6));
    write_file_atomic(out + "/tokenizer.json", tokenizer_json);
    write_file_atomic(out + "/tokenizer_config.json", tokenizer_config);
    const nlohmann::json generation = {{"bos_token_id", config.bos_token_id},
                                       {"eos_token_id", config.eos_token_id}};
    write_file_atomic(out + "/generation_config.json", generation.dump(2) + "\n");
    std::printf("wrote %s preset (%s, seed %llu) to %s\n", preset.c_str(), dtype.c_str(),
                static_cast<unsigned long long>(seed), out.c_str());
    return 0;
  });
}

}  // namespace m2fp4::cli
