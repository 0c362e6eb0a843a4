// Device, memory, stream and graph plumbing of the CUDA backend.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace m2fp4::cuda {

bool built_with_cuda() {
  return true;
}

int device_count(std::string* why) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    if (why) *why = cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky-free error state
    return 0;
  }
  if (n == 0 && why) *why = "the driver reports no device";
  return n;
}

void require_device() {
  std::string why;
  if (device_count(&why) == 0) fail("no CUDA device: ", why);
}

std::string device_name() {
  cudaDeviceProp prop{};
  int dev = 0;
  M2_CUDA(cudaGetDevice(&dev));
  M2_CUDA(cudaGetDeviceProperties(&prop, dev));
  return prop.name;
}

Stream stream_create() {
  require_device();
  cudaStream_t s = nullptr;
  M2_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return s;
}

void stream_destroy(Stream stream) {
  if (stream) cudaStreamDestroy(to_stream(stream));
}

void stream_sync(Stream stream) {
  M2_CUDA(cudaStreamSynchronize(to_stream(stream)));
}

void* device_alloc(int64_t bytes) {
  require_device();
  void* p = nullptr;
  M2_CHECK(bytes >= 0, "device_alloc: negative size ", bytes);
  if (bytes == 0) return nullptr;
  const cudaError_t err = cudaMalloc(&p, static_cast<size_t>(bytes));
  if (err != cudaSuccess) {
    cudaGetLastError();
    fail("CUDA: cannot allocate ", bytes, " bytes of device memory: ", cudaGetErrorString(err));
  }
  return p;
}

void device_free(void* p) {
  if (p) cudaFree(p);
}

void copy_to_device(void* dst, const void* src, int64_t bytes, Stream stream) {
  if (bytes > 0)
    M2_CUDA(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), cudaMemcpyHostToDevice,
                            to_stream(stream)));
}

void copy_to_host(void* dst, const void* src, int64_t bytes, Stream stream) {
  if (bytes > 0)
    M2_CUDA(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), cudaMemcpyDeviceToHost,
                            to_stream(stream)));
}

void device_memset(void* dst, int value, int64_t bytes, Stream stream) {
  if (bytes > 0)
    M2_CUDA(cudaMemsetAsync(dst, value, static_cast<size_t>(bytes), to_stream(stream)));
}

void capture_begin(Stream stream) {
  M2_CUDA(cudaStreamBeginCapture(to_stream(stream), cudaStreamCaptureModeThreadLocal));
}

GraphExec capture_end(Stream stream) {
  cudaGraph_t graph = nullptr;
  M2_CUDA(cudaStreamEndCapture(to_stream(stream), &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  M2_CUDA(err);
  return exec;
}

void graph_launch(GraphExec graph, Stream stream) {
  M2_CUDA(cudaGraphLaunch(static_cast<cudaGraphExec_t>(graph), to_stream(stream)));
}

void graph_destroy(GraphExec graph) {
  if (graph) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graph));
}

}  // namespace m2fp4::cuda
