// Packing 4-bit codes two per byte (quant-formats.md §2.4, §3.2).
//
// Checkpoint order (modelopt, compressed-tensors, OCP, Hugging Face gpt-oss): along the row, even
// index in the low nibble: byte[j] = q[2j] | q[2j+1] << 4.
// ggml order (llama.cpp block_mxfp4 / block_iq4_nl): within a block of `block` codes the first
// half goes to the low nibbles, the second half to the high ones: byte[j] = q[j] | q[j+block/2]
// << 4.
#pragma once

#include <cstdint>
#include <span>

namespace m2fp4 {

// codes.size() must be even; packed.size() == codes.size() / 2. Codes' high bits are ignored.
void pack_nibbles(std::span<const uint8_t> codes, std::span<uint8_t> packed);
void unpack_nibbles(std::span<const uint8_t> packed, std::span<uint8_t> codes);

// ggml split-halves order; codes.size() must be a multiple of `block` (even).
void pack_nibbles_split_halves(std::span<const uint8_t> codes, int64_t block,
                               std::span<uint8_t> packed);
void unpack_nibbles_split_halves(std::span<const uint8_t> packed, int64_t block,
                                 std::span<uint8_t> codes);

}  // namespace m2fp4
