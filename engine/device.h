// Accelerator discovery for the worker's capability report and for backend selection.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace tributary {

struct GpuInfo {
  int index = 0;
  std::string name;
  int64_t total_memory_bytes = 0;
  int compute_capability_major = 0;
  int compute_capability_minor = 0;
  int multiprocessors = 0;
};

struct AcceleratorReport {
  bool cuda_compiled_in = false;
  int cuda_runtime_version = 0;  // e.g. 13000; 0 when not compiled in
  int cublas_version = 0;        // e.g. 130000; 0 when not compiled in
  int driver_version = 0;        // 0 when no driver is installed
  std::vector<GpuInfo> gpus;     // empty when no device is present
  std::string note;              // why the list is empty, when it is
};

// Never fails: a machine without CUDA, driver or device yields an empty list and a note.
AcceleratorReport QueryAccelerators();

}  // namespace tributary
