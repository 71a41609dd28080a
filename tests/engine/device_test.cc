#include "engine/device.h"

#include <gtest/gtest.h>

namespace tributary {
namespace {

TEST(DeviceTest, ReportIsConsistentWithTheBuild) {
  AcceleratorReport r = QueryAccelerators();
#ifdef TRIBUTARY_HAVE_CUDA
  EXPECT_TRUE(r.cuda_compiled_in);
  EXPECT_GE(r.cuda_runtime_version, 12000);
  EXPECT_GT(r.cublas_version, 0);
#else
  EXPECT_FALSE(r.cuda_compiled_in);
  EXPECT_EQ(r.cuda_runtime_version, 0);
#endif
  if (r.gpus.empty()) {
    EXPECT_FALSE(r.note.empty()) << "an empty GPU list must say why";
  }
  for (const GpuInfo& g : r.gpus) {
    EXPECT_FALSE(g.name.empty());
    EXPECT_GT(g.total_memory_bytes, 0);
    EXPECT_GE(g.compute_capability_major, 5);
  }
}

TEST(DeviceTest, GpuPropertiesWhenADeviceIsPresent) {
  AcceleratorReport r = QueryAccelerators();
  if (r.gpus.empty()) GTEST_SKIP() << "no CUDA device present: " << r.note;
  EXPECT_GT(r.driver_version, 0);
  EXPECT_GT(r.gpus[0].multiprocessors, 0);
}

}  // namespace
}  // namespace tributary
