// The hand-off between the worker's control and compute threads: repeated RoundStarts are dropped
// while queued or being worked on, RoundCommitted records the newest committed round, Close wakes Pop.
#include "worker/work_queue.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace tributary {
namespace {

using std::chrono::milliseconds;

v1::RoundStart Start(const std::string& job, uint64_t round) {
  v1::RoundStart start;
  start.set_job_id(job);
  start.set_round(round);
  start.set_committed_round(round - 1);
  return start;
}

v1::RoundCommitted Committed(const std::string& job, uint64_t round) {
  v1::RoundCommitted committed;
  committed.set_job_id(job);
  committed.set_round(round);
  return committed;
}

TEST(WorkQueueTest, RepeatedRoundStartsAreDroppedWhileQueuedOrBeingWorkedOn) {
  WorkQueue queue("worker 'w1'");
  queue.PushStart(Start("j1", 2));
  queue.PushStart(Start("j1", 2));  // queued already
  queue.PushStart(Start("j2", 2));  // another job
  auto first = queue.Pop(milliseconds(0));
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(first->is_start);
  EXPECT_EQ(first->start.job_id(), "j1");
  queue.PushStart(Start("j1", 2));  // being worked on
  queue.PushStart(Start("j1", 3));  // the next round is not a repeat
  auto second = queue.Pop(milliseconds(0));
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->start.job_id(), "j2");
  auto third = queue.Pop(milliseconds(0));
  ASSERT_TRUE(third.has_value());
  EXPECT_EQ(third->start.job_id(), "j1");
  EXPECT_EQ(third->start.round(), 3u);
  EXPECT_FALSE(queue.Pop(milliseconds(0)).has_value());

  queue.Done();  // (j1, 3) finished: a repeat of it is queued again (the upload is re-sent)
  queue.PushStart(Start("j1", 3));
  EXPECT_TRUE(queue.Pop(milliseconds(0)).has_value());
}

TEST(WorkQueueTest, RoundCommittedIsQueuedInOrderAndRecordsTheNewestRound) {
  WorkQueue queue("worker 'w1'");
  EXPECT_EQ(queue.CommittedSeen("j1"), 0u);
  queue.PushCommitted(Committed("j1", 3));
  queue.PushCommitted(Committed("j1", 2));  // an older one does not lower it
  queue.PushStart(Start("j1", 4));
  EXPECT_EQ(queue.CommittedSeen("j1"), 3u);
  EXPECT_EQ(queue.CommittedSeen("j2"), 0u);
  auto a = queue.Pop(milliseconds(0));
  auto b = queue.Pop(milliseconds(0));
  auto c = queue.Pop(milliseconds(0));
  ASSERT_TRUE(a && b && c);
  EXPECT_FALSE(a->is_start);
  EXPECT_EQ(a->committed.round(), 3u);
  EXPECT_EQ(b->committed.round(), 2u);
  EXPECT_TRUE(c->is_start);
}

TEST(WorkQueueTest, CloseWakesAWaitingPop) {
  WorkQueue queue("worker 'w1'");
  std::thread closer([&] {
    std::this_thread::sleep_for(milliseconds(100));
    queue.Close();
  });
  const auto started = std::chrono::steady_clock::now();
  EXPECT_FALSE(queue.Pop(milliseconds(20000)).has_value());
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(10));
  closer.join();
  queue.PushStart(Start("j1", 1));
  EXPECT_FALSE(queue.Pop(milliseconds(0)).has_value()) << "a closed queue hands out nothing";
}

}  // namespace
}  // namespace tributary
