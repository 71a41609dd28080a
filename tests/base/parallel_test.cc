#include "base/parallel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <new>
#include <stdexcept>
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

// A task that throws (std::bad_alloc in a kernel) does not terminate the process from a pool thread:
// the caller gets the exception once the job is over, and the pool runs the next job normally.
TEST(ParallelTest, AThrowingTaskReachesTheCallerAndThePoolGoesOn) {
  SetNumThreads(4);
  for (int64_t thrower : {0, 1, 63}) {  // the calling thread's first task, a pool thread's, the last
    std::atomic<int64_t> ran{0};
    EXPECT_THROW(ParallelTasks(64,
                               [&](int64_t t) {
                                 if (t == thrower) throw std::bad_alloc();
                                 ++ran;
                               }),
                 std::bad_alloc)
        << "task " << thrower;
    EXPECT_LT(ran.load(), 64);
  }
  // Inside a nested (serial) loop too, and with another exception type.
  EXPECT_THROW(ParallelTasks(8,
                             [&](int64_t t) {
                               ParallelFor(0, 4, 1, [&](int64_t lo, int64_t) {
                                 if (t == 5 && lo == 2) throw std::runtime_error("nested");
                               });
                             }),
               std::runtime_error);
  std::atomic<int64_t> sum{0};
  ParallelFor(0, 1000, 1, [&](int64_t lo, int64_t hi) { sum += hi - lo; });
  EXPECT_EQ(sum.load(), 1000);
  SetNumThreads(0);
}

}  // namespace
}  // namespace tributary
