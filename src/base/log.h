// Minimal leveled logging to stderr.
#pragma once

#include <string>

namespace m2fp4 {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();
void log_message(LogLevel level, const std::string& message);

inline void log_info(const std::string& m) {
  log_message(LogLevel::kInfo, m);
}
inline void log_warn(const std::string& m) {
  log_message(LogLevel::kWarn, m);
}
inline void log_debug(const std::string& m) {
  log_message(LogLevel::kDebug, m);
}

}  // namespace m2fp4
