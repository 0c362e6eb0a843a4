// The CUDA backend's interface in a build without nvcc (M2FP4_CUDA=OFF): queries answer "no
// device", everything else fails with one clear message. With CUDA the .cu files define these.
#if !defined(M2FP4_WITH_CUDA)

#include "base/error.h"
#include "kernels/cuda/cuda_kernels.h"

namespace m2fp4::cuda {

namespace {
[[noreturn]] void no_cuda() {
  fail("built without CUDA: reconfigure with nvcc available (cmake -DM2FP4_CUDA=ON)");
}
}  // namespace

bool built_with_cuda() {
  return false;
}
int device_count(std::string* why) {
  if (why) *why = "built without CUDA";
  return 0;
}
void require_device() {
  no_cuda();
}
std::string device_name() {
  no_cuda();
}
Stream stream_create() {
  no_cuda();
}
void stream_destroy(Stream) {}
void stream_sync(Stream) {
  no_cuda();
}
void* device_alloc(int64_t) {
  no_cuda();
}
void device_free(void*) {}
void copy_to_device(void*, const void*, int64_t, Stream) {
  no_cuda();
}
void copy_to_host(void*, const void*, int64_t, Stream) {
  no_cuda();
}
void device_memset(void*, int, int64_t, Stream) {
  no_cuda();
}
void capture_begin(Stream) {
  no_cuda();
}
GraphExec capture_end(Stream) {
  no_cuda();
}
void graph_launch(GraphExec, Stream) {
  no_cuda();
}
void graph_destroy(GraphExec) {}
void matmul(const Weight&, const float*, int64_t, float*, Stream) {
  no_cuda();
}
void expert_matmul_slots(const Weight*, const Weight&, const int32_t*, int64_t, const float*,
                         int64_t, float*, Stream) {
  no_cuda();
}
void expert_matmul_grouped(const Weight*, const Weight&, const int32_t*, const int32_t*, int64_t,
                           const float*, const int32_t*, int64_t, float*, Stream) {
  no_cuda();
}
void expert_sort(const int32_t*, int64_t, int64_t, int32_t*, int32_t*, int32_t*, int32_t*, int32_t*,
                 Stream) {
  no_cuda();
}
void rms_norm(const float*, const float*, int64_t, int64_t, float, float*, Stream) {
  no_cuda();
}
void rope_neox(float*, int64_t, int64_t, int64_t, int64_t, const int32_t*, double, Stream) {
  no_cuda();
}
void route_sigmoid_topk(const float*, const float*, int64_t, int64_t, int64_t, int32_t*, float*,
                        Stream) {
  no_cuda();
}
void silu_mul(const float*, const float*, int64_t, float*, Stream) {
  no_cuda();
}
void moe_combine(float*, const float*, const int32_t*, const float*, const int32_t*, int64_t,
                 int64_t, int64_t, Stream) {
  no_cuda();
}
void add_inplace(float*, const float*, int64_t, Stream) {
  no_cuda();
}
void embed_rows(const Weight&, const int32_t*, int64_t, float*, Stream) {
  no_cuda();
}
void gather_rows(const float*, const int32_t*, int64_t, int64_t, float*, Stream) {
  no_cuda();
}
void kv_store(const float*, const float*, int64_t, int64_t, const int32_t*, void*, void*, bool,
              float, float, Stream) {
  no_cuda();
}
void attention(const float*, const void*, const void*, bool, float, float, const int32_t*, int64_t,
               int64_t, int64_t, int64_t, int64_t, float*, Stream) {
  no_cuda();
}

}  // namespace m2fp4::cuda

#endif  // !M2FP4_WITH_CUDA
