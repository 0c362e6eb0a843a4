#include "server/stop_strings.h"

#include <algorithm>

namespace m2fp4::server {

StopStringFilter::StopStringFilter(std::vector<std::string> stops, bool include_stop_in_output)
    : include_stop_(include_stop_in_output) {
  for (auto& s : stops) {
    if (s.empty()) continue;  // an empty stop string would end every output at once
    longest_ = std::max(longest_, s.size());
    stops_.push_back(std::move(s));
  }
}

StopStringFilter::Result StopStringFilter::feed(std::string_view piece) {
  Result r;
  if (stopped_) return r;
  if (stops_.empty()) {
    r.text.assign(piece);
    return r;
  }
  // Only the held text plus the new piece can contain a new match; the held text never
  // contains a whole stop string, so matches found here end inside the new piece.
  held_.append(piece);
  // The output ends where a stop string first completes (the earliest match end, as if the text
  // came one character at a time); of the matches ending there the longest wins.
  size_t best_end = std::string::npos;
  size_t best_len = 0;
  for (const auto& s : stops_) {
    const size_t at = held_.find(s);
    if (at == std::string::npos) continue;
    const size_t end = at + s.size();
    if (end < best_end || (end == best_end && s.size() > best_len)) {
      best_end = end;
      best_len = s.size();
    }
  }
  if (best_end != std::string::npos) {
    r.text = held_.substr(0, include_stop_ ? best_end : best_end - best_len);
    r.stopped = stopped_ = true;
    held_.clear();
    return r;
  }
  // Keep the longest suffix that is a proper prefix of some stop string.
  size_t keep = 0;
  const size_t max_keep = std::min(held_.size(), longest_ - 1);
  for (size_t k = max_keep; k > 0; --k) {
    const std::string_view tail = std::string_view(held_).substr(held_.size() - k);
    const bool prefix = std::any_of(stops_.begin(), stops_.end(), [&](const std::string& s) {
      return s.size() > k && std::string_view(s).substr(0, k) == tail;
    });
    if (prefix) {
      keep = k;
      break;
    }
  }
  r.text = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return r;
}

std::string StopStringFilter::finish() {
  std::string rest;
  rest.swap(held_);
  return rest;
}

}  // namespace m2fp4::server
