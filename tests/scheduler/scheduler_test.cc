#include "scheduler/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace tributary {
namespace {

constexpr int64_t kGiB = int64_t{1} << 30;

WorkerInventory Worker(const std::string& id, int64_t memory_gib = 64, int gpus = 1, int64_t gpu_gib = 80) {
  WorkerInventory w;
  w.worker_id = id;
  w.cores = 16;
  w.memory_bytes = memory_gib * kGiB;
  w.gpu_count = gpus;
  w.gpu_memory_bytes = gpus > 0 ? gpu_gib * kGiB : 0;
  w.nics.push_back({"eth0", NicFabric::kEthernet, 25000, true, ""});
  w.datasets["dolly"] = 100;
  w.alive = true;
  w.last_heartbeat_ms = 1'000'000;
  return w;
}

std::vector<std::string> Ids(int n) {
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "w%03d", i);
    ids.push_back(buf);
  }
  return ids;
}

TEST(InventoryTest, NicFabricNamesRoundTrip) {
  for (NicFabric f : {NicFabric::kEthernet, NicFabric::kRoce, NicFabric::kInfiniband, NicFabric::kOther}) {
    auto parsed = ParseNicFabric(NicFabricName(f));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, f);
  }
  // Only a known fabric with a known speed counts for placement.
  EXPECT_TRUE(IsPlaceable({"ib0", NicFabric::kInfiniband, 200000, true, "ib-a"}));
  EXPECT_FALSE(IsPlaceable({"veth0", NicFabric::kOther, 10000, true, ""}));
  EXPECT_FALSE(IsPlaceable({"eth1", NicFabric::kEthernet, 0, false, ""}));
  auto bad = ParseNicFabric("myrinet");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'myrinet'"), std::string::npos);
}

TEST(InventoryTest, ValidateNamesWorkerAndField) {
  EXPECT_TRUE(ValidateInventory(Worker("a")).ok());
  WorkerInventory w = Worker("a");
  w.nics.push_back({"ib0", NicFabric::kInfiniband, 0, true, "fabric-1"});
  Status s = ValidateInventory(w);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "worker 'a': nic 'ib0': speed_mbps must be > 0, got 0");
  w = Worker("a");
  w.datasets["x"] = -1;
  EXPECT_NE(ValidateInventory(w).message().find("dataset 'x'"), std::string::npos);
  w = Worker("a", 64, 0);
  w.gpu_memory_bytes = kGiB;
  EXPECT_NE(ValidateInventory(w).message().find("gpu_memory_bytes"), std::string::npos);
  EXPECT_FALSE(ValidateInventory(Worker("")).ok());
}

TEST(InventoryTest, StaleHeartbeatsMarkWorkersDead) {
  std::vector<WorkerInventory> workers = {Worker("a"), Worker("b"), Worker("c")};
  workers[0].last_heartbeat_ms = 100'000;
  workers[1].last_heartbeat_ms = 85'000;  // exactly 15 s old: still alive
  workers[2].last_heartbeat_ms = 84'999;
  EXPECT_EQ(MarkStaleWorkersDead(workers, 100'000), 1);
  EXPECT_TRUE(workers[0].alive);
  EXPECT_TRUE(workers[1].alive);
  EXPECT_FALSE(workers[2].alive);
}

TEST(FilterTest, AppliesEveryRequirementAndSortsById) {
  std::vector<WorkerInventory> workers;
  workers.push_back(Worker("zeta"));  // eligible
  workers.push_back(Worker("dead"));
  workers.back().alive = false;
  workers.push_back(Worker("small", 8));             // 8 GiB host memory < 16
  workers.push_back(Worker("cpu", 64, 0));           // no GPU
  workers.push_back(Worker("tiny-gpu", 64, 2, 16));  // 16 GiB per GPU < 24
  workers.push_back(Worker("no-data"));
  workers.back().datasets = {{"gsm8k", 500}};
  workers.push_back(Worker("few"));
  workers.back().datasets["dolly"] = 9;  // 9 samples < 10
  workers.push_back(Worker("alpha"));    // eligible
  workers.push_back(Worker("alpha"));    // the same id again

  JobRequirements req;
  req.dataset = "dolly";
  req.min_dataset_samples = 10;
  req.min_memory_bytes = 16 * kGiB;
  req.min_gpus = 1;
  req.min_gpu_memory_bytes = 24 * kGiB;
  Eligibility e = FilterWorkers(workers, req);
  EXPECT_EQ(e.eligible, (std::vector<std::string>{"alpha", "zeta"}));
  std::map<std::string, std::string> reasons;
  for (const auto& i : e.ineligible) reasons[i.worker_id] = i.reason;
  ASSERT_EQ(reasons.size(), 7u);
  EXPECT_EQ(reasons["alpha"], "duplicate worker_id");
  EXPECT_EQ(reasons["dead"], "not alive");
  EXPECT_EQ(reasons["small"], "memory_bytes 8589934592 < required 17179869184");
  EXPECT_EQ(reasons["cpu"], "gpu_count 0 < required 1");
  EXPECT_NE(reasons["tiny-gpu"].find("gpu_memory_bytes"), std::string::npos);
  EXPECT_EQ(reasons["no-data"], "dataset 'dolly' not present");
  EXPECT_EQ(reasons["few"], "dataset 'dolly' has 9 samples < required 10");
  // Ineligible workers are listed in ascending id order too.
  EXPECT_TRUE(std::is_sorted(e.ineligible.begin(), e.ineligible.end(),
                             [](const auto& a, const auto& b) { return a.worker_id < b.worker_id; }));

  // Without GPU or dataset requirements the CPU worker qualifies.
  JobRequirements cpu_ok;
  cpu_ok.min_memory_bytes = 16 * kGiB;
  EXPECT_EQ(FilterWorkers(workers, cpu_ok).eligible,
            (std::vector<std::string>{"alpha", "cpu", "few", "no-data", "tiny-gpu", "zeta"}));
}

TEST(SamplingTest, SampleSizeBounds) {
  SamplingOptions o;
  o.fraction = 0.05;  // Ferret: 5% of clients per round
  EXPECT_EQ(SampleSize(o, 200), 10);
  EXPECT_EQ(SampleSize(o, 738), 36);  // floor(36.9)
  EXPECT_EQ(SampleSize(o, 10), 1);    // floor(0.5) = 0, raised to min_clients 1
  o.fraction = 0.29;
  EXPECT_EQ(SampleSize(o, 100), 29);  // 0.29 * 100 = 28.999999999999996 in double
  o.fraction = 0.5;
  o.min_clients = 3;
  EXPECT_EQ(SampleSize(o, 4), 3);
  EXPECT_EQ(SampleSize(o, 2), 2);  // never more than are eligible
  o.max_clients = 5;
  EXPECT_EQ(SampleSize(o, 100), 5);
  o.fraction = 1.0;
  o.max_clients = 0;
  EXPECT_EQ(SampleSize(o, 100), 100);
}

TEST(SamplingTest, InvalidOptionsNameTheField) {
  const std::vector<std::pair<std::string, SamplingOptions>> cases = {
      {"sampling.fraction", {0.0, 1, 0}},    {"sampling.fraction", {1.5, 1, 0}},
      {"sampling.min_clients", {0.5, 0, 0}}, {"sampling.max_clients", {0.5, 1, -1}},
      {"sampling.max_clients", {0.5, 4, 3}},
  };
  for (const auto& [field, o] : cases) {
    Status s = ValidateSampling(o);
    ASSERT_FALSE(s.ok()) << field;
    EXPECT_EQ(s.message().rfind(field + ":", 0), 0u) << s.message();
  }
  EXPECT_TRUE(ValidateSampling({0.1, 2, 2}).ok());
}

TEST(SamplingTest, DeterministicBySeedAndRound) {
  const auto ids = Ids(50);
  const auto a = SampleClients(ids, 7, 42, 3);
  EXPECT_EQ(SampleClients(ids, 7, 42, 3), a);
  ASSERT_EQ(a.size(), 7u);
  EXPECT_TRUE(std::is_sorted(a.begin(), a.end()));
  EXPECT_EQ(std::set<std::string>(a.begin(), a.end()).size(), 7u);
  for (const auto& id : a) EXPECT_TRUE(std::binary_search(ids.begin(), ids.end(), id));
  // Other rounds and other job seeds draw other samples (C(50, 7) ~ 1e8 possibilities).
  EXPECT_NE(SampleClients(ids, 7, 42, 4), a);
  EXPECT_NE(SampleClients(ids, 7, 43, 3), a);
  EXPECT_NE(SamplingSeed(42, 3), SamplingSeed(42, 4));
  // Edge counts.
  EXPECT_TRUE(SampleClients(ids, 0, 42, 3).empty());
  EXPECT_EQ(SampleClients(ids, 50, 42, 3), ids);
  EXPECT_EQ(SampleClients(ids, 80, 42, 3), ids);
  EXPECT_TRUE(SampleClients({}, 3, 42, 3).empty());
}

TEST(SamplingTest, FollowsTheDocumentedAlgorithm) {
  // Re-derive a sample from the header's description: std::mt19937_64 seeded with SamplingSeed, partial
  // Fisher-Yates over the ascending ids, draws in [0, n - i) by rejecting outputs below 2^64 mod (n - i).
  const auto ids = Ids(23);
  for (int64_t round : {0, 1, 77}) {
    std::mt19937_64 rng(SamplingSeed(99, round));
    std::vector<std::string> pool = ids;
    for (size_t i = 0; i < 6; ++i) {
      const uint64_t bound = pool.size() - i;
      const uint64_t reject_below = (~bound + 1) % bound;
      uint64_t x = rng();
      while (x < reject_below) x = rng();
      std::swap(pool[i], pool[i + x % bound]);
    }
    pool.resize(6);
    std::sort(pool.begin(), pool.end());
    EXPECT_EQ(SampleClients(ids, 6, 99, round), pool) << "round " << round;
  }
}

TEST(SamplingTest, EveryWorkerIsEquallyLikely) {
  // 3 of 10 over 3000 rounds: each worker is expected 900 times, binomial sd sqrt(3000 * 0.3 * 0.7) ~ 25.
  const auto ids = Ids(10);
  std::map<std::string, int> hits;
  for (int64_t round = 0; round < 3000; ++round) {
    for (const auto& id : SampleClients(ids, 3, 2024, round)) ++hits[id];
  }
  ASSERT_EQ(hits.size(), 10u);
  for (const auto& [id, n] : hits) EXPECT_NEAR(n, 900, 125) << id;
}

TEST(SchedulerTest, RandomPolicyPlansRounds) {
  auto scheduler = CreateScheduler("random");
  ASSERT_TRUE(scheduler.ok());
  EXPECT_STREQ((*scheduler)->policy(), "random");
  EXPECT_FALSE(CreateScheduler("holmes").ok());

  std::vector<WorkerInventory> workers;
  for (const auto& id : Ids(20)) workers.push_back(Worker(id));
  workers[4].alive = false;
  workers[9].datasets.clear();
  RoundRequest request;
  request.job_seed = 7;
  request.round = 12;
  request.requirements.dataset = "dolly";
  request.sampling.fraction = 0.25;
  request.sampling.min_clients = 2;
  auto plan = (*scheduler)->PlanRound(workers, request);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_EQ(plan->round, 12);
  EXPECT_EQ(plan->eligible_count, 18);
  EXPECT_EQ(plan->participants.size(), 4u);  // floor(0.25 * 18) = 4
  EXPECT_EQ(plan->ineligible.size(), 2u);
  for (const auto& id : plan->participants) {
    EXPECT_NE(id, "w004");
    EXPECT_NE(id, "w009");
  }
  // The inventory order does not matter: ids are sorted before sampling.
  std::reverse(workers.begin(), workers.end());
  auto again = (*scheduler)->PlanRound(workers, request);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->participants, plan->participants);

  // Too few eligible workers for min_clients.
  request.sampling.min_clients = 19;
  auto too_few = (*scheduler)->PlanRound(workers, request);
  ASSERT_FALSE(too_few.ok());
  EXPECT_EQ(too_few.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(too_few.status().message(),
            "round 12: 18 of 20 workers are eligible, sampling.min_clients is 19 (w004: not alive; w009: dataset "
            "'dolly' not present)");
  request.sampling.fraction = 2;
  EXPECT_TRUE((*scheduler)->PlanRound(workers, request).status().IsInvalidArgument());
}

DeadlineOptions PlainDeadline() {
  DeadlineOptions o;
  o.min_margin = 0;
  o.floor_s = 1;
  o.ceiling_s = 1000;
  o.initial_s = 600;
  return o;
}

TEST(DeadlineTest, InitialDeadlineUntilEnoughObservations) {
  RoundDeadline d(PlainDeadline());
  EXPECT_EQ(d.DeadlineSeconds(), 600);
  EXPECT_TRUE(d.Observe(10));
  EXPECT_TRUE(d.Observe(12));
  EXPECT_EQ(d.DeadlineSeconds(), 600);  // 2 < min_observations 3
  EXPECT_FALSE(d.Observe(-1));
  EXPECT_FALSE(d.Observe(NAN));
  EXPECT_EQ(d.observations(), 2);
  EXPECT_TRUE(d.Observe(11));
  EXPECT_NE(d.DeadlineSeconds(), 600);
}

TEST(DeadlineTest, MedianPlusKMadIsRobustToAnOutlier) {
  RoundDeadline d(PlainDeadline());
  for (double s : {10.0, 12.0, 11.0, 13.0, 100.0}) d.Observe(s);
  // Sorted 10 11 12 13 100: median 12. |x - 12| = 2 0 1 1 88 -> sorted 0 1 1 2 88: MAD 1.
  // Scaled MAD 1.4826; deadline 12 + 3 * 1.4826 = 16.4478 (the 100 s straggler barely matters).
  EXPECT_DOUBLE_EQ(d.Median(), 12.0);
  EXPECT_DOUBLE_EQ(d.Mad(), 1.4826);
  EXPECT_DOUBLE_EQ(d.DeadlineSeconds(), 12.0 + 3.0 * 1.4826);
}

TEST(DeadlineTest, EvenCountUnscaledMad) {
  DeadlineOptions o = PlainDeadline();
  o.scale_mad = false;
  o.k = 2;
  RoundDeadline d(o);
  for (double s : {4.0, 8.0, 6.0, 10.0}) d.Observe(s);
  // Sorted 4 6 8 10: median (6 + 8) / 2 = 7. |x - 7| = 3 1 1 3 -> sorted 1 1 3 3: MAD (1 + 3) / 2 = 2.
  // Deadline 7 + 2 * 2 = 11.
  EXPECT_DOUBLE_EQ(d.Median(), 7.0);
  EXPECT_DOUBLE_EQ(d.Mad(), 2.0);
  EXPECT_DOUBLE_EQ(d.DeadlineSeconds(), 11.0);
}

TEST(DeadlineTest, FloorCeilingMarginAndWindow) {
  DeadlineOptions o = PlainDeadline();
  o.floor_s = 20;
  o.ceiling_s = 30;
  o.initial_s = 25;
  o.window = 3;
  RoundDeadline d(o);
  for (double s : {5.0, 5.0, 5.0}) d.Observe(s);
  EXPECT_EQ(d.DeadlineSeconds(), 20);  // 5 + 0 raised to the floor
  for (double s : {100.0, 101.0, 102.0}) d.Observe(s);
  // The window keeps 100 101 102 only: median 101, MAD 1 * 1.4826 -> 105.45, capped at 30.
  EXPECT_EQ(d.observations(), 3);
  EXPECT_DOUBLE_EQ(d.Median(), 101.0);
  EXPECT_EQ(d.DeadlineSeconds(), 30);

  // Identical durations give MAD 0; the relative margin keeps a slack: max(8 + 0, 8 * 1.25) = 10.
  DeadlineOptions m = PlainDeadline();
  m.min_margin = 0.25;
  RoundDeadline same(m);
  for (int i = 0; i < 4; ++i) same.Observe(8.0);
  EXPECT_DOUBLE_EQ(same.DeadlineSeconds(), 10.0);
}

TEST(DeadlineTest, InvalidOptionsNameTheField) {
  struct Case {
    std::string field;
    DeadlineOptions o;
  };
  std::vector<Case> cases(7, {"", DeadlineOptions{}});
  cases[0].field = "deadline.k", cases[0].o.k = -1;
  cases[1].field = "deadline.floor_s", cases[1].o.floor_s = 0;
  cases[2].field = "deadline.ceiling_s", cases[2].o.ceiling_s = 10;
  cases[3].field = "deadline.initial_s", cases[3].o.initial_s = 1e9;
  cases[4].field = "deadline.min_observations", cases[4].o.min_observations = 0;
  cases[5].field = "deadline.window", cases[5].o.window = 2;
  cases[6].field = "deadline.min_margin", cases[6].o.min_margin = NAN;
  EXPECT_TRUE(ValidateDeadlineOptions(DeadlineOptions{}).ok());
  for (const auto& c : cases) {
    Status s = ValidateDeadlineOptions(c.o);
    ASSERT_FALSE(s.ok()) << c.field;
    EXPECT_EQ(s.message().rfind(c.field + ":", 0), 0u) << s.message();
  }
}

TEST(QuorumTest, CountAndCloseRule) {
  EXPECT_EQ(QuorumCount(10, 0.7), 7);
  EXPECT_EQ(QuorumCount(100, 0.07), 7);  // 0.07 * 100 = 7.000000000000001 in double: still 7
  EXPECT_EQ(QuorumCount(10, 0.75), 8);
  EXPECT_EQ(QuorumCount(3, 0.5), 2);
  EXPECT_EQ(QuorumCount(10, 0.01), 1);  // at least one report
  EXPECT_EQ(QuorumCount(4, 1.0), 4);
  EXPECT_EQ(QuorumCount(0, 0.5), 0);

  // All reported: closes at once, before the deadline.
  EXPECT_EQ(EvaluateRoundClose(10, 10, false, 0.7), RoundCloseState::kComplete);
  // Before the deadline a partial round keeps waiting, even above the quorum.
  EXPECT_EQ(EvaluateRoundClose(10, 9, false, 0.7), RoundCloseState::kOpen);
  // At the deadline: quorum reached or missed.
  EXPECT_EQ(EvaluateRoundClose(10, 7, true, 0.7), RoundCloseState::kQuorumReached);
  EXPECT_EQ(EvaluateRoundClose(10, 6, true, 0.7), RoundCloseState::kQuorumMissed);
  EXPECT_EQ(EvaluateRoundClose(10, 0, true, 0.01), RoundCloseState::kQuorumMissed);
  EXPECT_STREQ(RoundCloseStateName(RoundCloseState::kQuorumReached), "quorum_reached");
}

}  // namespace
}  // namespace tributary
