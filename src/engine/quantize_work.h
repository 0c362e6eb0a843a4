// The work folder of a quantize run (OUT/.m2fp4-work): everything a killed run needs to continue
// to a byte-identical result, each file replaced atomically.
//
//   state.json           {"version", "fingerprint", "layers_done", "complete"}: the source of
//                        truth; layers < layers_done have final statistics and the residual
//                        activations entering layer layers_done are saved
//   tokens.json          the calibration token ids (fixed at the first run)
//   act-L.f32            residual stream entering layer L for every sample, float32, samples
//                        concatenated (only the latest is kept)
//   stats-L.json         final calibration statistics of layer L
//   partial.json         amax-only checkpoint inside layer layers_done: statistics of the
//                        samples before samples_done (their outputs are recomputed on resume)
//   out/                 the checkpoint being written (shards, index, configs), moved into OUT
//                        when complete
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "quant/observers.h"

namespace m2fp4 {

class QuantizeWork {
 public:
  // Prepares OUT for a new run (OUT absent or empty) or, with resume, opens the unfinished run
  // in it and checks its fingerprint equals `fingerprint` (a different source, recipe or
  // calibration is refused, naming the first difference). Clear errors for: OUT not empty, an
  // unfinished run without --resume, --resume without one.
  static QuantizeWork open(const std::string& out_dir, const nlohmann::json& fingerprint,
                           bool resume);

  const std::string& out_dir() const { return out_dir_; }
  const std::string& dir() const { return dir_; }
  std::string staging_dir() const { return dir_ + "/out"; }
  bool resumed() const { return resumed_; }

  int64_t layers_done() const { return layers_done_; }
  bool complete() const { return complete_; }

  // The calibration token ids and where they came from (for the report of a resumed run).
  void save_tokens(const std::vector<std::vector<int32_t>>& samples, const std::string& source);
  std::vector<std::vector<int32_t>> load_tokens(std::string* source = nullptr) const;
  bool has_tokens() const;

  void save_activations(int64_t layer, const std::vector<float>& x);
  std::vector<float> load_activations(int64_t layer, size_t expected_floats) const;

  void save_layer_stats(const LayerCalibration& stats);
  LayerCalibration load_layer_stats(int64_t layer, int64_t n_experts) const;

  // Amax-only checkpoint inside layer `stats.layer` after `samples_done` samples.
  void save_partial(const LayerCalibration& stats, int64_t samples_done);
  struct Partial {
    LayerCalibration stats;
    int64_t samples_done = 0;
  };
  // The checkpoint for `layer`, if one was saved for it.
  std::optional<Partial> load_partial(int64_t layer, int64_t n_experts) const;

  // Records that layers < n are done (their stats and act-n are saved) and drops older files.
  void mark_layers_done(int64_t n);
  // Records that staging_dir() holds the complete checkpoint (only publishing is left).
  void mark_complete();
  // Moves the staged files into OUT (config.json last, so OUT never looks complete early) and
  // removes the work folder.
  void publish();

 private:
  void save_state() const;

  std::string out_dir_;
  std::string dir_;
  nlohmann::json fingerprint_;
  int64_t layers_done_ = 0;
  bool complete_ = false;
  bool resumed_ = false;
};

}  // namespace m2fp4
