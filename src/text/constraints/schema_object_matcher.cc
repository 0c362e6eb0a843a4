#include "text/constraints/schema_object_matcher.h"

#include <algorithm>

#include "base/error.h"

namespace m2fp4 {
namespace {

bool is_ws(uint8_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

uint8_t type_bits(const std::string& t) {
  if (t == "object") return kJsonObject;
  if (t == "array") return kJsonArray;
  if (t == "string") return kJsonString;
  if (t == "number") return kJsonNumber | kJsonInteger;
  if (t == "integer") return kJsonInteger;
  if (t == "boolean") return kJsonBoolean;
  if (t == "null") return kJsonNull;
  return 0;
}

}  // namespace

uint8_t json_schema_types(const nlohmann::json& schema) {
  if (!schema.is_object() || !schema.contains("type")) return kJsonAny;
  const nlohmann::json& t = schema["type"];
  uint8_t bits = 0;
  auto add = [&](const nlohmann::json& name) {
    const uint8_t b = name.is_string() ? type_bits(name.get<std::string>()) : 0;
    M2_CHECK(b != 0, "unknown JSON schema type ", name.dump());
    bits |= b;
  };
  if (t.is_array()) {
    for (const auto& x : t) add(x);
  } else {
    add(t);
  }
  M2_CHECK(bits != 0, "empty JSON schema type list");
  return bits;
}

std::shared_ptr<const ObjectSchema> ObjectSchema::build(const nlohmann::json& schema) {
  if (!schema.is_object()) return nullptr;
  if (!(json_schema_types(schema) & kJsonObject)) return nullptr;
  const auto props = schema.find("properties");
  if (props == schema.end() || !props->is_object() || props->empty() ||
      props->size() > kMaxProperties) {
    return nullptr;
  }
  std::vector<std::pair<std::string, ObjectSchema::Property>> entries;
  for (auto it = props->begin(); it != props->end(); ++it) {
    ObjectSchema::Property p;
    const nlohmann::json& sub = it.value();
    std::vector<nlohmann::json> values;
    if (sub.is_object() && sub.contains("enum") && sub["enum"].is_array() && !sub["enum"].empty()) {
      values.assign(sub["enum"].begin(), sub["enum"].end());
    } else if (sub.is_object() && sub.contains("const")) {
      values.push_back(sub["const"]);
    }
    for (const auto& v : values) p.choices.push_back(v.dump());
    std::sort(p.choices.begin(), p.choices.end());
    p.choices.erase(std::unique(p.choices.begin(), p.choices.end()), p.choices.end());
    // Compact JSON texts are prefix-free except numbers (1 and 12): the matcher cannot tell where
    // such a value ends, so a list with a number that prefixes another is checked by type only.
    for (size_t i = 0; i + 1 < p.choices.size(); ++i) {
      if (p.choices[i + 1].compare(0, p.choices[i].size(), p.choices[i]) == 0) {
        p.choices.clear();
        break;
      }
    }
    p.types = json_schema_types(sub);
    // The key as it appears after its opening quote.
    const std::string quoted = nlohmann::json(it.key()).dump();
    entries.emplace_back(quoted.substr(1), std::move(p));
  }
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  auto out = std::make_shared<ObjectSchema>();
  for (auto& [key, p] : entries) {
    out->keys.push_back(key);
    out->properties.push_back(std::move(p));
  }
  if (auto r = schema.find("required"); r != schema.end() && r->is_array()) {
    for (const auto& name : *r) {
      if (!name.is_string()) continue;
      const std::string key = nlohmann::json(name).dump().substr(1);
      const auto it = std::lower_bound(out->keys.begin(), out->keys.end(), key);
      if (it != out->keys.end() && *it == key)
        out->required |= uint64_t{1} << (it - out->keys.begin());
    }
  }
  return out;
}

bool SchemaObjectMatcher::keys_left() const {
  const size_t n = s_->keys.size();
  const uint64_t all = n == 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1;
  return (used_ & all) != all;
}

bool SchemaObjectMatcher::whitespace(uint8_t) {
  if (ws_run_ >= JsonMatcher::kMaxWhitespaceRun) return false;
  ++ws_run_;
  return true;
}

// Narrows the candidates to those with `byte` at pos_ (they share their first pos_ bytes, so
// those bytes are sorted); keys must leave an unused candidate.
bool SchemaObjectMatcher::narrow(const std::vector<std::string>& list, uint8_t byte, bool keys) {
  auto at = [&](uint32_t i) {
    return pos_ < list[i].size() ? static_cast<int>(static_cast<uint8_t>(list[i][pos_])) : -1;
  };
  uint32_t a = lo_, b = hi_;
  while (a < b) {
    const uint32_t m = a + (b - a) / 2;
    if (at(m) < byte) {
      a = m + 1;
    } else {
      b = m;
    }
  }
  const uint32_t lo = a;
  b = hi_;
  while (a < b) {
    const uint32_t m = a + (b - a) / 2;
    if (at(m) <= byte) {
      a = m + 1;
    } else {
      b = m;
    }
  }
  const uint32_t hi = a;
  if (lo >= hi) return false;
  if (keys) {
    const uint64_t range =
        (hi == 64 ? ~uint64_t{0} : (uint64_t{1} << hi) - 1) & ~((uint64_t{1} << lo) - 1);
    if ((range & ~used_) == 0) return false;
  }
  lo_ = lo;
  hi_ = hi;
  ++pos_;
  return true;
}

bool SchemaObjectMatcher::after_value(uint8_t byte) {
  phase_ = Phase::kAfterValue;
  ws_run_ = 0;
  return feed(byte);
}

bool SchemaObjectMatcher::feed(uint8_t byte) {
  const bool ws = is_ws(byte);
  switch (phase_) {
    case Phase::kOpen:
      if (ws) return whitespace(byte);
      if (byte != '{') return false;
      phase_ = Phase::kFirstKey;
      ws_run_ = 0;
      return true;
    case Phase::kFirstKey:
    case Phase::kKey:
      if (ws) return whitespace(byte);
      if (byte == '}' && phase_ == Phase::kFirstKey && s_->required == 0) {
        phase_ = Phase::kDone;
        return true;
      }
      if (byte != '"') return false;
      phase_ = Phase::kKeyName;
      pos_ = 0;
      lo_ = 0;
      hi_ = static_cast<uint32_t>(s_->keys.size());
      return true;
    case Phase::kKeyName:
      if (!narrow(s_->keys, byte, true)) return false;
      if (s_->keys[lo_].size() == pos_) {  // keys end with '"': a complete one is unique
        key_ = static_cast<int32_t>(lo_);
        used_ |= uint64_t{1} << lo_;
        phase_ = Phase::kColon;
        ws_run_ = 0;
      }
      return true;
    case Phase::kColon:
      if (ws) return whitespace(byte);
      if (byte != ':') return false;
      phase_ = Phase::kValueStart;
      ws_run_ = 0;
      return true;
    case Phase::kValueStart: {
      if (ws) return whitespace(byte);
      const ObjectSchema::Property& p = s_->properties[key_];
      if (!p.choices.empty()) {
        phase_ = Phase::kChoice;
        pos_ = 0;
        lo_ = 0;
        hi_ = static_cast<uint32_t>(p.choices.size());
        return feed(byte);
      }
      phase_ = Phase::kValue;
      json_ = JsonMatcher(p.types);
      return json_.feed(byte);
    }
    case Phase::kChoice: {
      const std::vector<std::string>& list = s_->properties[key_].choices;
      if (pos_ > 0 && list[lo_].size() == pos_) return after_value(byte);  // a complete value
      return narrow(list, byte, false);
    }
    case Phase::kValue:
      if (json_.complete()) return after_value(byte);
      if (json_.may_end() && (ws || byte == ',' || byte == '}')) return after_value(byte);
      return json_.feed(byte);
    case Phase::kAfterValue:
      if (ws) return whitespace(byte);
      if (byte == ',' && keys_left()) {
        phase_ = Phase::kKey;
        ws_run_ = 0;
        return true;
      }
      if (byte == '}' && (s_->required & ~used_) == 0) {
        phase_ = Phase::kDone;
        return true;
      }
      return false;
    case Phase::kDone:
      return false;
  }
  return false;
}

}  // namespace m2fp4
