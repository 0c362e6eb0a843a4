// Helpers shared by the model tests.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

namespace m2fp4::testing {

inline std::vector<int32_t> read_token_file(const std::string& path) {
  std::ifstream in(path);
  std::vector<int32_t> ids;
  std::string item;
  while (std::getline(in, item, ',')) ids.push_back(std::stoi(item));
  return ids;
}

inline std::vector<float> read_f32_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<float> out(bytes.size() / 4);
  std::memcpy(out.data(), bytes.data(), out.size() * 4);
  return out;
}

// ||a - b|| / ||b||
inline double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

inline std::vector<int64_t> row_argmax(const std::vector<float>& m, int64_t cols) {
  std::vector<int64_t> out;
  for (size_t r = 0; r * cols < m.size(); ++r) {
    int64_t best = 0;
    for (int64_t c = 1; c < cols; ++c) {
      if (m[r * cols + c] > m[r * cols + best]) best = c;
    }
    out.push_back(best);
  }
  return out;
}

}  // namespace m2fp4::testing
