// Read bandwidth of this machine now (bench/bandwidth.h), for scripts that print it beside each
// figure (bench/side_by_side.sh).
//
//   build/bench/bandwidth_bench [--threads 2] [--repeats 3] [--mb 1024]
//
// Prints one number: GB/s (1e9 bytes per second), the best of the repeats.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "bandwidth.h"

int main(int argc, char** argv) {
  int threads = 2, repeats = 3;
  size_t mb = 1024;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const long v = std::strtol(argv[i + 1], nullptr, 10);
    if (k == "--threads" && v > 0) {
      threads = static_cast<int>(v);
    } else if (k == "--repeats" && v > 0) {
      repeats = static_cast<int>(v);
    } else if (k == "--mb" && v > 0) {
      mb = static_cast<size_t>(v);
    } else {
      std::fprintf(stderr, "bandwidth_bench: bad option %s %s\n", argv[i], argv[i + 1]);
      return 2;
    }
  }
  m2fp4::ThreadPool pool(threads);
  m2fp4::bench::BandwidthProbe probe(mb << 20);
  std::printf("%.1f\n", probe.read_gbps(pool, repeats));
  return probe.sink() == 42 ? 1 : 0;  // keeps the reads observable
}
