#include "cli/commands.h"

namespace m2fp4::cli {

// Each subcommand lives in cmd_<name>.cc.
int cmd_make_tiny(int argc, char** argv);
int cmd_run(int argc, char** argv);
int cmd_inspect(int argc, char** argv);

const std::vector<Command>& commands() {
  static const std::vector<Command> kCommands = {
      {"make-tiny", "write a small random-weight MiniMax-M2 checkpoint", cmd_make_tiny},
      {"run", "generate from a checkpoint (token ids in, token ids out)", cmd_run},
      {"inspect", "summarise a checkpoint: config, tensors by role and format, bytes", cmd_inspect},
  };
  return kCommands;
}

}  // namespace m2fp4::cli
