// Errors: one exception type carrying a clear, user-facing message.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace m2fp4 {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Concatenates any streamable arguments into one string.
template <typename... Args>
std::string str_cat(Args&&... args) {
  std::ostringstream out;
  (out << ... << std::forward<Args>(args));
  return out.str();
}

template <typename... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(str_cat(std::forward<Args>(args)...));
}

}  // namespace m2fp4

// Checks a condition that depends on input data; throws m2fp4::Error with the message.
#define M2_CHECK(cond, ...)                  \
  do {                                       \
    if (!(cond)) ::m2fp4::fail(__VA_ARGS__); \
  } while (0)
