#include "engine/quantize_export.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <optional>

#include "base/error.h"
#include "base/thread_pool.h"
#include "base/timer.h"
#include "io/page_release.h"
#include "numerics/bf16.h"
#include "numerics/f16.h"
#include "numerics/fp8_e4m3.h"
#include "quant/export_layout.h"
#include "quant/parallel_rows.h"

namespace m2fp4 {
namespace {

std::span<const std::byte> bytes_of(const TensorView& t) {
  return {t.data, static_cast<size_t>(t.nbytes())};
}

template <typename T>
std::span<const std::byte> bytes_of(const std::vector<T>& v) {
  return std::as_bytes(std::span<const T>(v));
}

std::vector<float> read_f32_vector(const TensorView& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  if (t.dtype() == DType::kF32) {
    std::memcpy(out.data(), t.data, out.size() * 4);
  } else if (t.dtype() == DType::kBF16) {
    for (size_t i = 0; i < out.size(); ++i) {
      uint16_t bits;
      std::memcpy(&bits, t.data + 2 * i, 2);
      out[i] = bf16_to_f32(bits);
    }
  } else {
    fail("tensor ", t.name(), " has dtype ", dtype_name(t.dtype()), ", expected F32 or BF16");
  }
  return out;
}

// The official FP8 release's weight (§5) as bf16: bf16(f32(e4m3(q) * weight_scale_inv)), the
// scale of 128x128 block (r / 128, c / 128). Straight from the mapped codes, rows in parallel.
std::vector<uint16_t> dequantize_fp8_source(const Checkpoint& ckpt, const std::string& weight,
                                            int64_t rows, int64_t cols) {
  const std::string scale_name = weight + "_scale_inv";
  M2_CHECK(ckpt.has(scale_name), "tensor ", weight, " is F8_E4M3 but ", scale_name, " is missing");
  const TensorView codes = ckpt.tensor(weight);
  const TensorView scale_view = ckpt.tensor(scale_name);
  const int64_t scale_cols = (cols + 127) / 128;
  M2_CHECK(scale_view.shape() == std::vector<int64_t>({(rows + 127) / 128, scale_cols}), "tensor ",
           scale_name, " has shape ", shape_string(scale_view.shape()), " for a ", rows, "x", cols,
           " weight in 128x128 blocks");
  const std::vector<float> scales = read_f32_vector(scale_view);
  const uint8_t* q = reinterpret_cast<const uint8_t*>(codes.data);
  std::vector<uint16_t> out(static_cast<size_t>(rows * cols));
  parallel_rows(rows, row_grain(cols), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* s = scales.data() + (r / 128) * scale_cols;
      const uint8_t* in = q + r * cols;
      uint16_t* o = out.data() + r * cols;
      for (int64_t c = 0; c < cols; ++c) o[c] = f32_to_bf16(kE4m3Table[in[c]] * s[c / 128]);
    }
  });
  return out;
}

}  // namespace

PlanExporter::PlanExporter(const Checkpoint& checkpoint, const ExportPlan& plan,
                           ShardedOutput& output)
    : ckpt_(checkpoint), plan_(plan), out_(output) {
  first_layer_item_ = plan_.items.size();
  last_layer_end_ = plan_.items.size();
  for (size_t i = 0; i < plan_.items.size(); ++i) {
    if (plan_.items[i].layer < 0) continue;
    first_layer_item_ = std::min(first_layer_item_, i);
    last_layer_end_ = i + 1;
  }
  for (size_t j = 0; j < plan_.modules.size(); ++j) {
    const LinearModule& m = plan_.modules[j];
    if (!m.fused_group.empty()) group_members_[m.fused_group].push_back(static_cast<int64_t>(j));
  }
}

std::pair<size_t, size_t> PlanExporter::layer_items(int64_t layer) const {
  size_t begin = plan_.items.size(), end = 0;
  for (size_t i = first_layer_item_; i < last_layer_end_; ++i) {
    if (plan_.items[i].layer != layer) continue;
    begin = std::min(begin, i);
    end = i + 1;
  }
  return begin < end ? std::pair{begin, end} : std::pair{size_t{0}, size_t{0}};
}

bool PlanExporter::any_wanted(std::pair<size_t, size_t> range) const {
  for (size_t i = range.first; i < range.second; ++i) {
    for (const TensorSpec& s : plan_.items[i].outputs) {
      if (out_.wanted(s.name)) return true;
    }
  }
  return false;
}

PlanExporter::Source& PlanExporter::source_matrix(int64_t module) {
  auto it = decoded_.find(module);
  if (it != decoded_.end()) return it->second;
  const LinearModule& m = plan_.modules[static_cast<size_t>(module)];
  const std::string weight = m.name + ".weight";
  const TensorView t = ckpt_.tensor(weight);
  Source s;
  const size_t n = static_cast<size_t>(m.rows * m.cols);
  switch (t.dtype()) {
    case DType::kBF16:
      s.matrix = ConstMatrix::bf16({reinterpret_cast<const uint16_t*>(t.data), n}, m.rows, m.cols);
      break;
    case DType::kF32:
      s.matrix = ConstMatrix::f32({reinterpret_cast<const float*>(t.data), n}, m.rows, m.cols);
      break;
    case DType::kF16: {
      s.f32.resize(n);
      for (size_t i = 0; i < n; ++i) {
        uint16_t bits;
        std::memcpy(&bits, t.data + 2 * i, 2);
        s.f32[i] = f16_to_f32(bits);
      }
      s.matrix = ConstMatrix::f32(s.f32, m.rows, m.cols);
      break;
    }
    case DType::kF8E4M3:
      s.bf16 = dequantize_fp8_source(ckpt_, weight, m.rows, m.cols);
      s.matrix = ConstMatrix::bf16(s.bf16, m.rows, m.cols);
      break;
    default:
      fail("tensor ", weight, " has dtype ", dtype_name(t.dtype()),
           ": quantize reads BF16, F32, F16 or the official FP8 block format");
  }
  return decoded_.emplace(module, std::move(s)).first->second;
}

float PlanExporter::group_weight_amax(int64_t module) {
  const LinearModule& m = plan_.modules[static_cast<size_t>(module)];
  const std::string key = m.fused_group.empty() ? m.name : m.fused_group;
  if (auto it = group_amax_.find(key); it != group_amax_.end()) return it->second;
  float amax = 0.0f;
  if (m.fused_group.empty()) {
    amax = matrix_amax(source_matrix(module).matrix);
  } else {
    for (int64_t member : group_members_.at(m.fused_group)) {
      amax = std::max(amax, matrix_amax(source_matrix(member).matrix));
    }
  }
  group_amax_[key] = amax;
  return amax;
}

// The NVFP4 global scales of these items need their fused groups' weight amaxes: one task per
// group on all threads (they were one parallel region per matrix on the calling thread, ahead
// of the encoding). An error is that of the first failing group in plan order, as before.
void PlanExporter::compute_group_amaxes(const std::vector<size_t>& pending) {
  std::vector<std::string> keys;
  std::vector<std::vector<int64_t>> members;
  for (size_t i : pending) {
    const int64_t module = plan_.items[i].module;
    const LinearModule& m = plan_.modules[static_cast<size_t>(module)];
    if (m.scheme != WeightScheme::kNvfp4) continue;
    const std::string key = m.fused_group.empty() ? m.name : m.fused_group;
    if (group_amax_.count(key) != 0 || std::find(keys.begin(), keys.end(), key) != keys.end()) {
      continue;
    }
    keys.push_back(key);
    members.push_back(m.fused_group.empty() ? std::vector<int64_t>{module}
                                            : group_members_.at(m.fused_group));
    for (int64_t member : members.back()) source_matrix(member);  // decoded here, serially
  }
  if (keys.empty()) return;
  std::vector<float> amax(keys.size(), 0.0f);
  std::vector<std::exception_ptr> errors(keys.size());
  default_pool().run(static_cast<int64_t>(keys.size()), [&](int64_t g, int) {
    const SerialRowsScope serial;
    try {
      for (int64_t member : members[static_cast<size_t>(g)]) {
        amax[g] = std::max(amax[g], matrix_amax(decoded_.at(member).matrix));
      }
    } catch (...) {
      errors[static_cast<size_t>(g)] = std::current_exception();
    }
  });
  for (size_t g = 0; g < keys.size(); ++g) {
    if (errors[g]) std::rethrow_exception(errors[g]);
    group_amax_[keys[g]] = amax[g];
  }
}

PlanExporter::QuantizedJob PlanExporter::prepare_quantized(const ExportItem& item,
                                                           const LayerCalibration* cal,
                                                           const ExpertInputAmax* experts) {
  const LinearModule& m = plan_.modules[static_cast<size_t>(item.module)];
  QuantizedJob job;
  job.module = &m;
  if (m.input_scale) {
    M2_CHECK(cal != nullptr && experts != nullptr, m.name, ": input scale needs calibration");
    switch (m.kind) {
      case LinearKind::kAttentionQkv:
        job.input_amax = cal->qkv_input_amax;
        break;
      case LinearKind::kAttentionO:
        job.input_amax = cal->o_input_amax;
        break;
      case LinearKind::kExpertW13:
        job.input_amax = experts->w13[static_cast<size_t>(m.expert)];
        break;
      case LinearKind::kExpertW2:
        job.input_amax = experts->w2[static_cast<size_t>(m.expert)];
        break;
      case LinearKind::kRouter:
        job.input_amax = cal->router_input_amax;
        break;
      case LinearKind::kLmHead:
        fail(m.name, ": lm_head is never calibrated");
    }
  }
  job.weight_amax = m.scheme == WeightScheme::kNvfp4 ? group_weight_amax(item.module) : 0.0f;
  job.matrix = source_matrix(item.module).matrix;
  return job;
}

std::vector<EncodedTensor> PlanExporter::encode_job(const QuantizedJob& job) const {
  LinearEncodeOptions options;
  options.layout = plan_.layout;
  options.ct_work_dtype = plan_.ct_work_dtype;
  return encode_quantized_linear(job.module->name, job.matrix, job.module->scheme, options,
                                 job.weight_amax, job.input_amax);
}

void PlanExporter::write_encoded(const ExportItem& item,
                                 const std::vector<EncodedTensor>& tensors) {
  Timer timer;
  for (const EncodedTensor& t : tensors) {
    M2_CHECK(t.spec.name == item.outputs[&t - tensors.data()].name, t.spec.name,
             ": differs from the plan");
    out_.write(t.spec.name, t.bytes);
  }
  write_seconds_ += timer.seconds();
}

bool PlanExporter::needs_calibration(const ExportItem& item, const LinearModule* module) {
  if (item.kind == ExportItemKind::kKvScales) return true;
  return item.kind == ExportItemKind::kQuantized && module != nullptr && module->input_scale;
}

// The window's quantized matrices are encoded on all threads at once, one whole matrix per task
// (costliest first, claimed as threads come), then every item is written in plan order: the
// threads never wait for each other between matrices, as they did with one parallel region per
// matrix. Each matrix's bytes are the same either way (its rows are independent). Matrices that
// need no calibration are encoded before the statistics are asked for, so that they can be
// encoded while their layer still calibrates.
void PlanExporter::emit_window(const std::vector<size_t>& window,
                               const std::function<Calibrated()>& statistics) {
  if (window.empty()) return;
  std::vector<size_t> pending;
  bool pending_need_calibration = false;
  for (size_t i : window) {
    const ExportItem& item = plan_.items[i];
    if (item.kind != ExportItemKind::kQuantized) continue;
    pending.push_back(i);
    pending_need_calibration |=
        needs_calibration(item, &plan_.modules[static_cast<size_t>(item.module)]);
  }
  std::vector<std::vector<EncodedTensor>> encoded(pending.size());
  if (!pending.empty()) {
    const Calibrated cal = pending_need_calibration ? statistics() : Calibrated{};
    compute_group_amaxes(pending);
    std::vector<QuantizedJob> jobs;
    jobs.reserve(pending.size());
    for (size_t i : pending)
      jobs.push_back(prepare_quantized(plan_.items[i], cal.stats, cal.experts));
    std::vector<size_t> order(jobs.size());
    for (size_t k = 0; k < order.size(); ++k) order[k] = k;
    auto cost = [&](size_t k) { return jobs[k].matrix.rows * jobs[k].matrix.cols; };
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return cost(a) > cost(b); });
    default_pool().run(static_cast<int64_t>(jobs.size()), [&](int64_t task, int) {
      if (cancelled_ && cancelled_()) return;
      const SerialRowsScope serial;
      const size_t k = order[static_cast<size_t>(task)];
      encoded[k] = encode_job(jobs[k]);
    });
    M2_CHECK(!(cancelled_ && cancelled_()), "the export was stopped");
  }
  size_t k = 0;
  for (size_t i : window) {
    const ExportItem& item = plan_.items[i];
    if (item.kind == ExportItemKind::kQuantized) {
      write_encoded(item, encoded[k]);
      std::vector<EncodedTensor>().swap(encoded[k]);
      decoded_.erase(item.module);
      ++k;
      continue;
    }
    const Calibrated cal = needs_calibration(item, nullptr) ? statistics() : Calibrated{};
    emit_item(item, cal.stats, cal.experts);
  }
}

void PlanExporter::emit_item(const ExportItem& item, const LayerCalibration* cal,
                             const ExpertInputAmax* experts) {
  switch (item.kind) {
    case ExportItemKind::kCopy: {
      const TensorSpec& spec = item.outputs[0];
      if (out_.wanted(spec.name)) out_.write(spec.name, bytes_of(ckpt_.tensor(item.source)));
      return;
    }
    case ExportItemKind::kModelDtype: {
      const TensorSpec& spec = item.outputs[0];
      if (!out_.wanted(spec.name)) return;
      const TensorView t = ckpt_.tensor(item.source);
      if (t.dtype() == spec.dtype) {
        out_.write(spec.name, bytes_of(t));
        return;
      }
      Source& s = source_matrix(item.module);
      const int64_t rows = s.matrix.rows, cols = s.matrix.cols;
      if (spec.dtype == DType::kBF16) {
        std::vector<uint16_t> bits(static_cast<size_t>(rows * cols));
        std::vector<float> row(static_cast<size_t>(cols));
        for (int64_t r = 0; r < rows; ++r) {
          s.matrix.load(r, 0, cols, row.data());
          for (int64_t c = 0; c < cols; ++c) bits[r * cols + c] = f32_to_bf16(row[c]);
        }
        out_.write(spec.name, bytes_of(bits));
      } else {
        M2_CHECK(spec.dtype == DType::kF32, spec.name, ": unsupported model dtype");
        std::vector<float> values(static_cast<size_t>(rows * cols));
        for (int64_t r = 0; r < rows; ++r) s.matrix.load(r, 0, cols, values.data() + r * cols);
        out_.write(spec.name, bytes_of(values));
      }
      decoded_.erase(item.module);
      return;
    }
    case ExportItemKind::kQuantized: {
      const QuantizedJob job = prepare_quantized(item, cal, experts);
      write_encoded(item, encode_job(job));
      decoded_.erase(item.module);
      return;
    }
    case ExportItemKind::kKvScales: {
      M2_CHECK(cal != nullptr, "KV scales of layer ", item.layer, " need calibration");
      out_.write(item.outputs[0].name, kv_scale_bytes(cal->k_amax, item.outputs[0].dtype));
      out_.write(item.outputs[1].name, kv_scale_bytes(cal->v_amax, item.outputs[1].dtype));
      return;
    }
  }
}

void PlanExporter::emit(std::pair<size_t, size_t> range, const LayerCalibration* cal) {
  emit(range, CalibrationSource([cal] { return cal; }));
}

void PlanExporter::emit(std::pair<size_t, size_t> range, const CalibrationSource& calibration) {
  std::optional<ExpertInputAmax> experts;
  const LayerCalibration* stats = nullptr;
  bool asked = false;
  auto statistics = [&]() -> Calibrated {
    if (!asked) {
      asked = true;
      stats = calibration ? calibration() : nullptr;
      if (stats != nullptr) experts = resolve_expert_input_amax(*stats);
    }
    return {stats, experts ? &*experts : nullptr};
  };
  group_amax_.clear();
  // Whole-matrix parallelism needs several matrices per window; the source held at once (views
  // of the mapped checkpoint, or decoded FP8/F16 copies) is bounded by kTogetherBytes. With one
  // thread every item is a window of its own.
  constexpr int64_t kTogetherBytes = int64_t{256} << 20;
  const bool together = default_pool().size() > 1;
  std::vector<size_t> window;
  int64_t window_bytes = 0;
  for (size_t i = range.first; i < range.second; ++i) {
    const ExportItem& item = plan_.items[i];
    bool wanted = false;
    for (const TensorSpec& s : item.outputs) wanted |= out_.wanted(s.name);
    if (!wanted) continue;
    window.push_back(i);
    if (item.kind == ExportItemKind::kQuantized) {
      const LinearModule& m = plan_.modules[static_cast<size_t>(item.module)];
      window_bytes += m.rows * m.cols * 2;
    }
    if (!together || window_bytes >= kTogetherBytes) {
      emit_window(window, statistics);
      window.clear();
      window_bytes = 0;
    }
  }
  emit_window(window, statistics);
  decoded_.clear();
  group_amax_.clear();
}

void PlanExporter::release_source(std::pair<size_t, size_t> range) const {
  for (size_t i = range.first; i < range.second; ++i) {
    const ExportItem& item = plan_.items[i];
    if (item.source.empty()) continue;
    const TensorView t = ckpt_.tensor(item.source);
    release_mapped_pages(t.data, static_cast<size_t>(t.nbytes()));
    const std::string scales = item.source + "_scale_inv";
    if (ckpt_.has(scales)) {
      const TensorView s = ckpt_.tensor(scales);
      release_mapped_pages(s.data, static_cast<size_t>(s.nbytes()));
    }
  }
}

}  // namespace m2fp4
