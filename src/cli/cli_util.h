// Shared plumbing for subcommands: CLI11 parsing that ends bad arguments with one line on stderr
// and exit code 2, and a guard that turns m2fp4::Error into a clear message.
#pragma once

#include <functional>
#include <string>

#include <CLI/CLI.hpp>

namespace m2fp4::cli {

// Parses argv with `app`. Returns -1 to continue, else the exit code to return now (0 after
// --help, kUsageError after printing "m2fp4 NAME: error: ..." for a bad argument).
int parse_args(CLI::App& app, int argc, char** argv);

// The options that shape how a model runs, shared by run, eval and serve: --kv-cache-dtype
// (vLLM's names), --w4a4, --w4-activations, --bf16-activations and --device.
struct RuntimeFlags {
  std::string kv_cache_dtype = "auto";
  bool w4a4 = false;
  std::string w4_activations;    // --w4-activations f32 | int8 (applied while parsing)
  std::string bf16_activations;  // --bf16-activations f32 | bf16 (applied while parsing)
  std::string device = "cpu";    // --device cpu | cuda
};
void add_runtime_flags(CLI::App& app, RuntimeFlags& flags);

// Runs body(); an m2fp4::Error (bad input file, bad value) or std::exception becomes one line on
// stderr and exit code 1 (2 for errors the body marks as usage errors).
int run_guarded(const std::string& command, const std::function<int()>& body);

}  // namespace m2fp4::cli
