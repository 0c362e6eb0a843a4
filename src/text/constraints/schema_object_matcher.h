// A byte-at-a-time matcher for a JSON object that follows a flat JSON schema (response_format
// json_schema with top-level "properties"):
// - keys are the schema's properties (written as JSON strings in their plain escaping), each at
//   most once; properties not in the schema are refused, whatever additionalProperties says;
// - `}` only once every `required` property (that `properties` declares) has been given;
// - each value follows its property's schema at the top level: `enum` / `const` -> exactly one of
//   the listed values (as compact JSON); else `type` (a name or a list) -> a JSON value of one of
//   those types; else any JSON value. Deeper levels (a nested object's own properties) are only
//   checked to be JSON.
// Whitespace between tokens is allowed in runs of at most JsonMatcher::kMaxWhitespaceRun bytes;
// nothing may follow the closing `}`.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "text/constraints/json_matcher.h"

namespace m2fp4 {

struct ObjectSchema {
  struct Property {
    uint8_t types = kJsonAny;          // the value's JsonTypeBits (when no choices)
    std::vector<std::string> choices;  // enum / const values as compact JSON, sorted (empty: none)
  };
  std::vector<std::string> keys;     // sorted: the property name's JSON escaping + closing '"'
  std::vector<Property> properties;  // by keys index
  uint64_t required = 0;             // bits of keys indices

  static constexpr size_t kMaxProperties = 64;

  // The flat form of `schema`, or null when it is not an object schema with 1..64 properties
  // (the caller then checks the top-level type only). A property whose schema has an unknown
  // "type" is an m2fp4::Error.
  static std::shared_ptr<const ObjectSchema> build(const nlohmann::json& schema);
};

// The JsonTypeBits of a JSON schema's "type" (a name or a list of names); kJsonAny without one.
// An unknown type name is an m2fp4::Error.
uint8_t json_schema_types(const nlohmann::json& schema);

class SchemaObjectMatcher {
 public:
  explicit SchemaObjectMatcher(const ObjectSchema* schema) : s_(schema) {}

  // Appends one byte; false if no valid document starts with the bytes so far plus it.
  bool feed(uint8_t byte);
  bool feed(std::string_view bytes) {
    for (char c : bytes) {
      if (!feed(static_cast<uint8_t>(c))) return false;
    }
    return true;
  }
  bool complete() const { return phase_ == Phase::kDone; }
  bool may_end() const { return complete(); }
  bool operator==(const SchemaObjectMatcher&) const = default;

 private:
  enum class Phase : uint8_t {
    kOpen,        // whitespace, then '{'
    kFirstKey,    // after '{': a key's '"' or '}'
    kKey,         // after ',': a key's '"'
    kKeyName,     // inside a key (choice over keys)
    kColon,       // after a key
    kValueStart,  // after ':': whitespace, then the value
    kChoice,      // an enum / const value (choice over its texts)
    kValue,       // a JSON value (json_)
    kAfterValue,  // ',' or '}'
    kDone,
  };

  bool whitespace(uint8_t byte);
  bool narrow(const std::vector<std::string>& list, uint8_t byte, bool keys);
  bool after_value(uint8_t byte);
  bool keys_left() const;

  const ObjectSchema* s_;
  Phase phase_ = Phase::kOpen;
  uint8_t ws_run_ = 0;
  uint16_t pos_ = 0;          // bytes of the key / choice matched
  uint32_t lo_ = 0, hi_ = 0;  // candidates [lo_, hi_) sharing those bytes
  int32_t key_ = -1;          // the property being given
  uint64_t used_ = 0;
  JsonMatcher json_;
};

}  // namespace m2fp4
