// safetensors files: the header parser over arbitrary file bytes. Whatever it accepts must be
// self-consistent (every tensor inside the data section, byte counts = dtype x shape, no
// overlaps); anything else must be an m2fp4::Error.
#include <cstddef>
#include <cstdint>
#include <span>

#include "base/error.h"
#include "fuzz_util.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace m2fp4;
  try {
    const SafetensorsHeader header =
        parse_safetensors_header({reinterpret_cast<const std::byte*>(data), size}, "fuzz");
    FUZZ_CHECK(header.data_offset >= 8 && header.data_offset <= size);
    const uint64_t data_bytes = size - header.data_offset;
    uint64_t previous_end = 0;
    for (const TensorInfo& t : header.tensors) {
      FUZZ_CHECK(t.begin <= t.end && t.end <= data_bytes);
      FUZZ_CHECK(t.nbytes() == tensor_nbytes(t.dtype, t.shape));
      FUZZ_CHECK(t.numel() >= 0);
      if (t.begin != t.end) {
        FUZZ_CHECK(t.begin >= previous_end);
        previous_end = t.end;
      }
      (void)shape_string(t.shape);
    }
  } catch (const Error&) {
  }
  return 0;
}
