// config.json text -> ModelConfig. Accepted configs must survive to_json() -> from_json()
// unchanged and have widths whose products the model forms without overflow; anything else must
// be an m2fp4::Error.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/error.h"
#include "fuzz_util.h"
#include "model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace m2fp4;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const ModelConfig c = ModelConfig::from_json_text(text);
    FUZZ_CHECK(c.q_width() > 0 && c.kv_width() > 0);
    FUZZ_CHECK(c.rotary_dim <= c.head_dim && c.num_experts_per_tok <= c.num_local_experts);
    if (c.num_hidden_layers <= 4096) {  // to_json spells attn_type_list out per layer
      const nlohmann::json j = c.to_json();
      FUZZ_CHECK(ModelConfig::from_json(j).to_json() == j);
    }
  } catch (const Error&) {
  }
  return 0;
}
