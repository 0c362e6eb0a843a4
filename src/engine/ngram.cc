#include "engine/ngram.h"

#include <algorithm>

namespace m2fp4 {

std::vector<int32_t> ngram_draft(const std::vector<int32_t>& tokens, int64_t min_n, int64_t max_n,
                                 int64_t k) {
  const int64_t len = static_cast<int64_t>(tokens.size());
  if (k <= 0 || min_n <= 0) return {};
  for (int64_t n = std::min(max_n, len - 1); n >= min_n; --n) {
    const int32_t* suffix = tokens.data() + len - n;
    // An earlier occurrence: starts at i, ends before the suffix's own last token.
    for (int64_t i = 0; i + n < len; ++i) {
      if (!std::equal(suffix, suffix + n, tokens.data() + i)) continue;
      const int64_t from = i + n;
      const int64_t to = std::min(len, from + k);
      return std::vector<int32_t>(tokens.begin() + from, tokens.begin() + to);
    }
  }
  return {};
}

}  // namespace m2fp4
