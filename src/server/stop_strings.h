// Stop strings over streamed text: text is released as soon as no stop string can start in it,
// and the part that could still be the start of a stop string is held back, so a stop string
// split across two deltas is never half-sent (vLLM's semantics: the output ends before the stop
// string, or with it when include_stop_str_in_output is set). The cut is the same however the
// text is split: where a stop string first completes, the longest one ending there.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace m2fp4::server {

class StopStringFilter {
 public:
  StopStringFilter(std::vector<std::string> stops, bool include_stop_in_output);

  struct Result {
    std::string text;      // safe to send now
    bool stopped = false;  // a stop string completed: `text` is the last output
  };
  // The next decoded piece of output.
  Result feed(std::string_view piece);
  // End of output without a stop string: the held-back text.
  std::string finish();

  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  bool include_stop_;
  size_t longest_ = 0;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace m2fp4::server
