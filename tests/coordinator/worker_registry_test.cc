// The worker registry (coordinator/worker_registry.h) on a real store: compute calibrations (the latest
// per (worker, job) is kept, bad rates are refused, a new registration starts afresh), and liveness (a stall
// of the caller's loop is excused, dead workers are forgotten after forget_after_ms).
#include "coordinator/worker_registry.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "tests/common/temp_dir.h"

namespace tributary {
namespace {

const transport::PeerInfo kPeer{"route", "", "", "127.0.0.1"};

class RegistryCalibrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = checkpoint::CheckpointStore::Open(dir_.path() + "/store");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    registry_ =
        std::make_unique<WorkerRegistry>(store_.get(), WorkerRegistryOptions{/*insecure=*/true, 1000, 3, 60000});
    for (const char* id : {"w1", "w2"}) Register(id);
  }

  void Register(const std::string& id) {
    v1::Register reg;
    reg.set_worker_id(id);
    reg.mutable_capabilities()->set_cpu_cores(4);
    ASSERT_TRUE(registry_->Register(reg, kPeer, 1000).ok());
  }

  // A heartbeat of `worker` carrying (job, tokens/s, measured ms) calibrations.
  Status Heartbeat(const std::string& worker, const std::vector<std::tuple<std::string, double, int64_t>>& reports) {
    v1::Heartbeat hb;
    hb.set_worker_id(worker);
    hb.set_state("idle");
    for (const auto& [job, rate, ms] : reports) {
      v1::JobCalibration* c = hb.add_calibrations();
      c->set_job_id(job);
      c->set_tokens_per_s(rate);
      c->set_measured_unix_ms(ms);
    }
    return registry_->Heartbeat(hb, kPeer, 2000).status();
  }

  static v1::Heartbeat MakeHeartbeat(const std::string& worker) {
    v1::Heartbeat hb;
    hb.set_worker_id(worker);
    hb.set_state("idle");
    return hb;
  }

  testutil::TempDir dir_;
  std::unique_ptr<checkpoint::CheckpointStore> store_;
  std::unique_ptr<WorkerRegistry> registry_;
};

TEST_F(RegistryCalibrationTest, KeepsTheLatestPerWorkerAndJob) {
  ASSERT_TRUE(Heartbeat("w1", {{"job-a", 500, 10}, {"job-b", 70, 10}}).ok());
  ASSERT_TRUE(Heartbeat("w2", {{"job-a", 900, 11}}).ok());
  EXPECT_EQ(registry_->TokensPerSecondOf("job-a"), (std::map<std::string, double>{{"w1", 500}, {"w2", 900}}));
  EXPECT_EQ(registry_->TokensPerSecondOf("job-b"), (std::map<std::string, double>{{"w1", 70}}));
  EXPECT_TRUE(registry_->TokensPerSecondOf("job-c").empty());

  // A newer measurement replaces the kept one; an older one does not.
  ASSERT_TRUE(Heartbeat("w1", {{"job-a", 650, 20}}).ok());
  EXPECT_EQ(registry_->TokensPerSecondOf("job-a").at("w1"), 650);
  ASSERT_TRUE(Heartbeat("w1", {{"job-a", 100, 15}}).ok());
  EXPECT_EQ(registry_->TokensPerSecondOf("job-a").at("w1"), 650);
  // A heartbeat without calibrations keeps what was measured.
  ASSERT_TRUE(Heartbeat("w1", {}).ok());
  EXPECT_EQ(registry_->TokensPerSecondOf("job-b").at("w1"), 70);
  const WorkerEntry* w1 = registry_->Find("w1");
  ASSERT_NE(w1, nullptr);
  ASSERT_EQ(w1->calibrations.size(), 2u);
  EXPECT_EQ(w1->calibrations.at("job-a").measured_unix_ms(), 20);
}

TEST_F(RegistryCalibrationTest, RefusesRatesThatAreNotFinitePositiveAndSane) {
  ASSERT_TRUE(Heartbeat("w1", {{"job-a", 500, 10}}).ok());
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (double bad : {nan, inf, -inf, 0.0, -3.0, 2 * WorkerRegistry::kMaxTokensPerSecond}) {
    SCOPED_TRACE(bad);
    // The heartbeat itself is fine (the worker stays alive); only the rate is refused.
    EXPECT_TRUE(Heartbeat("w1", {{"job-a", bad, 30}, {"job-new", bad, 30}}).ok());
    EXPECT_EQ(registry_->TokensPerSecondOf("job-a").at("w1"), 500) << "the last good value stays";
    EXPECT_TRUE(registry_->TokensPerSecondOf("job-new").empty());
  }
  // The largest sane rate is accepted.
  ASSERT_TRUE(Heartbeat("w1", {{"job-a", WorkerRegistry::kMaxTokensPerSecond, 40}}).ok());
  EXPECT_EQ(registry_->TokensPerSecondOf("job-a").at("w1"), WorkerRegistry::kMaxTokensPerSecond);
}

TEST_F(RegistryCalibrationTest, RefusesOversizedCalibrationListsAndIds) {
  std::vector<std::tuple<std::string, double, int64_t>> many;
  for (int i = 0; i <= WorkerRegistry::kMaxCalibrations; ++i) many.emplace_back("job-" + std::to_string(i), 10, 1);
  Status status = Heartbeat("w1", many);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("worker 'w1'"), std::string::npos) << status.message();
  EXPECT_EQ(Heartbeat("w1", {{"", 10, 1}}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Heartbeat("w1", {{std::string(1000, 'j'), 10, 1}}).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(registry_->Find("w1")->calibrations.empty());
}

TEST_F(RegistryCalibrationTest, KeepsTheNewestJobsWhenAWorkerReportsTooMany) {
  std::vector<std::tuple<std::string, double, int64_t>> full;
  for (int i = 0; i < WorkerRegistry::kMaxCalibrations; ++i) full.emplace_back("job-" + std::to_string(i), 10, 100 + i);
  ASSERT_TRUE(Heartbeat("w1", full).ok());
  ASSERT_TRUE(Heartbeat("w1", {{"job-late", 10, 1000}}).ok());
  const WorkerEntry* w1 = registry_->Find("w1");
  EXPECT_EQ(w1->calibrations.size(), static_cast<size_t>(WorkerRegistry::kMaxCalibrations));
  EXPECT_EQ(w1->calibrations.count("job-0"), 0u) << "the oldest measurement goes";
  EXPECT_EQ(w1->calibrations.count("job-1"), 1u);
  EXPECT_EQ(w1->calibrations.count("job-late"), 1u);
}

TEST_F(RegistryCalibrationTest, RegisteringAgainForgetsTheOldProcesssRates) {
  ASSERT_TRUE(Heartbeat("w1", {{"job-a", 500, 10}}).ok());
  Register("w1");
  EXPECT_TRUE(registry_->TokensPerSecondOf("job-a").empty());
  ASSERT_TRUE(Heartbeat("w1", {{"job-a", 480, 5}}).ok()) << "a new process's measurement counts even if older";
  EXPECT_EQ(registry_->TokensPerSecondOf("job-a").at("w1"), 480);
}

TEST_F(RegistryCalibrationTest, AStalledLoopKillsNobodyAndDeadWorkersAreForgottenLater) {
  // Registered at 1000 ms; dead after 3 missed 1000 ms heartbeats.
  EXPECT_EQ(registry_->MarkDead(3900), 2);
  // The loop could not read from 4 s to 14 s: those 10 s of silence are excused (last heartbeats at 11 s).
  registry_->ExcuseStall(10000, 14000);
  EXPECT_EQ(registry_->MarkDead(14000), 2);
  ASSERT_TRUE(registry_->Heartbeat(MakeHeartbeat("w1"), kPeer, 14000).ok());
  EXPECT_EQ(registry_->MarkDead(14100), 1);  // w2: 3100 ms without a heartbeat while the loop read
  ASSERT_NE(registry_->Find("w2"), nullptr);
  EXPECT_TRUE(registry_->Find("w2")->declared_dead);
  // Forgotten 60 s after its last (excused) heartbeat, not before; w1 keeps heartbeating.
  for (int64_t t = 15000; t <= 72000; t += 1000) ASSERT_TRUE(registry_->Heartbeat(MakeHeartbeat("w1"), kPeer, t).ok());
  EXPECT_EQ(registry_->MarkDead(71000), 1);
  EXPECT_NE(registry_->Find("w2"), nullptr);
  EXPECT_EQ(registry_->MarkDead(71100), 1);
  EXPECT_EQ(registry_->Find("w2"), nullptr);
  EXPECT_EQ(registry_->All().size(), 1u);
  // A worker that does not read its messages is dead at once (both here share the peer's routing id).
  EXPECT_EQ(registry_->MarkNotReading("route"), "w1");
  EXPECT_EQ(registry_->MarkNotReading("route"), "");  // w2 is forgotten, w1 already dead
  EXPECT_FALSE(registry_->Find("w1")->inventory.alive);
  // It may come back: a registration makes it known and alive again.
  Register("w2");
  ASSERT_NE(registry_->Find("w2"), nullptr);
}

}  // namespace
}  // namespace tributary
