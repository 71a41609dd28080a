// Which alive workers a job's round is planned with (coordinator/round_candidates.h): the workers whose
// last heartbeat reports a problem for the job are left out, each with its reason.
#include "coordinator/round_candidates.h"

#include <gtest/gtest.h>

namespace tributary {
namespace {

WorkerInventory Worker(const std::string& id) {
  WorkerInventory w;
  w.worker_id = id;
  w.alive = true;
  return w;
}

v1::JobProblem Problem(const std::string& worker, uint64_t round, const std::string& reason) {
  v1::JobProblem p;
  p.set_worker_id(worker);
  p.set_job_id("j1");
  p.set_round(round);
  p.set_reason(reason);
  return p;
}

std::vector<std::string> Ids(const std::vector<WorkerInventory>& workers) {
  std::vector<std::string> ids;
  for (const WorkerInventory& w : workers) ids.push_back(w.worker_id);
  return ids;
}

TEST(RoundCandidatesTest, NoProblemsKeepsEveryAliveWorker) {
  const RoundCandidates c = LeaveOutWorkersThatCannotTrain({Worker("w1"), Worker("w2")}, {});
  EXPECT_EQ(Ids(c.inventory), (std::vector<std::string>{"w1", "w2"}));
  EXPECT_TRUE(c.left_out.empty());
}

TEST(RoundCandidatesTest, LeavesOutTheWorkersThatReportAProblemWithTheirReason) {
  const RoundCandidates c = LeaveOutWorkersThatCannotTrain(
      {Worker("w3"), Worker("w1"), Worker("w2")},
      {Problem("w3", 4, "RoundStart: loss is nan"), Problem("w1", 2, "RoundStart: out of memory (std::bad_alloc)"),
       Problem("w1", 3, "a second problem of the same job: the first decides"), Problem("gone", 1, "not alive")});
  EXPECT_EQ(Ids(c.inventory), std::vector<std::string>{"w2"});
  ASSERT_EQ(c.left_out.size(), 2u);
  EXPECT_EQ(c.left_out[0].worker_id, "w1");
  EXPECT_EQ(c.left_out[0].reason, "cannot train: RoundStart: out of memory (std::bad_alloc)");
  EXPECT_EQ(c.left_out[1].worker_id, "w3");
  EXPECT_EQ(LeftOutLine(c.left_out[0], 5),
            "worker 'w1' left out of round 5: cannot train: RoundStart: out of memory (std::bad_alloc)");
  EXPECT_EQ(LeftOutLine(c.left_out[1], 5), "worker 'w3' left out of round 5: cannot train: RoundStart: loss is nan");
}

// Only the heartbeat's current list decides: a problem recorded for an earlier round (or this one) that
// the worker no longer reports excludes nothing.
TEST(RoundCandidatesTest, AProblemNoLongerReportedExcludesNothing) {
  const std::vector<WorkerInventory> alive = {Worker("w1"), Worker("w2")};
  EXPECT_EQ(LeaveOutWorkersThatCannotTrain(alive, {Problem("w1", 7, "transient")}).left_out.size(), 1u);
  const RoundCandidates later = LeaveOutWorkersThatCannotTrain(alive, {});
  EXPECT_EQ(Ids(later.inventory), (std::vector<std::string>{"w1", "w2"}));
  EXPECT_TRUE(later.left_out.empty());
}

TEST(RoundCandidatesTest, EveryWorkerReportingAProblemLeavesNoneAndSaysSoWhenPlannedWithThem) {
  const RoundCandidates c = LeaveOutWorkersThatCannotTrain({Worker("w1"), Worker("w2")},
                                                           {Problem("w2", 1, ""), Problem("w1", 1, "dataset gone")});
  EXPECT_TRUE(c.inventory.empty());
  ASSERT_EQ(c.left_out.size(), 2u);
  EXPECT_EQ(c.left_out[1].reason, "cannot train: no reason given");
  EXPECT_EQ(PlannedWithThemLine(c.left_out, 2, "round 2: 0 of 0 workers are eligible"),
            "round 2: planned with the 2 worker(s) that report they cannot train the job (w1, w2), since without "
            "them: round 2: 0 of 0 workers are eligible");
}

}  // namespace
}  // namespace tributary
