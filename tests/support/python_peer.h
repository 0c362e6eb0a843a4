// Test helper: runs the virtual environment's Python (M2FP4_PYTHON) on files in a temporary
// directory, so GoogleTests can compare C++ results against PyPI peers (ml_dtypes, numpy) and
// against the Python references kept beside the tests.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

namespace m2fp4::testing {

inline bool python_available() {
  return std::filesystem::exists(M2FP4_PYTHON);
}

// A fresh directory under the system temp dir, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "m2fp4-test-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

template <typename T>
void write_binary(const std::string& path, const std::vector<T>& values) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(values.data()),
            static_cast<std::streamsize>(values.size() * sizeof(T)));
  if (!out) throw std::runtime_error("cannot write " + path);
}

template <typename T>
std::vector<T> read_binary(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  if (bytes.size() % sizeof(T) != 0) throw std::runtime_error("truncated file " + path);
  std::vector<T> values(bytes.size() / sizeof(T));
  std::memcpy(values.data(), bytes.data(), bytes.size());
  return values;
}

inline std::string shell_quote(const std::string& arg) {
  std::string quoted = "'";
  for (char c : arg) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  return quoted + "'";
}

struct PythonResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs `M2FP4_PYTHON args...` with output captured into a file of `dir`.
inline PythonResult run_python(const TempDir& dir, const std::vector<std::string>& args) {
  const std::string log = dir.file("python.log");
  std::string command = shell_quote(M2FP4_PYTHON);
  for (const std::string& arg : args) command += " " + shell_quote(arg);
  command += " >" + shell_quote(log) + " 2>&1";
  PythonResult result;
  const int status = std::system(command.c_str());
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(log);
  result.output.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return result;
}

// Writes `script` into `dir` and runs it with the given arguments.
inline PythonResult run_python_script(const TempDir& dir, const std::string& script,
                                      const std::vector<std::string>& args) {
  const std::string path = dir.file("script.py");
  std::ofstream(path) << script;
  std::vector<std::string> full = {path};
  full.insert(full.end(), args.begin(), args.end());
  return run_python(dir, full);
}

}  // namespace m2fp4::testing
