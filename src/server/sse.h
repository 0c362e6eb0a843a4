// Server-sent events framing as OpenAI streams it: `data: <json>\n\n` per chunk, then
// `data: [DONE]\n\n`.
#pragma once

#include <string>
#include <string_view>

namespace m2fp4::server {

inline std::string sse_data(std::string_view payload) {
  std::string frame;
  frame.reserve(payload.size() + 8);
  frame += "data: ";
  frame += payload;
  frame += "\n\n";
  return frame;
}

inline std::string sse_done() {
  return "data: [DONE]\n\n";
}

}  // namespace m2fp4::server
