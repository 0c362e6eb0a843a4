#include "cli/commands.h"

namespace m2fp4::cli {

// Each subcommand lives in cmd_<name>.cc.
int cmd_make_tiny(int argc, char** argv);
int cmd_run(int argc, char** argv);
int cmd_inspect(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_parse(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_chat_template(int argc, char** argv);
int cmd_quantize(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_serve(int argc, char** argv);

const std::vector<Command>& commands() {
  static const std::vector<Command> kCommands = {
      {"make-tiny", "write a small random-weight MiniMax-M2 checkpoint", cmd_make_tiny},
      {"run", "generate from a checkpoint (token ids in, token ids out)", cmd_run},
      {"eval", "perplexity and KL divergence of a model against a reference", cmd_eval},
      {"quantize", "quantize a checkpoint to NVFP4 / MXFP4 / IQ4_NL x16, one layer at a time",
       cmd_quantize},
      {"serve", "OpenAI-compatible HTTP server (vLLM's flags; no model: the built-in tiny one)",
       cmd_serve},
      {"bench", "prefill and decode tok/s of checkpoints (llama-bench's interface)", cmd_bench},
      {"inspect", "summarise a checkpoint: config, tensors by role and format, bytes", cmd_inspect},
      {"tokenize", "text -> token ids and back with a tokenizer.json (--json, --file, --bench)",
       cmd_tokenize},
      {"parse", "model output chunks (JSON on stdin) -> the OpenAI deltas served", cmd_parse},
      {"chat-template", "render a chat template like transformers' apply_chat_template",
       cmd_chat_template},
  };
  return kCommands;
}

}  // namespace m2fp4::cli
