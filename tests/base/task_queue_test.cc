// TaskQueue (base/task_queue.h): steps run in order on the queue's thread, `done` only from Poll on the
// caller's thread, and destruction drops what has not started without calling any pending `done`.
#include "base/task_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

namespace tributary {
namespace {

// Polls until `count` dones ran (a failure after 10 s, not a timing assertion).
size_t PollUntil(TaskQueue& queue, size_t count) {
  size_t ran = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (ran < count && std::chrono::steady_clock::now() < deadline) {
    ran += queue.Poll();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return ran;
}

TEST(TaskQueueTest, StepsRunInOrderOffTheCallerAndDoneRunsOnlyInPoll) {
  TaskQueue queue("test");
  const std::thread::id caller = std::this_thread::get_id();
  std::vector<int> work_order, done_order;
  std::atomic<bool> work_on_caller{false};
  for (int i = 0; i < 20; ++i) {
    queue.Post(
        [&, i] {
          if (std::this_thread::get_id() == caller) work_on_caller = true;
          work_order.push_back(i);  // only the queue's thread writes it
        },
        [&, i] {
          EXPECT_EQ(std::this_thread::get_id(), caller);
          done_order.push_back(i);
        });
  }
  EXPECT_EQ(PollUntil(queue, 20), 20u);
  EXPECT_FALSE(work_on_caller);
  std::vector<int> expected(20);
  for (int i = 0; i < 20; ++i) expected[i] = i;
  EXPECT_EQ(work_order, expected);
  EXPECT_EQ(done_order, expected);
  EXPECT_EQ(queue.pending(), 0u);
}

TEST(TaskQueueTest, PostReturnsWhileAStepRunsAndDoneWaitsForPoll) {
  TaskQueue queue("test");
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  bool done = false;
  queue.Post([released] { released.wait(); }, [&] { done = true; });
  queue.Post(nullptr, nullptr);  // returns although the first step blocks
  EXPECT_EQ(queue.pending(), 2u);
  EXPECT_EQ(queue.Poll(), 0u);
  EXPECT_FALSE(done);
  release.set_value();
  EXPECT_EQ(PollUntil(queue, 2), 2u);
  EXPECT_TRUE(done);
}

TEST(TaskQueueTest, DestructionWaitsForTheRunningStepAndDropsTheRest) {
  std::atomic<int> started{0};
  std::atomic<bool> first_finished{false};
  bool any_done = false;
  std::promise<void> running;
  {
    TaskQueue queue("test");
    queue.Post(
        [&] {
          ++started;
          running.set_value();
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          first_finished = true;
        },
        [&] { any_done = true; });
    queue.Post([&] { ++started; }, [&] { any_done = true; });
    running.get_future().wait();
  }
  EXPECT_TRUE(first_finished);
  EXPECT_EQ(started.load(), 1);
  EXPECT_FALSE(any_done);
}

}  // namespace
}  // namespace tributary
