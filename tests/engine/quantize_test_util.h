// Helpers shared by the `m2fp4 quantize` tests: a scratch folder per test case and the bytes of
// every file a run wrote.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

namespace m2fp4::test {

// <temp>/m2fp4-NAME-PID, absent when constructed (quantize creates its output folder itself)
// and removed with everything in it on destruction.
struct ScratchDir {
  std::filesystem::path path;
  explicit ScratchDir(const std::string& name)
      : path(std::filesystem::temp_directory_path() /
             ("m2fp4-" + name + "-" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path);
  }
  ~ScratchDir() { std::filesystem::remove_all(path); }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string str() const { return path.string(); }
};

// Every file of a folder, by name.
inline std::map<std::string, std::string> files_of(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    files[entry.path().filename().string()] = s.str();
  }
  return files;
}

}  // namespace m2fp4::test
