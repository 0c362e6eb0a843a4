// m2fp4: one binary, many subcommands (commands.cc lists them).
#include <cstdio>
#include <cstring>
#include <string>

#include "cli/commands.h"

namespace {

void print_usage() {
  std::printf("usage: m2fp4 COMMAND [options]   (m2fp4 COMMAND --help for its options)\n\n");
  std::printf("MiniMax-M2 at 4-bit: quantize, serve, run, evaluate.\n\ncommands:\n");
  for (const auto& c : m2fp4::cli::commands()) std::printf("  %-12s %s\n", c.name, c.summary);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    print_usage();
    return m2fp4::cli::kUsageError;
  }
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    print_usage();
    return 0;
  }
  for (const auto& c : m2fp4::cli::commands()) {
    if (name == c.name) {
      std::string program = std::string("m2fp4 ") + c.name;
      argv[1] = program.data();
      return c.main(argc - 1, argv + 1);
    }
  }
  std::fprintf(stderr, "m2fp4: error: unknown command '%s' (m2fp4 --help lists them)\n",
               name.c_str());
  return m2fp4::cli::kUsageError;
}
