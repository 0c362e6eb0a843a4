// Weights uploaded once to device memory in their stored formats (no decode, no upcast): one
// arena laid out by plan_upload(), and a device-side Weight descriptor per weight.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cuda/cuda_kernels.h"
#include "kernels/weight.h"

namespace m2fp4::cuda {

class DeviceWeightArena {
 public:
  DeviceWeightArena() = default;
  // Copies every weight's data and scales to the device; returns once the copies are done (the
  // host buffers may be released afterwards).
  DeviceWeightArena(const std::vector<const Weight*>& weights, Stream stream);

  // The device descriptor of weights[i] (pointers into the arena).
  const Weight& operator[](size_t i) const { return device_[i]; }
  size_t size() const { return device_.size(); }
  int64_t bytes() const { return arena_.bytes(); }

 private:
  DeviceBuffer arena_;
  std::vector<Weight> device_;
};

}  // namespace m2fp4::cuda
