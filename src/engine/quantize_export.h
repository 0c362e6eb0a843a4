// Produces the output tensors of an export plan from the source checkpoint: copies, conversions
// of unquantized weights to the model dtype, quantized Linear layers (fused groups sharing their
// weight amax, §2.3; input scales from calibration, §7) and KV scales.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "engine/quantize_output.h"
#include "engine/quantize_plan.h"
#include "io/checkpoint.h"
#include "quant/export_layout.h"
#include "quant/matrix.h"
#include "quant/observers.h"

namespace m2fp4 {

class PlanExporter {
 public:
  PlanExporter(const Checkpoint& checkpoint, const ExportPlan& plan, ShardedOutput& output);

  // Items of decoder layer `layer`, or with layer == -1 those before the first layer (head) /
  // after the last (tail).
  std::pair<size_t, size_t> layer_items(int64_t layer) const;
  std::pair<size_t, size_t> head_items() const { return {0, first_layer_item_}; }
  std::pair<size_t, size_t> tail_items() const { return {last_layer_end_, plan_.items.size()}; }

  // True if any output of items [begin, end) still has to be written.
  bool any_wanted(std::pair<size_t, size_t> range) const;

  // Writes items [begin, end) (outputs already on disk are skipped). `calibration` is required
  // for items that need input or KV scales.
  void emit(std::pair<size_t, size_t> range, const LayerCalibration* calibration);
  // The same, with the statistics asked for only once an item needs them (it may block until
  // the layer is calibrated): matrices that need none (weight-only schemes) are encoded first.
  using CalibrationSource = std::function<const LayerCalibration*()>;
  void emit(std::pair<size_t, size_t> range, const CalibrationSource& calibration);

  // Checked between matrices while encoding: once it returns true, emit() stops with an error
  // before writing the window (a stopped run resumes from the complete shards). nullptr: none.
  void set_cancel_check(std::function<bool()> cancelled) { cancelled_ = std::move(cancelled); }

  // Seconds spent handing encoded tensors to the output (writing), so far.
  double write_seconds() const { return write_seconds_; }

  // Drops the resident pages of the source tensors of items [begin, end) (mapped checkpoint).
  void release_source(std::pair<size_t, size_t> range) const;

 private:
  struct Source {
    ConstMatrix matrix;
    std::vector<uint16_t> bf16;  // decoded storage (FP8 source)
    std::vector<float> f32;      // decoded storage (F16 source)
  };
  struct QuantizedJob {
    const LinearModule* module = nullptr;
    ConstMatrix matrix;
    float weight_amax = 0.0f;
    std::optional<float> input_amax;
  };
  Source& source_matrix(int64_t module);
  QuantizedJob prepare_quantized(const ExportItem& item, const LayerCalibration* calibration,
                                 const ExpertInputAmax* experts);
  std::vector<EncodedTensor> encode_job(const QuantizedJob& job) const;
  void write_encoded(const ExportItem& item, const std::vector<EncodedTensor>& tensors);
  // The items of `window` in plan order: its quantized matrices encoded on all threads at once,
  // then every item written in order. `statistics` is called before the first item that needs
  // calibration.
  struct Calibrated {
    const LayerCalibration* stats = nullptr;
    const ExpertInputAmax* experts = nullptr;
  };
  void emit_window(const std::vector<size_t>& window,
                   const std::function<Calibrated()>& statistics);
  static bool needs_calibration(const ExportItem& item, const LinearModule* module);
  float group_weight_amax(int64_t module);
  void compute_group_amaxes(const std::vector<size_t>& pending);
  void emit_item(const ExportItem& item, const LayerCalibration* calibration,
                 const ExpertInputAmax* experts);

  const Checkpoint& ckpt_;
  const ExportPlan& plan_;
  ShardedOutput& out_;
  size_t first_layer_item_ = 0;
  size_t last_layer_end_ = 0;
  std::map<int64_t, Source> decoded_;        // per module, while its group is being written
  std::map<std::string, float> group_amax_;  // per fused group (or module name), this layer
  std::map<std::string, std::vector<int64_t>> group_members_;  // fused group -> modules
  double write_seconds_ = 0;
  std::function<bool()> cancelled_;
};

}  // namespace m2fp4
