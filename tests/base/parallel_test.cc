#include "base/parallel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

namespace tributary {
namespace {

TEST(ParallelTest, ForCoversRangeExactlyOnce) {
  for (int threads : {1, 2, 3, 8}) {
    SetNumThreads(threads);
    for (int64_t n : {0, 1, 7, 1000, 100003}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      ParallelFor(0, n, 3, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) hits[static_cast<size_t>(i)]++;
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "threads " << threads;
    }
  }
  SetNumThreads(0);
}

TEST(ParallelTest, TasksRunAllAndNestedCallsAreSerial) {
  std::atomic<int64_t> sum{0};
  ParallelTasks(100, [&](int64_t t) {
    // A nested parallel loop must not deadlock.
    ParallelFor(0, 10, 1, [&](int64_t lo, int64_t hi) { sum += (hi - lo) * t; });
  });
  EXPECT_EQ(sum.load(), 10 * (99 * 100 / 2));
  EXPECT_GE(NumThreads(), 1);
}

}  // namespace
}  // namespace tributary
