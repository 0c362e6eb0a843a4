// tokenizer.json text -> Tokenizer. A tokenizer that loads must encode and decode a few fixed
// texts without crashing, produce only ids it can decode, and stream-decode exactly as it
// decodes; anything else must be an m2fp4::Error.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "fuzz_util.h"
#include "text/tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace m2fp4;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // An optional tokenizer_config.json follows a NUL byte.
  const size_t nul = text.find('\0');
  const std::string_view json = text.substr(0, nul);
  const std::string_view config = nul == std::string_view::npos ? "" : text.substr(nul + 1);
  try {
    const Tokenizer tokenizer = Tokenizer::from_json_text(json, config);
    for (const char* sample : {"Hello world! 123 4567", "  leading  and trailing  ",
                               "caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80",
                               "<|endoftext|><s></s>[CLS]", "a\nb\r\n\tc"}) {
      for (bool special : {false, true}) {
        std::vector<int32_t> ids;
        try {
          ids = tokenizer.encode(sample, special);
        } catch (const Error&) {
          continue;  // e.g. a Split regex that hits PCRE2's match limit
        }
        bool decodable = true;
        for (int32_t id : ids) decodable = decodable && tokenizer.has_id(id);
        // The model and added tokens give decodable ids; a post-processor's ids are not checked
        // against the vocabulary (as in Hugging Face).
        FUZZ_CHECK(decodable || special);
        if (!decodable) continue;
        const std::string decoded = tokenizer.decode(ids);
        StreamingDecoder stream(tokenizer);
        std::string streamed;
        for (int32_t id : ids) streamed += stream.feed(id);
        streamed += stream.flush();
        FUZZ_CHECK(streamed == decoded);
      }
    }
  } catch (const Error&) {
  }
  return 0;
}
