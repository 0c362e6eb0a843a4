#include "server/stop_strings.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

namespace m2fp4::server {
namespace {

// The reference, from the whole text: the output ends where a stop string first completes
// (earliest match end; the longest match ending there), before it unless `include`.
std::string reference_cut(const std::string& text, const std::vector<std::string>& stops,
                          bool include, bool* stopped) {
  for (size_t end = 1; end <= text.size(); ++end) {
    size_t len = 0;
    for (const auto& s : stops) {
      if (!s.empty() && s.size() <= end && text.compare(end - s.size(), s.size(), s) == 0) {
        len = std::max(len, s.size());
      }
    }
    if (len > 0) {
      *stopped = true;
      return text.substr(0, include ? end : end - len);
    }
  }
  *stopped = false;
  return text;
}

std::string run_split(const std::string& text, const std::vector<std::string>& stops, bool include,
                      const std::vector<size_t>& cuts, bool* stopped) {
  StopStringFilter f(stops, include);
  std::string out;
  size_t prev = 0;
  *stopped = false;
  for (size_t i = 0; i <= cuts.size(); ++i) {
    const size_t end = i < cuts.size() ? cuts[i] : text.size();
    auto r = f.feed(std::string_view(text).substr(prev, end - prev));
    out += r.text;
    prev = end;
    if (r.stopped) {
      *stopped = true;
      return out;
    }
  }
  out += f.finish();
  return out;
}

TEST(StopStringFilter, SplitAcrossPiecesNeverLeaks) {
  const std::string text =
      "Hello wor"
      "ld, the END is near";
  StopStringFilter f({"END"}, false);
  auto a = f.feed("the E");
  EXPECT_EQ(a.text, "the ");  // "E" may start END: held back
  EXPECT_FALSE(a.stopped);
  auto b = f.feed("N");
  EXPECT_EQ(b.text, "");
  auto c = f.feed("D and more");
  EXPECT_TRUE(c.stopped);
  EXPECT_EQ(c.text, "");
  EXPECT_EQ(f.feed("x").text, "");
}

TEST(StopStringFilter, FalseStartIsReleased) {
  StopStringFilter f({"END"}, false);
  EXPECT_EQ(f.feed("E").text, "");
  EXPECT_EQ(f.feed("N").text, "");
  EXPECT_EQ(f.feed("X").text, "ENX");
  EXPECT_EQ(f.finish(), "");
}

TEST(StopStringFilter, IncludeStopString) {
  StopStringFilter f({"</a>"}, true);
  auto r = f.feed("x</a>y");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "x</a>");
}

TEST(StopStringFilter, NoStopsPassesThrough) {
  StopStringFilter f({}, false);
  EXPECT_EQ(f.feed("abc").text, "abc");
  EXPECT_EQ(f.finish(), "");
}

// Every split of random texts over a small alphabet gives the reference cut.
TEST(StopStringFilter, RandomSplitsMatchReference) {
  std::mt19937 rng(7);
  const std::string alphabet = "ab\xC3\xA9 ";
  auto random_string = [&](size_t n) {
    std::string s;
    for (size_t i = 0; i < n; ++i) s += alphabet[rng() % alphabet.size()];
    return s;
  };
  for (int trial = 0; trial < 3000; ++trial) {
    const std::string text = random_string(rng() % 24);
    std::vector<std::string> stops;
    const int n_stops = static_cast<int>(rng() % 3);
    for (int i = 0; i < n_stops; ++i) stops.push_back(random_string(1 + rng() % 4));
    const bool include = rng() % 2;
    std::vector<size_t> cuts;
    for (size_t i = 1; i < text.size(); ++i) {
      if (rng() % 3 == 0) cuts.push_back(i);
    }
    bool want_stopped = false, got_stopped = false;
    const std::string want = reference_cut(text, stops, include, &want_stopped);
    const std::string got = run_split(text, stops, include, cuts, &got_stopped);
    ASSERT_EQ(got, want) << "text '" << text << "' trial " << trial;
    ASSERT_EQ(got_stopped, want_stopped);
  }
}

}  // namespace
}  // namespace m2fp4::server
