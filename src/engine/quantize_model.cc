#include "engine/quantize_model.h"

#include <sys/resource.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>

#include "base/error.h"
#include "base/file.h"
#include "base/thread_pool.h"
#include "base/timer.h"
#include "engine/quantize_export.h"
#include "engine/quantize_output.h"
#include "engine/quantize_overlap.h"
#include "engine/quantize_plan.h"
#include "engine/quantize_progress.h"
#include "engine/quantize_work.h"
#include "io/checkpoint.h"
#include "io/page_release.h"
#include "kernels/cpu/matmul_bf16dot.h"
#include "model/kv_cache.h"
#include "model/minimax_m2.h"
#include "model/observer.h"
#include "model/weights.h"
#include "quant/observers.h"
#include "quant/quant_config_json.h"

namespace m2fp4 {
namespace fs = std::filesystem;

namespace {

// Calibration tokens per forward batch. Fixed (not derived from threads or checkpoint options)
// so that a resumed run batches exactly as the first one did.
constexpr int64_t kGroupTokens = 2048;

// Source files that are not weights and travel with the checkpoint (tokenizer, chat template,
// generation config, remote code, model card).
bool is_companion_file(const fs::path& p) {
  const std::string name = p.filename().string();
  const std::string ext = p.extension().string();
  if (name.empty() || name[0] == '.') return false;
  if (name == "config.json" || name == "hf_quant_config.json" ||
      name == "model.safetensors.index.json") {
    return false;
  }
  for (const char* weights : {".safetensors", ".bin", ".pt", ".pth", ".gguf", ".partial"}) {
    if (ext == weights) return false;
  }
  return true;
}

uint64_t fnv1a(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : bytes) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ull;
  return h;
}

// Wall and CPU time of a phase: on a shared host the CPU seconds show what a phase costs when the
// wall clock mostly shows the other processes. CPU time of the whole process, or with a pool
// given, of the calling thread and that pool's workers (the calibration, while the export runs
// on threads of its own).
class PhaseTimer {
 public:
  explicit PhaseTimer(const ThreadPool* pool = nullptr) : pool_(pool), cpu_start_(cpu_now()) {}
  void reset() {
    wall_.reset();
    cpu_start_ = cpu_now();
  }
  void add_to(double& wall, double& cpu) const {
    wall += wall_.seconds();
    cpu += cpu_now() - cpu_start_;
  }

 private:
  double cpu_now() const {
    return pool_ ? thread_cpu_seconds() + pool_->workers_cpu_seconds() : process_cpu_seconds();
  }
  const ThreadPool* pool_;
  Timer wall_;
  double cpu_start_;
};

// The source's config.json, checked to describe an unquantized (or official FP8) MiniMax-M2.
struct Source {
  nlohmann::ordered_json raw_config;
  ModelConfig config;
};

Source open_source(const std::string& dir) {
  M2_CHECK(fs::is_directory(dir), dir, ": no such folder");
  const std::string config_path = dir + "/config.json";
  M2_CHECK(file_exists(config_path), dir,
           " is not a Hugging Face checkpoint folder (no config.json)");
  Source s;
  try {
    s.raw_config = nlohmann::ordered_json::parse(read_text_file(config_path));
  } catch (const nlohmann::json::exception& e) {
    fail(config_path, " is not valid JSON (", e.what(), ")");
  }
  M2_CHECK(s.raw_config.is_object(), config_path, " does not hold a JSON object");
  const auto qc = s.raw_config.find("quantization_config");
  const bool quantized = file_exists(dir + "/hf_quant_config.json") ||
                         (qc != s.raw_config.end() && !qc->is_null() &&
                          !(qc->is_object() && qc->value("quant_method", "") == "fp8"));
  if (quantized) {
    std::string what = "hf_quant_config.json";
    if (qc != s.raw_config.end() && qc->is_object()) {
      what = "quant_method '" + qc->value("quant_method", std::string("?")) + "'";
      if (qc->contains("quant_algo")) what += ", quant_algo '" + qc->value("quant_algo", "") + "'";
      if (qc->contains("format")) what += ", format '" + qc->value("format", "") + "'";
    }
    fail(dir, " is already quantized (", what,
         "); quantize reads a BF16/F32 checkpoint or the official FP8 release");
  }
  try {
    s.config = ModelConfig::from_json(nlohmann::json::parse(s.raw_config.dump()));
  } catch (const Error& e) {
    fail(dir, " is not a MiniMax-M2 checkpoint m2fp4 can quantize: ", e.what());
  }
  return s;
}

nlohmann::json make_fingerprint(const QuantizeOptions& o, const Source& source,
                                const ExportPlan& plan, const IgnorePatterns& ignore) {
  nlohmann::json files = nlohmann::json::object();
  for (const auto& entry : fs::directory_iterator(o.model_dir)) {
    if (entry.path().extension() == ".safetensors") {
      files[entry.path().filename().string()] = entry.file_size();
    }
  }
  nlohmann::json calib;
  calib["file"] = o.calibration.calib_file.empty()
                      ? std::string()
                      : fs::absolute(o.calibration.calib_file).lexically_normal().string();
  calib["file_hash"] = o.calibration.calib_file.empty()
                           ? uint64_t{0}
                           : fnv1a(read_text_file(o.calibration.calib_file));
  calib["samples"] = o.calibration.max_samples;
  calib["max_seq"] = o.calibration.max_seq;
  nlohmann::json f;
  f["source"] = fs::absolute(o.model_dir).lexically_normal().string();
  f["source_config"] = nlohmann::json::parse(source.raw_config.dump());
  f["source_files"] = files;
  f["recipe"] = std::string(recipe_name(plan.recipe));
  f["format"] = std::string(layout_name(plan.layout));
  f["ignore"] = ignore.patterns();
  if (plan.lm_head != WeightScheme::kNone) f["lm_head"] = std::string(scheme_name(plan.lm_head));
  f["all_experts"] = o.all_experts;
  f["calibration"] = calib;
  f["max_shard_bytes"] = o.max_shard_bytes;
  return f;
}

class CalibrationObserver : public ForwardObserver {
 public:
  // skip_experts_of: a layer whose expert outputs nothing reads (-1: none).
  CalibrationObserver(LayerCalibration& stats, bool all_experts, int64_t skip_experts_of)
      : stats_(stats), all_experts_(all_experts), skip_experts_of_(skip_experts_of) {}
  void on_linear_input(int64_t, LinearSite site, int64_t expert, const float* x, int64_t n,
                       int64_t width) override {
    stats_.observe_input(to_input_site(site), expert, x, n, width);
  }
  void on_kv(int64_t, const float* k, const float* v, int64_t n, int64_t width) override {
    stats_.observe_kv(k, v, n, width);
  }
  void on_routing(int64_t, const int64_t* counts, int64_t n_experts) override {
    stats_.observe_routing(counts, n_experts);
  }
  bool all_experts() const override { return all_experts_; }
  bool wants_expert_outputs(int64_t layer) const override { return layer != skip_experts_of_; }

 private:
  static InputSite to_input_site(LinearSite site) {
    switch (site) {
      case LinearSite::kQkv:
        return InputSite::kQkv;
      case LinearSite::kO:
        return InputSite::kO;
      case LinearSite::kRouter:
        return InputSite::kRouter;
      case LinearSite::kExpertW13:
        return InputSite::kExpertW13;
      case LinearSite::kExpertW2:
        return InputSite::kExpertW2;
    }
    return InputSite::kQkv;
  }
  LayerCalibration& stats_;
  bool all_experts_;
  int64_t skip_experts_of_;
};

Weight embedding_weight(const Checkpoint& ckpt, const ModelConfig& c) {
  const TensorView t = ckpt.tensor("model.embed_tokens.weight");
  M2_CHECK(t.shape() == std::vector<int64_t>({c.vocab_size, c.hidden_size}),
           "tensor model.embed_tokens.weight has shape ", shape_string(t.shape()));
  Weight w;
  w.rows = c.vocab_size;
  w.cols = c.hidden_size;
  w.data = t.data;
  switch (t.dtype()) {
    case DType::kBF16:
      w.format = WeightFormat::kBF16;
      break;
    case DType::kF32:
      w.format = WeightFormat::kF32;
      break;
    case DType::kF16:
      w.format = WeightFormat::kF16;
      break;
    default:
      fail("tensor model.embed_tokens.weight has dtype ", dtype_name(t.dtype()));
  }
  return w;
}

// The calibration samples, their rows in the stacked residual stream, and the fixed batches.
struct SampleLayout {
  std::vector<std::vector<int32_t>> samples;
  std::vector<int64_t> row_begin;                   // per sample, plus the total at the end
  std::vector<std::pair<int64_t, int64_t>> groups;  // [first sample, end sample)
  int64_t max_len = 0;

  explicit SampleLayout(std::vector<std::vector<int32_t>> s) : samples(std::move(s)) {
    row_begin.push_back(0);
    int64_t group_tokens = 0;
    for (size_t i = 0; i < samples.size(); ++i) {
      const int64_t len = static_cast<int64_t>(samples[i].size());
      max_len = std::max(max_len, len);
      row_begin.push_back(row_begin.back() + len);
      if (groups.empty() || group_tokens + len > kGroupTokens) {
        groups.emplace_back(static_cast<int64_t>(i), static_cast<int64_t>(i));
        group_tokens = 0;
      }
      groups.back().second = static_cast<int64_t>(i) + 1;
      group_tokens += len;
    }
  }
  int64_t n() const { return static_cast<int64_t>(samples.size()); }
  int64_t rows() const { return row_begin.back(); }

  Batch batch(std::pair<int64_t, int64_t> g) const {
    Batch b;
    for (int64_t s = g.first; s < g.second; ++s) {
      const auto& ids = samples[static_cast<size_t>(s)];
      for (size_t p = 0; p < ids.size(); ++p) {
        b.add(ids[p], static_cast<int32_t>(p), static_cast<int32_t>(s - g.first), false);
      }
    }
    return b;
  }
};

// One decoder layer over every sample's residual stream x (updated in place), observing the
// groups from `observe_from` on (earlier ones only recompute outputs after a resume).
void run_layer(MiniMaxM2& net, int64_t layer, const LayerWeights& weights,
               const SampleLayout& layout, int64_t hidden, KvCache& cache, std::vector<float>& x,
               LayerCalibration& stats, bool all_experts, int64_t skip_experts_of,
               int64_t observe_from,
               const std::function<void(int64_t samples_done, bool observed)>& after_group) {
  CalibrationObserver observer(stats, all_experts, skip_experts_of);
  std::vector<float> xg;
  for (const auto& g : layout.groups) {
    const Batch batch = layout.batch(g);
    const int64_t r0 = layout.row_begin[static_cast<size_t>(g.first)];
    const int64_t r1 = layout.row_begin[static_cast<size_t>(g.second)];
    xg.assign(x.begin() + r0 * hidden, x.begin() + r1 * hidden);
    const bool observe = g.first >= observe_from;
    net.prepare(batch, cache);
    net.decoder_layer(layer, weights, batch, cache, xg, observe ? &observer : nullptr);
    std::copy(xg.begin(), xg.end(), x.begin() + r0 * hidden);
    for (int64_t s = 0; s < g.second - g.first; ++s) cache.drop(static_cast<int32_t>(s));
    if (observe) stats.add_tokens(r1 - r0);
    after_group(g.second, observe);
  }
}

// Calls fn(data, bytes) once per run of decoder layer `layer`'s tensors that lie next to each
// other in a shard.
template <typename Fn>
void for_layer_runs(const Checkpoint& ckpt, int64_t layer, Fn fn) {
  const std::string prefix = "model.layers." + std::to_string(layer) + ".";
  for (const auto& shard : ckpt.shards()) {
    std::vector<const TensorInfo*> in_file_order;
    for (const TensorInfo& info : shard->tensors()) in_file_order.push_back(&info);
    std::sort(in_file_order.begin(), in_file_order.end(),
              [](const TensorInfo* a, const TensorInfo* b) { return a->begin < b->begin; });
    const std::byte* run_begin = nullptr;
    const std::byte* run_end = nullptr;
    auto end_run = [&] {
      if (run_begin != nullptr) fn(run_begin, static_cast<size_t>(run_end - run_begin));
      run_begin = run_end = nullptr;
    };
    for (const TensorInfo* info : in_file_order) {
      if (info->name.rfind(prefix, 0) != 0) {
        end_run();
        continue;
      }
      const TensorView t = shard->view(*info);
      if (run_begin == nullptr) run_begin = t.data;
      run_end = t.data + t.nbytes();
    }
    end_run();
  }
}

// Drops the resident pages of every tensor of decoder layer `layer`: one madvise per run (each
// madvise of a mapping shared by running threads costs a TLB shootdown on the other cores; per
// tensor that was ~400 per layer).
void release_layer_weights(const Checkpoint& ckpt, int64_t layer) {
  for_layer_runs(ckpt, layer,
                 [](const std::byte* data, size_t bytes) { release_mapped_pages(data, bytes); });
}

// Maps every tensor of decoder layer `layer` ahead of its first reads (one madvise per run
// instead of a fault per 64 KiB: ~28K faults per bench-preset run).
void populate_layer_weights(const Checkpoint& ckpt, int64_t layer) {
  for_layer_runs(ckpt, layer,
                 [](const std::byte* data, size_t bytes) { populate_mapped_pages(data, bytes); });
}

void write_configs(const std::string& staging, const Source& source, const ExportPlan& plan) {
  const QuantConfigInputs inputs = plan.config_inputs();
  nlohmann::ordered_json config = source.raw_config;
  config.erase("quantization_config");  // the FP8 release's block config no longer applies
  config["quantization_config"] = quantization_config_json(inputs);
  write_file_atomic(staging + "/config.json", config.dump(2) + "\n");
  if (plan.layout == ExportLayout::kModelopt) {
    write_file_atomic(staging + "/hf_quant_config.json",
                      hf_quant_config_json(inputs).dump(4) + "\n");
  }
}

void copy_companion_files(const std::string& source_dir, const std::string& staging) {
  for (const auto& entry : fs::directory_iterator(source_dir)) {
    if (!entry.is_regular_file() || !is_companion_file(entry.path())) continue;
    const std::string target = staging + "/" + entry.path().filename().string();
    write_file_atomic(target, read_text_file(entry.path().string()));
  }
}

std::string source_format(const Checkpoint& ckpt, const ModelConfig& c) {
  if (c.fp8.present) return "FP8 E4M3 128x128 blocks (dequantized to bf16 per §5)";
  const std::string probe = "model.layers.0.self_attn.q_proj.weight";
  return ckpt.has(probe) ? std::string(dtype_name(ckpt.tensor(probe).dtype())) : c.torch_dtype;
}

}  // namespace

double process_cpu_seconds() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + 1e-6 * t.tv_usec; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

int64_t peak_rss_bytes() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

QuantizeReport run_quantize(const QuantizeOptions& o) {
  // Calibration measures activation ranges (input scales, KV scales) of the source model: it runs
  // with exact f32 activations, as the reference forward the exported scales are checked against,
  // not with the bf16-rounded activations that serve decode speed.
  const ScopedBf16Activations f32_activations(Bf16Activations::kF32);
  Timer total_timer;
  const double total_cpu_start = process_cpu_seconds();
  if (o.threads > 0) set_default_threads(o.threads);
  ThreadPool& pool = default_pool();

  const Source source = open_source(o.model_dir);
  const ModelConfig& config = source.config;
  const ExportLayout layout = o.layout.value_or(default_layout(o.recipe));
  check_recipe_layout(o.recipe, layout);
  const IgnorePatterns ignore(o.ignore);
  const Checkpoint ckpt = Checkpoint::open(o.model_dir, LoadMode::kMmap);
  const ExportPlan plan = plan_export(ckpt, config, o.recipe, layout, ignore, o.lm_head);
  M2_CHECK(o.checkpoint_every >= 0, "--checkpoint-every must be >= 0");
  M2_CHECK(o.starved_min_tokens >= 0, "--starved-min-tokens must be >= 0");

  QuantizeWork work =
      QuantizeWork::open(o.out_dir, make_fingerprint(o, source, plan, ignore), o.resume);

  QuantizeReport report;
  report.recipe = recipe_name(o.recipe);
  report.layout = layout_name(layout);
  report.source_dir = o.model_dir;
  report.source_format = source_format(ckpt, config);
  report.out_dir = o.out_dir;
  report.source_bytes = plan.source_bytes;
  report.quantized_modules = plan.quantized_count();
  report.kept_modules = static_cast<int64_t>(plan.modules.size()) - plan.quantized_count();
  report.dropped = plan.dropped;
  if (plan.lm_head != WeightScheme::kNone) report.lm_head = scheme_name(plan.lm_head);
  report.all_experts = o.all_experts;
  report.n_layers = config.num_hidden_layers;
  report.n_experts = config.num_local_experts;
  report.starved_min_tokens = o.starved_min_tokens;
  report.max_seq = o.calibration.max_seq;
  if (work.resumed()) report.resumed_at_layer = work.layers_done();

  const int64_t H = config.hidden_size, E = config.num_local_experts;
  const int64_t N = config.num_hidden_layers;
  // Calibration tokens are fixed by the first run (a resumed run reads them back). A fresh run
  // with an export thread loads them once that thread runs: tokenizing overlaps its first
  // encoding.
  std::optional<SampleLayout> sample_layout;
  auto load_samples = [&]() -> const SampleLayout& {
    CalibrationSet calib;
    if (work.has_tokens()) {
      calib.samples = work.load_tokens(&calib.source);
    } else {
      calib = load_calibration(o.model_dir, config.vocab_size, o.calibration);
      work.save_tokens(calib.samples, calib.source);
    }
    report.calibration_source = calib.source;
    const SampleLayout& samples = sample_layout.emplace(std::move(calib.samples));
    report.samples = samples.n();
    report.calibration_tokens = samples.rows();
    report.activation_bytes = static_cast<uint64_t>(samples.rows() * H) * 4;
    return samples;
  };

  const std::string staging = work.staging_dir();
  if (!work.complete()) {
    ShardedOutput output(staging, plan.specs(), o.max_shard_bytes);
    PlanExporter exporter(ckpt, plan, output);
    const int64_t layers_done = work.layers_done();
    ProgressDisplay progress(o.progress, o.progress != nullptr,
                             static_cast<double>(layers_done) / static_cast<double>(N + 1));
    auto fraction = [&](int64_t layer, double within) {
      return (static_cast<double>(layer) + within) / static_cast<double>(N + 1);
    };
    PhaseTimer phase;

    // The tensors before the first layer (the embedding): on the export thread when it runs
    // (a fresh run with several threads), alongside the calibration's start.
    const bool head_on_export_thread = pool.size() > 1 && layers_done == 0 && N > 0;
    auto emit_head = [&] {
      exporter.emit(exporter.head_items(), nullptr);
      release_mapped_pages(ckpt.tensor("model.embed_tokens.weight").data,
                           ckpt.tensor("model.embed_tokens.weight").nbytes());
    };
    // With several threads the layers are exported on a thread (and pool) of their own while
    // they calibrate: each fills the other's idle cores. Up to two layers' weights are resident
    // then (when the export runs a layer ahead or behind).
    std::optional<LayerExportThread> background;
    auto start_background = [&] {
      background.emplace(pool.size(), layers_done, N,
                         [&](int64_t l, const LayerExportThread::Statistics& statistics,
                             const LayerExportThread::Stopping& stopping) {
                           exporter.set_cancel_check(stopping);  // a failed run stops promptly
                           if (l == 0 && head_on_export_thread) emit_head();
                           populate_layer_weights(ckpt, l);
                           const auto range = exporter.layer_items(l);
                           exporter.emit(range, [&] { return &statistics(); });
                           statistics();  // calibrated: the weights are no longer read
                           release_layer_weights(ckpt, l);
                         });
    };
    if (head_on_export_thread) start_background();  // a fresh run: nothing to re-encode first
    const SampleLayout& samples = load_samples();
    if (!head_on_export_thread) {
      emit_head();
      phase.add_to(report.export_seconds, report.export_cpu_seconds);
    }

    auto note_layer = [&](const LayerCalibration& stats) {
      const std::vector<int64_t> starved = starved_experts(stats, o.starved_min_tokens);
      if (!starved.empty()) report.starved.emplace_back(stats.layer, starved);
      const ExpertInputAmax resolved = resolve_expert_input_amax(stats);
      if (!resolved.filled.empty() && !o.all_experts) {
        report.filled.emplace_back(stats.layer, static_cast<int64_t>(resolved.filled.size()));
      }
    };

    // Layers calibrated by an earlier run: their tensors are re-encoded from the saved
    // statistics where the shards holding them were not finished.
    for (int64_t l = 0; l < layers_done && l < N; ++l) {
      const LayerCalibration stats = work.load_layer_stats(l, E);
      note_layer(stats);
      const auto range = exporter.layer_items(l);
      if (!exporter.any_wanted(range)) continue;
      phase.reset();
      exporter.emit(range, &stats);
      exporter.release_source(range);
      phase.add_to(report.export_seconds, report.export_cpu_seconds);
    }

    // A calibrated layer's tensors, encoded and written in plan order.
    auto export_layer = [&](const LayerCalibration& stats) {
      const auto range = exporter.layer_items(stats.layer);
      exporter.emit(range, &stats);
      release_layer_weights(ckpt, stats.layer);
    };

    if (layers_done < N) {
      if (pool.size() > 1 && !background) start_background();  // after the re-encoded layers
      PhaseTimer calibration_phase(&pool);
      ModelWeights head;  // only the embedding: layers come one at a time
      head.embed_tokens = embedding_weight(ckpt, config);
      MiniMaxM2 net(config, head, pool);
      std::vector<float> x;
      const size_t floats = static_cast<size_t>(samples.rows() * H);
      if (layers_done == 0) {
        x.reserve(floats);
        std::vector<float> rows;
        for (const auto& g : samples.groups) {
          net.embed(samples.batch(g), rows);
          x.insert(x.end(), rows.begin(), rows.end());
        }
        release_mapped_pages(head.embed_tokens.data,
                             ckpt.tensor("model.embed_tokens.weight").nbytes());
      } else {
        x = work.load_activations(layers_done, floats);
      }
      KvCache cache(config, samples.max_len, 1);
      // The last layer's MoE output feeds nothing but its w2 input amaxes: without a calibrated
      // w2 input scale there, its expert matmuls are skipped (routing counts and the w1/w3
      // input observations, which the report's starved and uncalibrated experts come from, are
      // kept).
      const bool last_w2_scaled =
          std::any_of(plan.modules.begin(), plan.modules.end(), [&](const LinearModule& m) {
            return m.layer == N - 1 && m.kind == LinearKind::kExpertW2 && m.input_scale;
          });
      const int64_t skip_experts_of = o.skip_unread_experts && !last_w2_scaled ? N - 1 : -1;

      for (int64_t l = layers_done; l < N; ++l) {
        calibration_phase.reset();
        const LayerWeights weights = LayerWeights::load(ckpt, config, l);
        LayerCalibration stats(l, E);
        int64_t observe_from = 0;
        if (auto partial = work.load_partial(l, E)) {
          const bool boundary =
              std::any_of(samples.groups.begin(), samples.groups.end(),
                          [&](const auto& g) { return g.second == partial->samples_done; });
          M2_CHECK(boundary, "the calibration checkpoint of layer ", l,
                   " does not fall on a batch boundary; the work folder is damaged");
          stats = std::move(partial->stats);
          observe_from = partial->samples_done;
        }
        int64_t last_saved = observe_from;
        const std::string label = "layer " + std::to_string(l + 1) + "/" + std::to_string(N);
        run_layer(net, l, weights, samples, H, cache, x, stats, o.all_experts, skip_experts_of,
                  observe_from, [&](int64_t done, bool observed) {
                    progress.update(fraction(l, 0.8 * static_cast<double>(done) / samples.n()),
                                    label + ": calibrating " + std::to_string(done) + "/" +
                                        std::to_string(samples.n()) + " samples");
                    // Amax-only checkpoint: the statistics so far; the outputs of these
                    // samples are recomputed (unobserved) by a resumed run.
                    if (!observed || o.checkpoint_every <= 0 || done >= samples.n()) return;
                    if (done - last_saved >= o.checkpoint_every) {
                      work.save_partial(stats, done);
                      last_saved = done;
                    }
                  });
        calibration_phase.add_to(report.calibration_seconds, report.calibration_cpu_seconds);

        // Checked before the layer is recorded as done, so that a --resume with the same
        // options stops here again.
        const std::vector<int64_t> starved = starved_experts(stats, o.starved_min_tokens);
        const double starved_pct = 100.0 * static_cast<double>(starved.size()) / E;
        if (o.starved_abort_percent && starved_pct > *o.starved_abort_percent) {
          progress.finish();
          char pct[32];
          std::snprintf(pct, sizeof(pct), "%.1f", starved_pct);
          fail("layer ", l, ": ", starved.size(), " of ", E, " experts (", pct,
               "%) saw fewer than ", o.starved_min_tokens,
               " calibration tokens, more than --starved-abort ", *o.starved_abort_percent,
               "%; use more calibration data (--calib, --calib-samples, --max-seq) or "
               "--all-experts in a new output folder");
        }
        work.save_layer_stats(stats);
        if (l + 1 < N) work.save_activations(l + 1, x);
        work.mark_layers_done(l + 1);
        note_layer(stats);

        if (background) {
          background->push(std::move(stats));
          progress.update(fraction(l + 1, 0.0), label + " calibrated", true);
          continue;
        }
        phase.reset();
        progress.update(fraction(l, 0.85), label + ": quantizing");
        export_layer(stats);
        phase.add_to(report.export_seconds, report.export_cpu_seconds);
        progress.update(fraction(l + 1, 0.0), label + " done", true);
      }
      if (background) {
        progress.update(fraction(N, 0.0), "quantizing the last layers");
        background->finish();
        exporter.set_cancel_check(nullptr);
        report.export_seconds += background->busy_seconds();
        report.export_cpu_seconds += background->cpu_seconds();
        report.overlap_seconds =
            std::max(0.0, background->busy_seconds() - background->waited_seconds());
      }
    }

    phase.reset();
    progress.update(fraction(N, 0.5), "lm_head and final norm");
    exporter.emit(exporter.tail_items(), nullptr);
    exporter.release_source(exporter.tail_items());
    output.finish();
    write_configs(staging, source, plan);
    copy_companion_files(o.model_dir, staging);
    phase.add_to(report.export_seconds, report.export_cpu_seconds);
    report.write_seconds = exporter.write_seconds();
    progress.update(1.0, "done", true);
    progress.finish();
    work.mark_complete();
  } else {
    load_samples();
    for (int64_t l = 0; l < N; ++l) {
      const LayerCalibration stats = work.load_layer_stats(l, E);
      const std::vector<int64_t> starved = starved_experts(stats, o.starved_min_tokens);
      if (!starved.empty()) report.starved.emplace_back(l, starved);
    }
  }

  // Sizes for the report, from the staged files (before they move).
  for (const auto& entry : fs::directory_iterator(staging)) {
    if (entry.path().extension() == ".safetensors") {
      report.output_bytes += entry.file_size();
      ++report.shards;
    }
  }
  work.publish();
  report.seconds = total_timer.seconds();
  report.cpu_seconds = process_cpu_seconds() - total_cpu_start;
  report.peak_rss_bytes = peak_rss_bytes();
  return report;
}

std::string format_quantize_report(const QuantizeReport& r) {
  auto fmt = [](const char* f, double v) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), f, v);
    return std::string(buf);
  };
  auto bytes = [&](double b) {
    return b >= 1e9 ? fmt("%.2f GB", b / 1e9) : fmt("%.1f MB", b / 1e6);
  };
  std::string s;
  s += str_cat("recipe          ", r.recipe, " (", r.layout, " layout)\n");
  s += str_cat("source          ", r.source_dir, ": ", r.source_format, ", ", bytes(r.source_bytes),
               " of tensors\n");
  s += str_cat("output          ", r.out_dir, ": ", r.shards, " shard(s), ", bytes(r.output_bytes),
               "; ", r.quantized_modules, " Linear layers quantized, ", r.kept_modules,
               " kept in the model dtype\n");
  s += str_cat("lm_head         ", r.lm_head == "kept" ? "kept in the model dtype" : r.lm_head,
               "\n");
  s += str_cat("calibration     ", r.samples, " samples, ", r.calibration_tokens,
               " tokens (max-seq ", r.max_seq, ") from ", r.calibration_source, "\n");
  s += str_cat("experts         ",
               r.all_experts ? "every calibration token sent through every expert (--all-experts)"
                             : "routed top-k only",
               "\n");
  int64_t starved_total = 0;
  for (const auto& [layer, experts] : r.starved)
    starved_total += static_cast<int64_t>(experts.size());
  s += str_cat("starved experts ", starved_total, " of ", r.n_layers * r.n_experts, " (fewer than ",
               r.starved_min_tokens, " calibration tokens reached them)\n");
  for (const auto& [layer, experts] : r.starved) {
    std::string list;
    for (size_t i = 0; i < experts.size() && i < 16; ++i) {
      list += (i ? "," : "") + std::to_string(experts[i]);
    }
    if (experts.size() > 16) list += ",...";
    s += str_cat("  layer ", layer, ": ", experts.size(), "/", r.n_experts, " (",
                 static_cast<int>(1000.0 * experts.size() / r.n_experts) / 10.0, "%) experts ",
                 list, "\n");
  }
  int64_t filled = 0;
  for (const auto& [layer, n] : r.filled) filled += n;
  if (filled > 0) {
    s += str_cat("uncalibrated    ", filled,
                 " experts saw no calibration token; their input amax is their layer's max\n");
  }
  if (!r.dropped.empty()) {
    s += str_cat("not exported    ", r.dropped.size(), " source tensors outside the model (e.g. ",
                 r.dropped.front(), ")\n");
  }
  if (r.resumed_at_layer >= 0) {
    s += str_cat("resumed         at layer ", r.resumed_at_layer, "\n");
  }
  s += str_cat("time            ", fmt("%.2f", r.seconds), " s (calibration ",
               fmt("%.2f", r.calibration_seconds), " s, quantize+write ",
               fmt("%.2f", r.export_seconds),
               " s): ", fmt("%.3f", r.source_bytes / 1e9 / std::max(r.seconds, 1e-9)),
               " GB/s of source tensors overall, ",
               fmt("%.3f", r.source_bytes / 1e9 / std::max(r.export_seconds, 1e-9)),
               " GB/s quantize+write\n");
  s +=
      str_cat("phases          setup ",
              fmt("%.2f", r.seconds - r.calibration_seconds - r.export_seconds + r.overlap_seconds),
              " s, calibration ", fmt("%.2f", r.calibration_seconds), " s, quantize ",
              fmt("%.2f", r.export_seconds - r.write_seconds), " s, write ",
              fmt("%.2f", r.write_seconds), " s",
              r.overlap_seconds > 0 ? str_cat(" (quantize+write ", fmt("%.2f", r.overlap_seconds),
                                              " s of it alongside calibration)")
                                    : std::string(),
              "\n");
  s += str_cat("cpu             ", fmt("%.2f", r.cpu_seconds), " s on all threads (calibration ",
               fmt("%.2f", r.calibration_cpu_seconds), " s, quantize+write ",
               fmt("%.2f", r.export_cpu_seconds), " s)\n");
  s += str_cat("memory          peak RSS ", bytes(r.peak_rss_bytes), " (calibration activations ",
               bytes(r.activation_bytes), ")\n");
  return s;
}

}  // namespace m2fp4
