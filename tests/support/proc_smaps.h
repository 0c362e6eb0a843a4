// Reading /proc/self/smaps in tests: the fields of the mapping that holds an address (its
// resident size, its VmFlags) show what the kernel did with memory the code under test advised
// or released.
#pragma once

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

namespace m2fp4::test {

// The line starting with `field` (e.g. "Rss:", "VmFlags:") of the /proc/self/smaps mapping
// holding `address`; "" if there is none.
inline std::string smaps_line_of(const void* address, const std::string& field) {
  std::ifstream smaps("/proc/self/smaps");
  const uintptr_t a = reinterpret_cast<uintptr_t>(address);
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      inside = a >= lo && a < hi;
      continue;
    }
    if (inside && line.rfind(field, 0) == 0) return line;
  }
  return "";
}

}  // namespace m2fp4::test
