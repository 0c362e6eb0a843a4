// m2fp4 parse: streamed model output in, the OpenAI deltas the server would stream out.
//   stdin:  {"chunks": ["..", ..], "tools": [..] or null,
//            "reasoning_parser": "minimax_m2" | "minimax_m2_append_think" | "none",
//            "finish": "stop" | "length"}
//   stdout: {"deltas": [..], "finish_reason": "..", "message": {merged deltas}}
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/json_depth.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "text/parsers/output_parser.h"

namespace m2fp4::cli {
namespace {

struct ParseRequest {
  std::vector<std::string> chunks;
  OutputParserOptions options;
  std::string finish = "stop";
};

// Reads and checks the request; any problem is an m2fp4::Error naming it.
ParseRequest read_request(const std::string& text) {
  // Tools are copied and walked recursively below: a request nested tens of thousands deep
  // would overflow the stack there.
  check_json_depth(text, "stdin");
  const nlohmann::json in = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  M2_CHECK(!in.is_discarded(), "stdin is not valid JSON");
  M2_CHECK(in.is_object(), "stdin must be a JSON object with \"chunks\"");
  ParseRequest r;
  const auto chunks = in.find("chunks");
  M2_CHECK(chunks != in.end() && chunks->is_array(), "\"chunks\" must be an array of strings");
  for (const auto& c : *chunks) {
    M2_CHECK(c.is_string(), "\"chunks\" must be an array of strings");
    r.chunks.push_back(c.get<std::string>());
  }
  if (auto it = in.find("tools"); it != in.end()) {
    M2_CHECK(it->is_null() || it->is_array(), "\"tools\" must be an array or null");
    r.options.tools = *it;
    ToolSchemas check(*it);  // a malformed tool is a bad request, not a crash later
  }
  if (auto it = in.find("reasoning_parser"); it != in.end() && !it->is_null()) {
    M2_CHECK(it->is_string(), "\"reasoning_parser\" must be a string");
    r.options.reasoning = parse_reasoning_mode(it->get<std::string>());
  }
  if (auto it = in.find("finish"); it != in.end() && !it->is_null()) {
    M2_CHECK(it->is_string() && (*it == "stop" || *it == "length"),
             "\"finish\" must be \"stop\" or \"length\"");
    r.finish = it->get<std::string>();
  }
  return r;
}

}  // namespace

int cmd_parse(int argc, char** argv) {
  CLI::App app(
      "Parse streamed MiniMax-M2 output (JSON on stdin: chunks, tools, reasoning_parser, finish) "
      "into the OpenAI deltas the server would stream (JSON on stdout).",
      "m2fp4 parse");
  if (int rc = parse_args(app, argc, argv); rc >= 0) return rc;
  return run_guarded(app.get_name(), [&] {
    const std::string text{std::istreambuf_iterator<char>(std::cin),
                           std::istreambuf_iterator<char>()};
    ParseRequest request;
    try {
      request = read_request(text);
    } catch (const Error& e) {
      std::fprintf(stderr, "%s: error: %s\n", app.get_name().c_str(), e.what());
      return kUsageError;
    }
    OutputParser parser(std::move(request.options));
    nlohmann::ordered_json deltas = nlohmann::ordered_json::array();
    for (const std::string& chunk : request.chunks) {
      for (auto& d : parser.feed(chunk)) deltas.push_back(std::move(d));
    }
    for (auto& d : parser.finish(request.finish)) deltas.push_back(std::move(d));
    nlohmann::ordered_json message = merge_deltas({deltas.begin(), deltas.end()});
    nlohmann::ordered_json out = nlohmann::ordered_json::object();
    out["deltas"] = std::move(deltas);
    out["finish_reason"] = parser.finish_reason();
    out["message"] = std::move(message);
    const std::string dumped =
        out.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    std::fwrite(dumped.data(), 1, dumped.size(), stdout);
    std::fputc('\n', stdout);
    return 0;
  });
}

}  // namespace m2fp4::cli
