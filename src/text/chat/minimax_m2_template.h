// The chat template m2fp4 writes into the tokenizer_config.json of the tiny MiniMax-M2 models
// that `m2fp4 make-tiny` creates. It is the MiniMax-M2 template with the community fixes that
// llama.cpp ships (models/templates/unsloth-MiniMax-M2.jinja, Apache-2.0, Unsloth): the format of
// serving.md (c) - `]~!b[]~b]system` header, `<minimax:tool_call>` / `<invoke>` / `<parameter>`
// tool calls, reasoning kept only after the last user message, `]~b]ai\n<think>\n` generation
// prompt - with `.function.name`, `|items` and the split of `</think>` made portable.
// The text is byte-identical to ../shared/templates/minimax-m2.jinja (a unit test checks it) and
// is embedded so make-tiny works without the shared folder at run time.
#pragma once

#include <string>

namespace m2fp4 {

// The template source (Jinja), to be rendered with ChatTemplate (chat_template.h).
const std::string& minimax_m2_chat_template();

}  // namespace m2fp4
