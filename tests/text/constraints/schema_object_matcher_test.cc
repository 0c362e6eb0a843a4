// The flat object-schema matcher: hand-checked acceptances and refusal offsets, and random walks
// whose completed documents are checked against the schema independently (nlohmann parses them;
// keys, required, enum and types are compared by hand).
#include "text/constraints/schema_object_matcher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"

namespace m2fp4 {
namespace {

const nlohmann::json& schema() {
  static const nlohmann::json s = nlohmann::json::parse(R"({
    "type": "object",
    "properties": {
      "answer": {"enum": ["yes", "no", null]},
      "n": {"type": "integer"},
      "note": {"type": ["string", "null"]},
      "tags": {"type": "array"},
      "unit": {"const": "km"},
      "caf\u00e9": {"type": "boolean"}
    },
    "required": ["answer", "n"]})");
  return s;
}

size_t taken(const ObjectSchema& s, const std::string& text, bool* complete = nullptr) {
  SchemaObjectMatcher m(&s);
  for (size_t i = 0; i < text.size(); ++i) {
    if (!m.feed(static_cast<uint8_t>(text[i]))) return i;
  }
  if (complete) *complete = m.complete();
  return text.size();
}

TEST(SchemaObjectMatcher, AcceptsDocumentsOfTheSchema) {
  const auto s = ObjectSchema::build(schema());
  ASSERT_TRUE(s);
  for (const std::string text :
       {R"({"answer": "yes", "n": 3})", R"( {"n":-12,"answer":null,"note":"x","tags":[1,{}]})",
        "{\n  \"caf\xc3\xa9\": true,\n  \"answer\": \"no\",\n  \"n\": 0,\n  \"unit\": \"km\"\n}"}) {
    bool complete = false;
    EXPECT_EQ(taken(*s, text, &complete), text.size()) << text;
    EXPECT_TRUE(complete) << text;
    EXPECT_TRUE(nlohmann::json::accept(text));
  }
}

TEST(SchemaObjectMatcher, RefusesAtTheFirstImpossibleByte) {
  const auto s = ObjectSchema::build(schema());
  const std::string a = R"({"answer": "yes")";
  const std::vector<std::pair<std::string, size_t>> cases = {
      {R"([1])", 0},
      {R"({})", 1},                          // answer and n are required
      {R"({"answers": 1})", 8},              // unknown key
      {R"({"answer": "maybe"})", 12},        // not in the enum
      {a + R"(, "n": 1.5})", a.size() + 8},  // an integer
      {a + R"(, "n": "1"})", a.size() + 7},
      {a + R"(, "answer": "no"})", a.size() + 3},  // given twice ("a" is only answer)
      {a + "}", a.size()},                         // n is required
      {a + R"(, "n": 1} )", a.size() + 9},         // nothing after the object
      {a + R"(, "unit": "m")", a.size() + 11},     // const
      {a + R"(, "note": 5)", a.size() + 10},
  };
  for (const auto& [text, expected] : cases) EXPECT_EQ(taken(*s, text), expected) << text;
}

TEST(SchemaObjectMatcher, OnlyFlatObjectSchemasAreBuilt) {
  EXPECT_FALSE(ObjectSchema::build(nlohmann::json::parse(R"({"type": "array"})")));
  EXPECT_FALSE(ObjectSchema::build(nlohmann::json::parse(R"({"type": "object"})")));
  EXPECT_TRUE(ObjectSchema::build(nlohmann::json::parse(R"({"properties": {"a": {}}})")));
  EXPECT_THROW(
      ObjectSchema::build(nlohmann::json::parse(R"({"properties": {"a": {"type": "date"}}})")),
      Error);
  EXPECT_EQ(json_schema_types(nlohmann::json::parse(R"({"type": ["integer", "null"]})")),
            kJsonInteger | kJsonNull);
}

bool type_ok(const nlohmann::json& v, const std::vector<std::string>& types) {
  for (const auto& t : types) {
    if ((t == "string" && v.is_string()) || (t == "null" && v.is_null()) ||
        (t == "integer" && v.is_number_integer()) || (t == "array" && v.is_array()) ||
        (t == "boolean" && v.is_boolean())) {
      return true;
    }
  }
  return false;
}

TEST(SchemaObjectMatcher, RandomWalksGiveDocumentsOfTheSchema) {
  const auto s = ObjectSchema::build(schema());
  std::mt19937 rng(9);
  int completed = 0;
  for (int walk = 0; walk < 300; ++walk) {
    SchemaObjectMatcher m(s.get());
    std::string text;
    for (int step = 0; step < 600 && !m.complete(); ++step) {
      std::vector<uint8_t> ok;
      for (int b = 0; b < 256; ++b) {
        SchemaObjectMatcher probe = m;
        if (probe.feed(static_cast<uint8_t>(b))) ok.push_back(static_cast<uint8_t>(b));
      }
      ASSERT_FALSE(ok.empty()) << "dead end after '" << text << "'";
      uint8_t b = ok[rng() % ok.size()];
      for (uint8_t pref : {'}', ']', '"', ','}) {
        if (rng() % 3 == 0 && std::find(ok.begin(), ok.end(), pref) != ok.end()) b = pref;
      }
      ASSERT_TRUE(m.feed(b));
      text += static_cast<char>(b);
    }
    if (!m.complete()) continue;
    ++completed;
    const nlohmann::json doc = nlohmann::json::parse(text, nullptr, false);
    ASSERT_FALSE(doc.is_discarded()) << text;
    ASSERT_TRUE(doc.is_object()) << text;
    EXPECT_TRUE(doc.contains("answer") && doc.contains("n")) << text;
    for (const auto& [key, v] : doc.items()) {
      if (key == "answer") {
        EXPECT_TRUE(v == "yes" || v == "no" || v.is_null()) << text;
      } else if (key == "n") {
        EXPECT_TRUE(v.is_number_integer()) << text;
      } else if (key == "note") {
        EXPECT_TRUE(type_ok(v, {"string", "null"})) << text;
      } else if (key == "tags") {
        EXPECT_TRUE(v.is_array()) << text;
      } else if (key == "unit") {
        EXPECT_EQ(v, "km") << text;
      } else {
        EXPECT_EQ(key, "caf\xc3\xa9") << text;
        EXPECT_TRUE(v.is_boolean()) << text;
      }
    }
  }
  EXPECT_GT(completed, 50);
}

}  // namespace
}  // namespace m2fp4
