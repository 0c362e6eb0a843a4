// Helpers for the Jinja renderer tests. Expected strings in these tests were produced by
// rendering the same template with jinja2 configured as transformers configures it
// (transformers.utils.chat_template_utils._compile_jinja_template) and checked by hand.
#pragma once

#include <string>
#include <string_view>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "text/jinja/jinja_eval.h"

namespace m2fp4::jinja::testing {

// Renders `source` with the variables of the JSON object `context`.
inline std::string render(std::string_view source, std::string_view context = "{}") {
  const Value ctx = from_json(nlohmann::ordered_json::parse(context));
  return render_template(source, ctx.dict_data());
}

// The message of the m2fp4::Error that rendering raises ("" if it renders).
inline std::string render_error(std::string_view source, std::string_view context = "{}") {
  try {
    render(source, context);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace m2fp4::jinja::testing

// jinja2 raises for this template; m2fp4 must raise a template error too.
#define EXPECT_TEMPLATE_ERROR(...)                                                     \
  EXPECT_NE(::m2fp4::jinja::testing::render_error(__VA_ARGS__).find("template line "), \
            std::string::npos)                                                         \
      << "expected a template error"
