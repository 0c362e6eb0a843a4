// Bounds on the work of one template render, since templates come from model folders and
// messages/tools from requests. Exceeding one is a clear m2fp4::Error("template line N: ..."),
// never a hang, a crash or an allocation of gigabytes. Nesting is bounded by counting, not by
// bigger stacks.
#pragma once

#include <cstddef>
#include <cstdint>

namespace m2fp4::jinja {

struct RenderLimits {
  // The rendered text, and any one string or list built on the way (a repetition, a padded
  // format, a join), in bytes (lists: in items).
  size_t max_output_bytes = size_t(16) << 20;
  // Statements executed + expressions evaluated + items produced by range/repetition/filters.
  uint64_t max_steps = 10'000'000;
  // Nesting of statements, expressions and macro calls at render time (macro recursion). 1000
  // allows about 260 levels of macro recursion (jinja2 itself stops near 190) and needs at
  // most ~1.4 MB of stack.
  int max_depth = 1000;
};

// Parse-time nesting of blocks and expression trees (a syntax limit, the same for every render).
constexpr int kMaxParseNesting = 256;
// Nesting of values: JSON messages/tools converted into values, lists/dicts built by the
// template. Python's own recursion limit stops transformers near the same depth.
constexpr int kMaxValueDepth = 900;

// The limits of the render running on this thread (RenderLimits{} when none runs) and the work
// it has done; Interpreter::render installs them for its duration.
class RenderBudget {
 public:
  explicit RenderBudget(const RenderLimits& limits);
  ~RenderBudget();
  RenderBudget(const RenderBudget&) = delete;
  RenderBudget& operator=(const RenderBudget&) = delete;

  const RenderLimits& limits() const { return limits_; }
  uint64_t steps() const { return steps_; }

 private:
  friend void charge_steps(uint64_t n);
  RenderLimits limits_;
  uint64_t steps_ = 0;
  RenderBudget* previous_;
};

// Fails (EvalError) when a string of `bytes` bytes (or a list of that many items) would exceed
// the running render's max_output_bytes.
void check_size(uint64_t bytes, const char* what);
// Counts `n` units of work against max_steps.
void charge_steps(uint64_t n);
// The running render's limits.
const RenderLimits& active_limits();

}  // namespace m2fp4::jinja
