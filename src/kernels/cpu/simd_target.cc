#include "kernels/cpu/simd_target.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/simd_target.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace m2fp4 {
namespace HWY_NAMESPACE {
const char* SimdTargetName() {
  return hwy::TargetName(HWY_TARGET);
}
}  // namespace HWY_NAMESPACE
}  // namespace m2fp4
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace m2fp4 {
HWY_EXPORT(SimdTargetName);
const char* kernels_simd_target() {
  return HWY_DYNAMIC_DISPATCH(SimdTargetName)();
}
}  // namespace m2fp4
#endif
