// Progress of a long run on stderr: a redrawn bar with ETA on a terminal, plain lines otherwise
// (logs, pipes), so that neither gets flooded.
#pragma once

#include <cstdio>
#include <string>

#include "base/timer.h"

namespace m2fp4 {

class ProgressDisplay {
 public:
  // `start_fraction`: work already done before this run (a resumed run); the ETA is estimated
  // from this run's rate only. enabled = false prints nothing.
  ProgressDisplay(std::FILE* out, bool enabled, double start_fraction = 0.0);
  ~ProgressDisplay();

  // fraction in [0, 1]; `what` describes the current step. A terminal redraws at most every
  // 0.2 s; plain output prints only when `milestone` is true (e.g. a layer finished).
  void update(double fraction, const std::string& what, bool milestone = false);
  // Ends the bar's line on a terminal.
  void finish();

  static std::string format_duration(double seconds);

 private:
  std::FILE* out_;
  bool enabled_;
  bool tty_;
  bool drawn_ = false;
  double start_fraction_;
  double last_draw_ = -1.0;
  Timer timer_;
};

}  // namespace m2fp4
