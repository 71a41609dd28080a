#include "engine/device.h"

namespace tributary {

#ifdef TRIBUTARY_HAVE_CUDA
// Defined in engine/cuda/device_query.cu.
AcceleratorReport CudaQueryAccelerators();
#endif

AcceleratorReport QueryAccelerators() {
#ifdef TRIBUTARY_HAVE_CUDA
  return CudaQueryAccelerators();
#else
  AcceleratorReport report;
  report.note = "built without CUDA (TRIBUTARY_CUDA=OFF or nvcc not found at build time)";
  return report;
#endif
}

}  // namespace tributary
