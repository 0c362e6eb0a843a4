#include "engine/quantize_progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace m2fp4 {

ProgressDisplay::ProgressDisplay(std::FILE* out, bool enabled, double start_fraction)
    : out_(out),
      enabled_(enabled && out != nullptr),
      tty_(out != nullptr && isatty(fileno(out)) != 0),
      start_fraction_(start_fraction) {}

ProgressDisplay::~ProgressDisplay() {
  finish();
}

std::string ProgressDisplay::format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long s = std::lround(seconds);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof(buf), "%ldh%02ldm", s / 3600, (s / 60) % 60);
  } else if (s >= 60) {
    std::snprintf(buf, sizeof(buf), "%ldm%02lds", s / 60, s % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%lds", s);
  }
  return buf;
}

void ProgressDisplay::update(double fraction, const std::string& what, bool milestone) {
  if (!enabled_) return;
  fraction = std::clamp(fraction, 0.0, 1.0);
  const double elapsed = timer_.seconds();
  if (tty_ && !milestone && elapsed - last_draw_ < 0.2) return;
  if (!tty_ && !milestone) return;
  last_draw_ = elapsed;
  const double done_here = fraction - start_fraction_;
  const std::string eta =
      done_here > 1e-6 ? format_duration(elapsed * (1.0 - fraction) / done_here) : "?";
  if (tty_) {
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(fraction * kWidth);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.append(static_cast<size_t>(kWidth - filled), '.');
    std::fprintf(out_, "\r\033[K[%s] %3.0f%%  %s  ETA %s", bar.c_str(), 100.0 * fraction,
                 what.c_str(), eta.c_str());
    drawn_ = true;
  } else {
    std::fprintf(out_, "quantize: %3.0f%%  %s  (elapsed %s, ETA %s)\n", 100.0 * fraction,
                 what.c_str(), format_duration(elapsed).c_str(), eta.c_str());
  }
  std::fflush(out_);
}

void ProgressDisplay::finish() {
  if (enabled_ && tty_ && drawn_) {
    std::fprintf(out_, "\n");
    std::fflush(out_);
  }
  drawn_ = false;
}

}  // namespace m2fp4
