// The subcommands of the m2fp4 binary. Each takes the arguments after its name
// (argv[0] is "m2fp4 NAME") and returns the process exit code.
#pragma once

#include <string>
#include <vector>

namespace m2fp4::cli {

struct Command {
  const char* name;
  const char* summary;
  int (*main)(int argc, char** argv);
};

// Every subcommand, in the order `m2fp4 --help` lists them (commands.cc).
const std::vector<Command>& commands();

// Exit code for a bad argument or bad input file (after one line on stderr).
constexpr int kUsageError = 2;

}  // namespace m2fp4::cli
