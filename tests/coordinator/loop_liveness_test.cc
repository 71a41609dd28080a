// The coordinator's loop never waits for a round's slow steps (issue: a 10.8 s held-out evaluation inside
// the commit made every healthy worker "dead" at every commit). Here each evaluation takes 5 s more than
// it would while workers must heartbeat every 300 ms (dead after 1.5 s without one), and a client floods
// status requests and never reads a reply: the coordinator answers a status request while the round
// closes, declares nobody dead, commits with the evaluated loss, and opens the next round with every worker.
#include "coordinator/coordinator.h"

#include <gtest/gtest.h>

#include <cmath>
#include <thread>

#include "tests/coordinator/daemon_test_util.h"

namespace tributary {
namespace daemontest {
namespace {

constexpr int64_t kEvaluationDelayMs = 5000;

class LoopLivenessTest : public CoordinatorDaemonTest {};

TEST_F(LoopLivenessTest, SlowEvaluationRunsOffTheLoopAndEveryWorkerStaysAlive) {
  World world;
  TempDir data;
  const JobSpec spec = world.Spec();
  CoordinatorOptions options = Options(world, data);
  options.heartbeat_interval_ms = 300;  // the scripted workers heartbeat every 300 ms
  options.heartbeat_misses = 5;
  options.evaluation_delay_ms = kEvaluationDelayMs;
  RunningCoordinator coordinator(options);
  ASSERT_TRUE(coordinator.ok());

  ScriptedWorker w1(coordinator.endpoint(), keys_, keys_.w1, "w1");
  ScriptedWorker w2(coordinator.endpoint(), keys_, keys_.w2, "w2");
  ASSERT_TRUE(w1.Register(WorkerCapabilities(world.num_examples, "")).accepted());
  ASSERT_TRUE(w2.Register(WorkerCapabilities(world.num_examples, "")).accepted());
  auto cli = Connect(coordinator.endpoint(), keys_, keys_.cli);
  auto job_id = SubmitYaml(*cli, EffectiveJobSpecYaml(spec));
  ASSERT_TRUE(job_id.ok()) << job_id.status().ToString();
  for (ScriptedWorker* w : {&w1, &w2}) ASSERT_TRUE(w->WaitForBody(Envelope::kRoundStart).has_value());

  auto replica = world.Replica();
  const TaskletResult r1 = Train(spec, 1, "w1", world, *replica);
  const TaskletResult r2 = Train(spec, 1, "w2", world, *replica);
  ASSERT_TRUE(w1.Upload(InlineUpload(*job_id, 1, "w1", r1)).accepted());
  ASSERT_TRUE(w2.Upload(InlineUpload(*job_id, 1, "w2", r2)).accepted());

  // Both workers heartbeat on their own threads while round 1 closes, and wait for round 2.
  std::optional<Message> committed[2], next_start[2];
  std::thread threads[2];
  ScriptedWorker* workers[2] = {&w1, &w2};
  for (int i = 0; i < 2; ++i) {
    threads[i] = std::thread([&, i] {
      committed[i] = workers[i]->WaitForBody(Envelope::kRoundCommitted);
      next_start[i] = workers[i]->WaitFor(
          [](const Message& m) { return m.envelope.has_round_start() && m.envelope.round_start().round() == 2; });
    });
  }
  // A client that sends 5000 status requests and never reads: its replies are dropped or refused over its
  // rate, never waited for.
  auto deaf = Connect(coordinator.endpoint(), keys_, keys_.stranger);
  for (int i = 0; i < 5000; ++i) {
    Envelope get = transport::NewEnvelope("deaf");
    get.mutable_get_job()->set_job_id(*job_id);
    ASSERT_TRUE(deaf->Send(get).ok());
  }
  // The loop answers while the evaluation runs: the job is still at committed round 0. (Were the
  // evaluation on the loop, this reply would come after the commit and say round 1.)
  auto during = GetJobReply(*cli, *job_id);
  ASSERT_TRUE(during.ok()) << during.status().ToString();
  EXPECT_EQ(during->job().round(), 0u);
  for (std::thread& t : threads) t.join();

  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(committed[i].has_value()) << workers[i]->worker_id();
    EXPECT_EQ(committed[i]->envelope.round_committed().round(), 1u);
    EXPECT_EQ(committed[i]->envelope.round_committed().participants(), 2u);
    ASSERT_TRUE(next_start[i].has_value()) << workers[i]->worker_id();
  }
  EXPECT_FALSE(sink_->Contains("declared dead"));
  EXPECT_FALSE(sink_->Contains("the loop did not run"));
  auto after = GetJobReply(*cli, *job_id);
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_EQ(after->job().round(), 1u);
  EXPECT_TRUE(std::isfinite(after->job().heldout_loss()));  // evaluated, and recorded with the round
  ASSERT_EQ(after->workers_size(), 2);                      // round 2's participants: both workers
  EXPECT_EQ(after->workers(0), "w1");
  EXPECT_EQ(after->workers(1), "w2");
}

}  // namespace
}  // namespace daemontest
}  // namespace tributary
