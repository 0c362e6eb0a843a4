// MiniMax-M2 tool calls, incrementally (serving.md (b), "What m2fp4 does" 3-8):
//
//   <minimax:tool_call>
//   <invoke name="get_weather">
//   <parameter name="location">Paris</parameter>
//   </invoke>
//   </minimax:tool_call>
//
// A block starts only at `<minimax:tool_call>` + whitespace + `<invoke name=` (a bare mention is
// text). A call is announced when its name is complete, each parameter is sent as a JSON
// fragment when its `</parameter>` arrives (typed by the tool's JSON schema) and `}` closes the
// call at `</invoke>`. Text outside blocks is content. Malformed markup ends the block: a call
// already announced is closed with its complete parameters, the rest is content. Every decision
// depends on the text only, never on where it was split, so streamed events concatenate to the
// one-shot parse.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace m2fp4 {

inline constexpr std::string_view kToolBlockOpen = "<minimax:tool_call>";
inline constexpr std::string_view kToolBlockClose = "</minimax:tool_call>";
inline constexpr std::string_view kInvokeOpen = "<invoke name=";

enum class PrefixMatch { kNo, kPartial, kYes };

// Whether `text` at `pos` starts a tool call block (`<minimax:tool_call>`, ASCII whitespace,
// `<invoke name=`); kPartial when the text ends before that is decided. On kYes, `*name_pos`
// (if given) is set to the offset just after `<invoke name=`. `*spaces_end` (if given) is where
// the whitespace after the tag was last seen to end: a caller waiting on a kPartial passes it
// back so the next call skips only the spaces that arrived since (0: not known yet).
PrefixMatch match_tool_block_start(std::string_view text, size_t pos, size_t* name_pos = nullptr,
                                   size_t* spaces_end = nullptr);

// Length of the longest proper suffix of `text` that is a prefix of `tag` (a tag that the next
// piece of text may complete).
size_t partial_tag_suffix(std::string_view text, std::string_view tag);

// ---- parameter typing (vLLM's rules with m2fp4's changes, serving.md "What m2fp4 does" 6) ----

// The JSON types a parameter schema accepts, lower-cased: `type` (string or list), the types of
// `enum` values, and anyOf/oneOf/allOf recursively; {"string"} when none is given.
std::vector<std::string> schema_types(const nlohmann::json& schema);

// The typed value of a raw parameter text (already whitespace-trimmed) for the accepted types.
// `null` becomes null unless the types are string-only; then the first success of integer (also
// an integral decimal such as 5.0), number (integral -> integer), boolean (true/1/yes/on,
// false/0/no/off, any case), object/array (JSON), string; else JSON if it parses, else the text.
nlohmann::ordered_json convert_parameter_value(std::string_view raw,
                                               const std::vector<std::string>& types);

// JSON text as Python's json.dumps(ensure_ascii=False) writes it (", " and ": " separators),
// which is how vLLM serialises tool arguments. Invalid UTF-8 becomes U+FFFD.
std::string dump_json_python_style(const nlohmann::ordered_json& value);

// The request's tools (OpenAI `tools` array: {"type": "function", "function": {"name",
// "parameters"}}; a bare {"name", "parameters"} is accepted too), as parameter types by name.
class ToolSchemas {
 public:
  ToolSchemas() = default;
  // `tools` must be null or an array of objects with a string name; else m2fp4::Error.
  explicit ToolSchemas(const nlohmann::json& tools);

  // Types of parameter `param` of tool `tool` ({"string"} when either is unknown).
  std::vector<std::string> param_types(const std::string& tool, const std::string& param) const;
  bool empty() const { return properties_.empty(); }

 private:
  std::map<std::string, nlohmann::json> properties_;  // tool name -> parameters.properties
};

// "call_" + 24 random hex digits (vLLM's form).
std::string random_tool_call_id();

// One thing the parser decided.
struct ToolCallEvent {
  enum class Kind {
    kContent,    // text: content outside blocks
    kCallStart,  // a new call: index, id, name (text is empty)
    kArguments,  // text: the next fragment of call `index`'s JSON arguments
  };
  Kind kind = Kind::kContent;
  int index = -1;
  std::string id;
  std::string name;
  std::string text;
};

class ToolCallParser {
 public:
  using IdGenerator = std::function<std::string()>;

  explicit ToolCallParser(ToolSchemas schemas, IdGenerator make_id = random_tool_call_id);

  // Appends to `out` what `text` (the next piece of content) decides.
  void feed(std::string_view text, std::vector<ToolCallEvent>& out);
  // End of output: held-back text outside blocks is content; an open call is closed with the
  // parameters completed so far; a block with no announced call is content.
  void finish(std::vector<ToolCallEvent>& out);

  int calls_started() const { return next_index_; }
  // Bytes examined by searches so far: stays within a small multiple of the bytes fed, however
  // the text is split (each scan resumes where the last one stopped). Tests read it to check that
  // unfinished markup is not rescanned on every feed.
  size_t bytes_scanned() const { return scanned_; }

 private:
  enum class State {
    kContent,     // outside blocks
    kBlockStart,  // after `<minimax:tool_call>`: is `<invoke name=` next?
    kInvokeName,  // after `<invoke name=`, until `>`
    kInInvoke,    // between parameters: `<parameter name=` or `</invoke>` next
    kParamName,   // after `<parameter name=`, until `>`
    kParamValue,  // until `</parameter>`
    kBlockIdle,   // after `</invoke>`: `<invoke name=` or `</minimax:tool_call>` next
  };

  bool step(std::vector<ToolCallEvent>& out);  // false: needs more text
  void malformed(std::vector<ToolCallEvent>& out);
  void close_call(std::vector<ToolCallEvent>& out);
  void emit_content(std::vector<ToolCallEvent>& out, std::string_view text);
  // Text not yet decided (buf_ from head_ on); offsets below are relative to its start.
  std::string_view pending() const { return std::string_view(buf_).substr(head_); }
  void consume(size_t n) { head_ += n; }
  // Enters `state`, whose scan starts at `scan_from`.
  void enter(State state, size_t scan_from) {
    state_ = state;
    scan_pos_ = scan_from;
  }

  ToolSchemas schemas_;
  IdGenerator make_id_;
  State state_ = State::kContent;
  // Fed text; buf_[0, head_) is decided and dropped when it is at least half of buf_, so
  // consuming text never moves the rest byte by byte. The undecided text inside a block starts at
  // the last point already turned into events (block start, end of call name, `</parameter>`,
  // `</invoke>`), so malformed markup can be given back as content from there.
  std::string buf_;
  size_t head_ = 0;
  size_t name_pos_ = 0;   // kInvokeName/kParamName: offset of the name in pending()
  size_t value_pos_ = 0;  // kParamValue: offset of the value in pending()
  // Where the current state's scan resumes in pending() (spaces skipped, name or value bytes
  // known not to end it): every state keeps its place so a feed looks at new bytes only.
  size_t scan_pos_ = 0;
  size_t scanned_ = 0;
  bool block_has_call_ = false;  // the current block announced a call
  bool call_open_ = false;       // announced, `}` not yet sent
  int call_params_ = 0;          // parameters sent for the open call
  int next_index_ = 0;
  std::string call_name_;
  std::string param_name_;
};

}  // namespace m2fp4
