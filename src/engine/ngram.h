// ngram speculative drafting (vLLM's "ngram" method, serving.md): the longest n in
// [min_n, max_n] such that the sequence's last n tokens occurred earlier; the earliest such
// occurrence wins; the draft is the up to k tokens that followed it.
#pragma once

#include <cstdint>
#include <vector>

namespace m2fp4 {

std::vector<int32_t> ngram_draft(const std::vector<int32_t>& tokens, int64_t min_n, int64_t max_n,
                                 int64_t k);

}  // namespace m2fp4
