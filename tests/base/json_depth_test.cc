// json_nesting_depth / check_json_depth: the nesting limit applied before parsing JSON from files
// and requests.
#include "base/json_depth.h"

#include <gtest/gtest.h>

#include <string>

#include "base/error.h"

namespace m2fp4 {
namespace {

std::string nested_array(size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

TEST(JsonDepthTest, CountsNestingOutsideStrings) {
  EXPECT_EQ(json_nesting_depth(""), 0u);
  EXPECT_EQ(json_nesting_depth("42"), 0u);
  EXPECT_EQ(json_nesting_depth("[]"), 1u);
  EXPECT_EQ(json_nesting_depth(R"({"a": [1, {"b": []}], "c": {}})"), 4u);
  EXPECT_EQ(json_nesting_depth(R"(["[[[[", "\"[[[", "\\", [0]])"), 2u);
  EXPECT_EQ(json_nesting_depth("]]]][["), 2u);  // invalid JSON: still a bound
  EXPECT_NO_THROW(check_json_depth(nested_array(kMaxJsonDepth), "x"));
  try {
    check_json_depth(nested_array(kMaxJsonDepth + 1), "request");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("request: JSON nested 513 levels deep (limit 512)"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace m2fp4
