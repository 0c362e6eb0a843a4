#include "cli/cli_util.h"

#include <cstdio>
#include <exception>

#include "base/error.h"
#include "cli/commands.h"
#include "kernels/cpu/matmul4_int8.h"
#include "kernels/cpu/matmul_bf16dot.h"

namespace m2fp4::cli {

int parse_args(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const CLI::CallForAllHelp&) {
    std::fputs(app.help("", CLI::AppFormatMode::All).c_str(), stdout);
    return 0;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: error: %s\n", app.get_name().c_str(), e.what());
    return kUsageError;
  }
  return -1;
}

void add_runtime_flags(CLI::App& app, RuntimeFlags& flags) {
  app.add_option("--kv-cache-dtype", flags.kv_cache_dtype,
                 "auto (f32) | fp8 | fp8_e4m3: E4M3 cache with the checkpoint's k/v scales")
      ->check(CLI::IsMember({"auto", "fp8", "fp8_e4m3"}));
  app.add_flag("--w4a4", flags.w4a4,
               "NVFP4 W4A4 emulation: quantize activations with the calibrated input scales");
  app.add_option("--w4-activations", flags.w4_activations,
                 "f32 | int8: 4-bit decode (GEMV) with f32 activations, or rounded to int8 per 32 "
                 "like llama.cpp (faster; default int8, or $M2FP4_W4_ACTIVATIONS)")
      ->check(CLI::IsMember({"f32", "int8"}))
      ->each([](const std::string& name) {
        set_four_bit_activations(parse_four_bit_activations(name.c_str()));
      });
  app.add_option("--bf16-activations", flags.bf16_activations,
                 "f32 | bf16: BF16 and FP8 weights with f32 activations, or rounded to bf16 for "
                 "vdpbf16ps like llama.cpp (faster; default bf16, or $M2FP4_BF16_ACTIVATIONS)")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->each([](const std::string& name) {
        set_bf16_activations(parse_bf16_activations(name.c_str()));
      });
  app.add_option("--device", flags.device,
                 "cpu | cuda: run the model on the first CUDA device (needs a CUDA build)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
}

int run_guarded(const std::string& command, const std::function<int()>& body) {
  try {
    return body();
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: error: %s\n", command.c_str(), e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", command.c_str(), e.what());
    return 1;
  }
}

}  // namespace m2fp4::cli
