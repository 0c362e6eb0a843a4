#include "kernels/cuda/device_weights.h"

#include "kernels/cuda/launch_plan.h"

namespace m2fp4::cuda {

DeviceWeightArena::DeviceWeightArena(const std::vector<const Weight*>& weights, Stream stream) {
  const UploadPlan plan = plan_upload(weights);
  arena_ = DeviceBuffer(plan.total_bytes);
  device_.reserve(weights.size());
  for (size_t i = 0; i < weights.size(); ++i) {
    const Weight& w = *weights[i];
    const UploadSlot& slot = plan.slots[i];
    device_.push_back(device_weight(w, slot, arena_.get()));
    copy_to_device(const_cast<void*>(device_.back().data), w.data, weight_data_bytes(w), stream);
    if (slot.scale_offset >= 0) {
      const void* scales = w.format == WeightFormat::kFp8Block128
                               ? static_cast<const void*>(w.block_scale)
                               : static_cast<const void*>(w.group_scale);
      copy_to_device(arena_.as<char>() + slot.scale_offset, scales, weight_scale_bytes(w), stream);
    }
  }
  stream_sync(stream);
}

}  // namespace m2fp4::cuda
