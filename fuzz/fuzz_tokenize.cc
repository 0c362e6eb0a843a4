// Encode/decode with a real tokenizer (shared/tokenizers/deepseek-v3 unless
// M2FP4_FUZZ_TOKENIZER names another folder). First input byte: options; the rest is text, or
// with bit 2 a list of little-endian ids. Invariants: invalid UTF-8 is an m2fp4::Error; valid
// text round-trips (decode(encode(text)) == text, unless M2FP4_FUZZ_ROUNDTRIP=0 for tokenizers
// whose normalizer changes text); streaming decode equals decode.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "fuzz_util.h"
#include "text/tokenizer/tokenizer.h"

namespace {

using namespace m2fp4;

std::unique_ptr<Tokenizer> g_tokenizer;
bool g_roundtrip = true;

void check_streaming(const Tokenizer& tokenizer, const std::vector<int32_t>& ids, bool skip) {
  const std::string decoded = tokenizer.decode(ids, skip);
  StreamingDecoder stream(tokenizer, skip);
  std::string streamed;
  for (int32_t id : ids) streamed += stream.feed(id);
  streamed += stream.flush();
  FUZZ_CHECK(streamed == decoded);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* dir = std::getenv("M2FP4_FUZZ_TOKENIZER");
  const std::string path =
      dir != nullptr ? std::string(dir) : std::string(M2FP4_SHARED_DIR) + "/tokenizers/deepseek-v3";
  g_tokenizer = std::make_unique<Tokenizer>(Tokenizer::load(path));
  const char* roundtrip = std::getenv("M2FP4_FUZZ_ROUNDTRIP");
  g_roundtrip = roundtrip == nullptr || std::strcmp(roundtrip, "0") != 0;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Tokenizer& tokenizer = *g_tokenizer;
  fuzz::ByteReader reader(data, size);
  const uint8_t options = reader.byte();
  const bool add_special = (options & 1) != 0;
  const bool skip_special = (options & 2) != 0;
  const std::string_view rest = reader.rest();
  if ((options & 4) != 0) {
    // Ids: any 32-bit value; those outside the vocabulary must be refused with an Error.
    std::vector<int32_t> ids;
    for (size_t i = 0; i + 4 <= rest.size(); i += 4) {
      int32_t id = 0;
      std::memcpy(&id, rest.data() + i, 4);
      if ((options & 8) != 0) id = static_cast<int32_t>(static_cast<uint32_t>(id) % 200000u);
      ids.push_back(id);
    }
    bool valid = true;
    for (int32_t id : ids) valid = valid && tokenizer.has_id(id);
    try {
      check_streaming(tokenizer, ids, skip_special);
      FUZZ_CHECK(valid);
    } catch (const Error&) {
      FUZZ_CHECK(!valid);
    }
    return 0;
  }
  std::vector<int32_t> ids;
  try {
    ids = tokenizer.encode(rest, add_special);
  } catch (const Error&) {
    return 0;  // invalid UTF-8
  }
  for (int32_t id : ids) FUZZ_CHECK(tokenizer.has_id(id));
  if (g_roundtrip && !add_special) FUZZ_CHECK(tokenizer.decode(ids) == rest);
  check_streaming(tokenizer, ids, skip_special);
  return 0;
}
