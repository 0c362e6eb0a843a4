// The byte-level JSON matcher against nlohmann::json::accept (an independent RFC 8259 parser)
// on a corpus, on every prefix, on random mutations and on random valid documents, plus
// hand-checked offsets where invalid text must be refused.
#include "text/constraints/json_matcher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace m2fp4 {
namespace {

// How many bytes the matcher takes before refusing one (s.size() if none).
size_t accepted_bytes(const std::string& s, uint8_t types = kJsonAny) {
  JsonMatcher m(types);
  for (size_t i = 0; i < s.size(); ++i) {
    if (!m.feed(static_cast<uint8_t>(s[i]))) return i;
  }
  return s.size();
}

// The matcher's verdict on a whole text: every byte taken and the document may end there.
bool matcher_accepts(const std::string& s, uint8_t types = kJsonAny) {
  JsonMatcher m(types);
  for (char c : s) {
    if (!m.feed(static_cast<uint8_t>(c))) return false;
  }
  return m.may_end();
}

// nlohmann's verdict, except that it refuses numbers too large for a double (error 406), which
// RFC 8259's grammar allows (and Python's json reads as inf): those count as valid here.
bool nlohmann_accepts(const std::string& s) {
  if (nlohmann::json::accept(s)) return true;
  try {
    const nlohmann::json parsed = nlohmann::json::parse(s);
    return parsed.is_discarded();  // not reached: accept() said no
  } catch (const nlohmann::json::out_of_range& e) {
    return e.id == 406;
  } catch (const nlohmann::json::exception&) {
  }
  return false;
}

bool ends_in_space(const std::string& s) {
  return !s.empty() &&
         (s.back() == ' ' || s.back() == '\n' || s.back() == '\t' || s.back() == '\r');
}

const std::vector<std::string>& valid_corpus() {
  static const std::vector<std::string> corpus = {
      "{}",
      "[]",
      "0",
      "-0",
      "12",
      "-12.5e+3",
      "1E9",
      "0.001",
      "true",
      "false",
      "null",
      "\"\"",
      "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"",
      "\"\\u00e9\\u20AC\\ud83d\\ude00\"",
      "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"",
      "{\"a\": 1, \"b\": [true, false, null], \"c\": {\"d\": \"e\"}}",
      " {\"a\":[1,2,{\"b\":[]}]}",
      "[[[[[]]]]]",
      "{\n  \"key\": [\n    1,\n    2\n  ]\n}",
      "[1,-2,3.25,4e-2,5E+1]",
      "{\"\":\"\"}",
      "[\"\\u0000\"]",
  };
  return corpus;
}

// Invalid texts and the number of bytes a prefix-exact matcher takes before refusing.
const std::vector<std::pair<std::string, size_t>>& invalid_corpus() {
  static const std::vector<std::pair<std::string, size_t>> corpus = {
      {"{,}", 1},
      {"[1,]", 3},
      {"{\"a\" 1}", 5},
      {"{\"a\":}", 5},
      {"01", 1},
      {"-a", 1},
      {"1.", 2},  // a prefix: may not end
      {"1.e3", 2},
      {"1e", 2},
      {"tru", 3},
      {"trux", 3},
      {"nul1", 3},
      {"\"a\nb\"", 2},
      {"\"\\x\"", 2},
      {"\"\\u12g4\"", 5},
      {"\"\\udc00\"", 4},           // a lone low surrogate
      {"\"\\ud800x\"", 7},          // a high surrogate without its low half
      {"\"\\ud800\\u0041\"", 10},   // ... followed by a non-surrogate
      {"\"\xc0\x80\"", 1},          // overlong
      {"\"\xed\xa0\x80\"", 2},      // an encoded surrogate
      {"\"\xf4\x90\x80\x80\"", 2},  // past U+10FFFF
      {"\"\x80\"", 1},
      {"[1}", 2},
      {"{\"a\":1]", 6},
      {"{} x", 2},  // nothing follows the top-level value
      {"{}{}", 2},
      {"'a'", 0},
      {"[1 2]", 3},
  };
  return corpus;
}

TEST(JsonMatcher, AcceptsTheValidCorpusByteByByteAsNlohmannDoes) {
  for (const std::string& s : valid_corpus()) {
    ASSERT_TRUE(nlohmann::json::accept(s)) << s;
    EXPECT_EQ(accepted_bytes(s), s.size()) << s;
    EXPECT_TRUE(matcher_accepts(s)) << s;
    // Every prefix is taken; it may end exactly where nlohmann accepts it as a whole.
    for (size_t k = 0; k < s.size(); ++k) {
      const std::string p = s.substr(0, k);
      if (ends_in_space(p)) continue;
      EXPECT_EQ(matcher_accepts(p), nlohmann::json::accept(p)) << "prefix '" << p << "'";
    }
  }
}

TEST(JsonMatcher, RefusesInvalidTextAtTheFirstImpossibleByte) {
  for (const auto& [s, taken] : invalid_corpus()) {
    EXPECT_FALSE(nlohmann::json::accept(s)) << s;
    EXPECT_FALSE(matcher_accepts(s)) << s;
    EXPECT_EQ(accepted_bytes(s), taken) << s;
  }
}

TEST(JsonMatcher, TopLevelTypes) {
  EXPECT_TRUE(matcher_accepts("{\"a\": 1}", kJsonObject));
  EXPECT_EQ(accepted_bytes("[1]", kJsonObject), 0u);
  EXPECT_EQ(accepted_bytes("  \"x\"", kJsonObject), 2u);
  EXPECT_TRUE(matcher_accepts("[1]", kJsonArray));
  EXPECT_TRUE(matcher_accepts("-12", kJsonInteger));
  EXPECT_EQ(accepted_bytes("1.5", kJsonInteger), 1u);
  EXPECT_TRUE(matcher_accepts("1.5", kJsonNumber));
  EXPECT_TRUE(matcher_accepts("false", kJsonBoolean));
  EXPECT_EQ(accepted_bytes("null", kJsonBoolean), 0u);
  EXPECT_TRUE(matcher_accepts("null", kJsonNull | kJsonString));
  EXPECT_TRUE(matcher_accepts("\"s\"", kJsonNull | kJsonString));
  // Nested values are free whatever the top-level type.
  EXPECT_TRUE(matcher_accepts("{\"a\": [1.5, \"x\", null]}", kJsonObject));
}

TEST(JsonMatcher, CompleteOnlyWhenNothingMayFollow) {
  JsonMatcher m(kJsonAny);
  ASSERT_TRUE(m.feed("12"));
  EXPECT_FALSE(m.complete());
  EXPECT_TRUE(m.may_end());
  JsonMatcher o(kJsonObject);
  ASSERT_TRUE(o.feed("{\"a\": 1"));
  EXPECT_FALSE(o.may_end());
  ASSERT_TRUE(o.feed("}"));
  EXPECT_TRUE(o.complete());
  EXPECT_FALSE(o.feed(' '));
}

TEST(JsonMatcher, NestingAndWhitespaceLimits) {
  const std::string deep(JsonMatcher::kMaxDepth, '[');
  EXPECT_EQ(accepted_bytes(deep + "["), deep.size());
  EXPECT_TRUE(matcher_accepts(deep + std::string(JsonMatcher::kMaxDepth, ']')));
  const std::string spaces(JsonMatcher::kMaxWhitespaceRun, ' ');
  EXPECT_TRUE(matcher_accepts("[" + spaces + "1]"));
  EXPECT_EQ(accepted_bytes("[" + spaces + " 1]"), 1 + spaces.size());
  // Spaces inside strings are not whitespace runs.
  EXPECT_TRUE(matcher_accepts("\"" + spaces + spaces + "\""));
}

// Random edits of valid documents: the whole-text verdict equals nlohmann's.
TEST(JsonMatcher, MutationsAgreeWithNlohmann) {
  std::mt19937 rng(7);
  const std::string alphabet = "{}[]\",:0123456789.eE+-tfrulnsa \\/u\n\x80\xc3\xa9\xed";
  int valid = 0, invalid = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string s = valid_corpus()[rng() % valid_corpus().size()];
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = s.empty() ? 0 : rng() % (s.size() + 1);
      const char c = alphabet[rng() % alphabet.size()];
      switch (rng() % 3) {
        case 0:
          s.insert(s.begin() + static_cast<std::ptrdiff_t>(pos), c);
          break;
        case 1:
          if (pos < s.size()) s.erase(pos, 1);
          break;
        default:
          if (pos < s.size()) s[pos] = c;
      }
    }
    if (ends_in_space(s)) continue;
    const bool expected = nlohmann_accepts(s);
    ASSERT_EQ(matcher_accepts(s), expected) << "'" << s << "'";
    (expected ? valid : invalid) += 1;
  }
  EXPECT_GT(valid, 1000);
  EXPECT_GT(invalid, 1000);
}

nlohmann::json random_value(std::mt19937& rng, int depth) {
  const int kind = static_cast<int>(rng() % (depth > 4 ? 5 : 7));
  switch (kind) {
    case 0:
      return nullptr;
    case 1:
      return rng() % 2 == 0;
    case 2:
      return static_cast<int64_t>(rng()) - (1ll << 31);
    case 3:
      return std::ldexp(static_cast<double>(rng() % 100000) - 50000.0,
                        static_cast<int>(rng() % 40) - 20);
    case 4: {
      std::string s;
      const char* pieces[] = {"a", "\"", "\\", "\n", "\x01", "\xc3\xa9", "\xf0\x9f\x98\x80",
                              " ", "/"};
      for (int i = static_cast<int>(rng() % 6); i > 0; --i) s += pieces[rng() % 9];
      return s;
    }
    case 5: {
      nlohmann::json a = nlohmann::json::array();
      for (int i = static_cast<int>(rng() % 4); i > 0; --i)
        a.push_back(random_value(rng, depth + 1));
      return a;
    }
    default: {
      nlohmann::json o = nlohmann::json::object();
      for (int i = static_cast<int>(rng() % 4); i > 0; --i) {
        o["k" + std::to_string(rng() % 10)] = random_value(rng, depth + 1);
      }
      return o;
    }
  }
}

TEST(JsonMatcher, RandomDocumentsCompactAndIndented) {
  std::mt19937 rng(3);
  for (int i = 0; i < 2000; ++i) {
    const nlohmann::json v = random_value(rng, 0);
    for (const std::string& s : {v.dump(), v.dump(2)}) {
      ASSERT_TRUE(matcher_accepts(s)) << s;
    }
  }
}

// Walking random accepted bytes never reaches a state where no byte is accepted (a dead end
// would leave a constrained request with no token to sample), and what completes is JSON.
TEST(JsonMatcher, RandomWalksNeverDeadEnd) {
  std::mt19937 rng(11);
  int completed = 0;
  for (int walk = 0; walk < 300; ++walk) {
    JsonMatcher m(walk % 2 == 0 ? kJsonObject : kJsonAny);
    std::string text;
    for (int step = 0; step < 400 && !m.complete(); ++step) {
      std::vector<uint8_t> ok;
      for (int b = 0; b < 256; ++b) {
        JsonMatcher probe = m;
        if (probe.feed(static_cast<uint8_t>(b))) ok.push_back(static_cast<uint8_t>(b));
      }
      ASSERT_FALSE(ok.empty()) << "dead end after '" << text << "'";
      // Prefer structure so that walks close: brackets and quotes are likelier.
      uint8_t b = ok[rng() % ok.size()];
      for (uint8_t pref : {'}', ']', '"', ','}) {
        if (rng() % 3 == 0 && std::find(ok.begin(), ok.end(), pref) != ok.end()) b = pref;
      }
      ASSERT_TRUE(m.feed(b));
      text += static_cast<char>(b);
    }
    if (m.complete()) {
      ++completed;
      EXPECT_TRUE(nlohmann_accepts(text)) << text;
    }
  }
  EXPECT_GT(completed, 50);
}

}  // namespace
}  // namespace m2fp4
