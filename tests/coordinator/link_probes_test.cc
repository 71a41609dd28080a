// Which links a cluster job probes and when (coordinator/link_probes.h): candidate pairs by fabric and
// by the job's islands, the start / membership-change / drift / no-change decisions with their reasons,
// drift against the first pull after a probe, merging a campaign into the stored matrix, dispatching
// probes so no two share an end, and the plausibility checks on reports.
#include "coordinator/link_probes.h"

#include <gtest/gtest.h>

#include <cmath>
#include <tuple>

namespace tributary {
namespace {

WorkerInventory Worker(const std::string& id, const std::string& fabric_id, NicFabric fabric = NicFabric::kEthernet) {
  WorkerInventory w;
  w.worker_id = id;
  w.alive = true;
  if (!fabric_id.empty() || fabric != NicFabric::kOther) w.nics.push_back({"nic0", fabric, 10000, true, fabric_id});
  return w;
}

JobSpec Cluster(std::vector<std::string> islands = {}) {
  JobSpec spec;
  spec.mode = "cluster";
  spec.cluster.islands = std::move(islands);
  return spec;
}

std::vector<std::string> Ids(const std::vector<ProbePair>& probes) {
  std::vector<std::string> ids;
  for (const ProbePair& p : probes) ids.push_back(p.id());
  return ids;
}

checkpoint::JobLinksRecord Stored(std::vector<std::string> members, std::vector<checkpoint::LinkRecord> pairs,
                                  std::vector<std::string> uplinks) {
  checkpoint::JobLinksRecord r;
  r.job_id = "j";
  r.campaign = 1;
  r.members = std::move(members);
  r.pairs = std::move(pairs);
  for (const std::string& u : uplinks) r.uplinks.push_back({u, "", 100, 1, 5});
  return r;
}

TEST(LinkProbesTest, CandidatesArePairsOnOneFabricPlusEveryUplink) {
  // w1, w2, w4 share lan-a; w3 is on InfiniBand ib-b alone; w5 and w6 name no fabric.
  const std::vector<WorkerInventory> workers = {Worker("w4", "lan-a"),
                                                Worker("w1", "lan-a"),
                                                Worker("w2", "lan-a"),
                                                Worker("w3", "ib-b", NicFabric::kInfiniband),
                                                Worker("w5", "", NicFabric::kOther),
                                                Worker("w6", "", NicFabric::kOther)};
  EXPECT_EQ(Ids(CandidateProbes(Cluster(), workers)),
            (std::vector<std::string>{"w1>w2", "w1>w4", "w2>w4", "w5>w6", "w1>coordinator", "w2>coordinator",
                                      "w3>coordinator", "w4>coordinator", "w5>coordinator", "w6>coordinator"}))
      << "no pair crosses fabrics; workers without one are probed among themselves";
}

TEST(LinkProbesTest, JobIslandsDecideTheCandidatesWhenGiven) {
  const std::vector<WorkerInventory> workers = {Worker("w1", "lan-a"), Worker("w2", "lan-b"), Worker("w3", "lan-a"),
                                                Worker("w4", "lan-a")};
  EXPECT_EQ(Ids(CandidateProbes(Cluster({"a=w1,w2", "b=w3"}), workers)),
            (std::vector<std::string>{"w1>w2", "w1>coordinator", "w2>coordinator", "w3>coordinator", "w4>coordinator"}))
      << "only the job's islands are dense groups (w4 is in none: its uplink only)";
}

TEST(LinkProbesTest, StartProbesEveryCandidate) {
  const std::vector<WorkerInventory> workers = {Worker("w1", "lan"), Worker("w2", "lan"), Worker("w3", "lan")};
  const ProbeDecision d = DecideProbes(nullptr, Cluster(), workers, {});
  EXPECT_EQ(d.trigger, ProbeTrigger::kStart);
  EXPECT_EQ(d.reason, "job start: 3 pair(s) and 3 uplink(s) among 3 eligible worker(s)");
  EXPECT_EQ(Ids(d.probes), (std::vector<std::string>{"w1>w2", "w1>w3", "w2>w3", "w1>coordinator", "w2>coordinator",
                                                     "w3>coordinator"}));
  const ProbeDecision none = DecideProbes(nullptr, Cluster(), {}, {});
  EXPECT_EQ(none.trigger, ProbeTrigger::kNone);
  EXPECT_EQ(none.reason, "no eligible workers to probe yet");
}

TEST(LinkProbesTest, MembershipChangeProbesOnlyWhatTheMatrixLacks) {
  const auto stored =
      Stored({"w1", "w2", "w3"}, {{"w1", "w2", 900, 1, 1}, {"w1", "w3", 900, 1, 1}, {"w2", "w3", 900, 1, 1}},
             {"w1", "w2", "w3"});
  // w3 left, w4 joined.
  const std::vector<WorkerInventory> now = {Worker("w1", "lan"), Worker("w2", "lan"), Worker("w4", "lan")};
  const ProbeDecision d = DecideProbes(&stored, Cluster(), now, {});
  EXPECT_EQ(d.trigger, ProbeTrigger::kMembership);
  EXPECT_EQ(d.reason, "membership change: joined [w4] left [w3]; 2 pair(s) and 1 uplink(s) to measure");
  EXPECT_EQ(Ids(d.probes), (std::vector<std::string>{"w1>w4", "w2>w4", "w4>coordinator"}));
  // Only a departure: nothing to measure, but the decision still says why the matrix changes.
  const ProbeDecision left = DecideProbes(&stored, Cluster(), {Worker("w1", "lan"), Worker("w2", "lan")}, {});
  EXPECT_EQ(left.trigger, ProbeTrigger::kMembership);
  EXPECT_TRUE(left.probes.empty());
  EXPECT_EQ(left.reason, "membership change: left [w3]; 0 pair(s) and 0 uplink(s) to measure");
}

TEST(LinkProbesTest, DriftReprobesTheDriftedUplinksAndNoChangeSaysSo) {
  const auto stored = Stored({"w1", "w2"}, {{"w1", "w2", 900, 1, 1}}, {"w1", "w2"});
  const std::vector<WorkerInventory> same = {Worker("w1", "lan"), Worker("w2", "lan")};
  const ProbeDecision quiet = DecideProbes(&stored, Cluster(), same, {});
  EXPECT_EQ(quiet.trigger, ProbeTrigger::kNone);
  EXPECT_EQ(quiet.reason, "no change: the stored matrix covers the 2 eligible worker(s) and no upload drifted");
  const ProbeDecision drift = DecideProbes(&stored, Cluster(), same, {{"w2", "worker 'w2' upload goodput ..."}});
  EXPECT_EQ(drift.trigger, ProbeTrigger::kDrift);
  EXPECT_EQ(Ids(drift.probes), (std::vector<std::string>{"w2>coordinator"}));
  EXPECT_EQ(drift.reason, "drift: worker 'w2' upload goodput ...; re-probing 0 pair(s) and 1 uplink(s)");
  // A drifted worker that is no longer eligible is not probed; membership wins over drift.
  const ProbeDecision gone = DecideProbes(&stored, Cluster(), {Worker("w1", "lan")}, {{"w2", "x"}});
  EXPECT_EQ(gone.trigger, ProbeTrigger::kMembership);
}

TEST(LinkProbesTest, DriftIsMeasuredAgainstTheFirstPullAfterAProbe) {
  DriftTracker drift;
  const uint64_t mib8 = 8 << 20;
  // 8 MiB in 1 s = 67.1 Mbit/s: the baseline (the stored probe said 95 Mbit/s: not comparable).
  EXPECT_EQ(drift.Observe("w1", mib8, 1.0, 95), "");
  EXPECT_EQ(drift.Observe("w1", mib8, 1.15, 95), "") << "-13%: within 20%";
  EXPECT_EQ(drift.Observe("w1", mib8, 0.85, 95), "") << "+18%: within 20%";
  EXPECT_EQ(drift.Observe("w1", 1000, 1e-6, 95), "") << "a small pull is latency, not bandwidth";
  EXPECT_EQ(drift.Observe("w1", mib8, 2.0, 95),
            "worker 'w1' upload goodput 33.6 Mbit/s vs baseline 67.1 Mbit/s (-50%, beyond 20%; stored uplink 95.0 "
            "Mbit/s)");
  EXPECT_NE(drift.Observe("w1", mib8, 0.8, 95), "") << "+25% is drift too";
  drift.Reset("w1");
  EXPECT_EQ(drift.Observe("w1", mib8, 2.0, 95), "") << "after a re-probe the next pull is the new baseline";
  EXPECT_EQ(drift.Observe("w2", mib8, 1.0, 0), "") << "no stored uplink: nothing to drift from";
}

TEST(LinkProbesTest, MergeDropsDepartedWorkersAndKeepsFailedPairsUnmeasured) {
  const auto stored =
      Stored({"w1", "w2", "w3"}, {{"w1", "w2", 900, 1, 1}, {"w2", "w3", 800, 1, 1}}, {"w1", "w2", "w3"});
  std::vector<MeasuredProbe> outcomes = {
      {{"w4", "w1"}, true, {50, 3}, 77, ""},  // stored as (w1, w4)
      {{"w2", "w4"}, false, {}, 78, "timed out"},
      {{"w4", ""}, true, {20, 9}, 79, ""},
      {{"w1", ""}, true, {700, 2}, 80, ""},  // a re-probed uplink replaces the old one
  };
  const checkpoint::JobLinksRecord merged =
      MergeProbeOutcomes(&stored, "j", {"w4", "w2", "w1"}, outcomes, 2, "membership change", 99);
  EXPECT_EQ(merged.members, (std::vector<std::string>{"w1", "w2", "w4"}));
  EXPECT_EQ(merged.campaign, 2u);
  EXPECT_EQ(merged.reason, "membership change");
  EXPECT_EQ(merged.updated_unix_ms, 99);
  ASSERT_EQ(merged.pairs.size(), 2u) << "w2-w3 left with w3; w2-w4 failed";
  EXPECT_EQ(merged.pairs[0].a, "w1");
  EXPECT_EQ(merged.pairs[0].b, "w2");
  EXPECT_EQ(merged.pairs[1].a, "w1");
  EXPECT_EQ(merged.pairs[1].b, "w4");
  EXPECT_EQ(merged.pairs[1].mbps, 50);
  EXPECT_EQ(merged.pairs[1].measured_unix_ms, 77);
  ASSERT_EQ(merged.uplinks.size(), 3u);
  EXPECT_EQ(merged.uplinks[0].mbps, 700);
  EXPECT_EQ(merged.uplinks[2].a, "w4");
  const LinkMatrix m = ToLinkMatrix(merged);
  ASSERT_NE(m.Find("w4", "w1"), nullptr);
  EXPECT_EQ(m.Find("w4", "w1")->rtt_ms, 3);
  EXPECT_EQ(m.Find("w2", "w4"), nullptr);
  ASSERT_NE(m.FindUplink("w4"), nullptr);
  EXPECT_EQ(m.FindUplink("w4")->mbps, 20);
}

TEST(LinkProbesTest, DispatchNeverSharesAnEndOrTheCoordinator) {
  const std::vector<ProbePair> pending = {{"w1", "w2"}, {"w1", "w3"}, {"w3", "w4"},
                                          {"w2", ""},   {"w5", ""},   {"w6", "w7"}};
  EXPECT_EQ(Ids(NextProbes(pending, {})), (std::vector<std::string>{"w1>w2", "w3>w4", "w5>coordinator", "w6>w7"}));
  EXPECT_EQ(Ids(NextProbes(pending, {"w2", ""})), (std::vector<std::string>{"w1>w3", "w6>w7"}))
      << "busy ends (an uplink probe holds the coordinator) wait";
}

TEST(LinkProbesTest, AbsurdNumbersAreRefusedNamingTheWorker) {
  EXPECT_TRUE(CheckProbeNumbers("w1", "w1>w2", 940, 0.2, 1 << 20, 64 << 20).ok());
  for (const auto& [mbps, rtt, bytes] : std::vector<std::tuple<double, double, uint64_t>>{
           {0, 1, 1}, {-5, 1, 1}, {1e9, 1, 1}, {std::nan(""), 1, 1}, {100, -1, 1}, {100, 1e6, 1}, {100, 1, 65 << 20}}) {
    Status s = CheckProbeNumbers("w1", "w1>w2", mbps, rtt, bytes, 64 << 20);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << mbps << " " << rtt << " " << bytes;
    EXPECT_NE(s.message().find("probe report of worker 'w1' for pair w1>w2"), std::string::npos) << s.message();
  }
}

}  // namespace
}  // namespace tributary
