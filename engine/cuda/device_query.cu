// CUDA side of QueryAccelerators(): runtime, driver and cuBLAS versions plus one entry per device.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "engine/device.h"

namespace tributary {

AcceleratorReport CudaQueryAccelerators() {
  AcceleratorReport report;
  report.cuda_compiled_in = true;
  cudaRuntimeGetVersion(&report.cuda_runtime_version);
  int major = 0, minor = 0, patch = 0;
  if (cublasGetProperty(MAJOR_VERSION, &major) == CUBLAS_STATUS_SUCCESS &&
      cublasGetProperty(MINOR_VERSION, &minor) == CUBLAS_STATUS_SUCCESS &&
      cublasGetProperty(PATCH_LEVEL, &patch) == CUBLAS_STATUS_SUCCESS) {
    report.cublas_version = major * 10000 + minor * 100 + patch;
  }
  if (cudaDriverGetVersion(&report.driver_version) != cudaSuccess || report.driver_version == 0) {
    report.driver_version = 0;
    report.note = "no CUDA driver installed";
    return report;
  }
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    report.note = std::string("no usable CUDA device: ") + cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return report;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    GpuInfo gpu;
    gpu.index = i;
    gpu.name = prop.name;
    gpu.total_memory_bytes = static_cast<int64_t>(prop.totalGlobalMem);
    gpu.compute_capability_major = prop.major;
    gpu.compute_capability_minor = prop.minor;
    gpu.multiprocessors = prop.multiProcessorCount;
    report.gpus.push_back(gpu);
  }
  if (report.gpus.empty()) report.note = "CUDA driver present but no device found";
  return report;
}

}  // namespace tributary
