// Nesting depth of JSON text, measured before parsing it. nlohmann's parser is iterative, but
// copying, comparing and dumping a parsed value recurse once per level, so a hostile file or
// request nested tens of thousands deep overflows the stack later, far from the parse. Input from
// files and requests is checked against kMaxJsonDepth first and refused with a clear error.
#pragma once

#include <cstddef>
#include <string_view>

#include "base/error.h"

namespace m2fp4 {

// Deeper than any real config.json, tokenizer.json, safetensors header or tool schema (they stay
// under 20), and shallow enough that every recursive walk over a parsed value is safe.
inline constexpr size_t kMaxJsonDepth = 512;

// The deepest nesting of arrays and objects in `text`, counted outside strings. Linear and
// allocation-free; it does not validate the text (the parser does that).
inline size_t json_nesting_depth(std::string_view text) {
  size_t depth = 0;
  size_t deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > deepest) deepest = depth;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

// Throws m2fp4::Error("WHAT: JSON nested N levels deep (limit L)") when `text` nests deeper
// than `limit`.
inline void check_json_depth(std::string_view text, std::string_view what,
                             size_t limit = kMaxJsonDepth) {
  const size_t depth = json_nesting_depth(text);
  M2_CHECK(depth <= limit, what, ": JSON nested ", depth, " levels deep (limit ", limit, ")");
}

}  // namespace m2fp4
