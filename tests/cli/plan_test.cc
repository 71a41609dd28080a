// `tributary plan` end to end on the example inventory (examples/plan/): the plan keeps every dense
// group on one fabric, follows the measured uplinks and compute, and bad inputs name file:line:key.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <map>

#include "tests/cli/cli_util.h"

namespace tributary::testutil {
namespace {

class PlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ProcessResult r = RunTributary({"init-model", "--config", "examples/tiny-model.yaml", "-o", dir_.Sub("model")});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  ProcessResult Plan(std::vector<std::string> extra, const std::string& inventory = "examples/plan/inventory.yaml") {
    std::vector<std::string> args = {"plan",    "--job", "examples/plan/cluster-job.yaml", "--inventory",
                                     inventory, "--set", "model.base=" + dir_.Sub("model")};
    args.insert(args.end(), extra.begin(), extra.end());
    return RunTributary(args);
  }
  TempDir dir_;
};

TEST_F(PlanTest, EveryDenseGroupStaysOnOneFabric) {
  ProcessResult r = Plan({"--format", "json", "--codec", "auto", "--local-steps", "auto"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json plan = nlohmann::json::parse(r.out)["data"];
  const std::map<std::string, std::string> fabric_of = {
      {"ib0", "infiniband:ib-a"}, {"ib1", "infiniband:ib-a"}, {"ib2", "infiniband:ib-a"}, {"ib3", "infiniband:ib-a"},
      {"roce0", "roce:roce-b"},   {"roce1", "roce:roce-b"},   {"eth0", "none"},           {"eth1", "none"}};
  ASSERT_EQ(plan["islands"].size(), 3u);
  size_t placed = 0;
  for (const auto& island : plan["islands"]) {
    for (const auto& member : island["members"]) {
      EXPECT_EQ(fabric_of.at(member.get<std::string>()), island["fabric"].get<std::string>()) << island.dump();
      ++placed;
    }
  }
  EXPECT_EQ(placed, fabric_of.size());
  const auto& ib = plan["islands"][0];
  EXPECT_EQ(ib["name"], "fabric:ib-a");
  EXPECT_EQ(ib["leader"], "ib1");  // the best uplink
  EXPECT_EQ(ib["ring"][0], "ib1");
  EXPECT_DOUBLE_EQ(plan["islands"][1]["shares"]["roce0"].get<double>(), 0.75);  // 3000 of 4000 tokens/s
  EXPECT_TRUE(plan["meets_target"].get<bool>());
  EXPECT_LE(plan["outer_fraction"].get<double>(), 0.05);

  r = Plan({});  // the job's own H and codec
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("H 50, codec int8"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("fabric:ib-a: leader ib1: best uplink to the coordinator, 2000 Mbit/s"), std::string::npos);
}

TEST_F(PlanTest, BadInputsAreNamed) {
  const std::string bad = dir_.Write("inv.yaml",
                                     "workers:\n"
                                     "  - {id: a, nics: [\"ib0:infiniband:100:f\"]}\n"
                                     "links:\n"
                                     "  - {a: a, b: zz, mbps: 10}\n");
  ProcessResult r = Plan({}, bad);
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_NE(r.err.find(bad + ":4: links[0].b: must name a worker of the inventory"), std::string::npos) << r.err;

  const std::string unknown = dir_.Write("inv2.yaml", "workers:\n  - {id: a, speed: 3}\n");
  r = Plan({}, unknown);
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_NE(r.err.find(unknown + ":2: workers[0].speed: unknown key"), std::string::npos) << r.err;

  r = RunTributary(
      {"plan", "--job", "examples/jobs/fedavg-baseline.yaml", "--inventory", "examples/plan/inventory.yaml"});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_NE(r.err.find("plan is for cluster-mode jobs"), std::string::npos) << r.err;

  // Without --inventory the coordinator's live inventory is planned: none is reachable here.
  r = RunTributary({"--set", "client.request_timeout_s=1", "plan", "--job", "examples/plan/cluster-job.yaml", "--set",
                    "model.base=" + dir_.Sub("model"), "--coordinator", "tcp://127.0.0.1:1", "--insecure"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
}

TEST_F(PlanTest, AJobGivenIslandAcrossFabricsIsRefused) {
  ProcessResult r = Plan({"--set", "cluster.islands=[\"mixed=ib0,roce0\"]"});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_NE(r.err.find("island 'mixed': ib0 is on infiniband:ib-a and roce0 on roce:roce-b; a dense data-parallel "
                       "group never spans fabrics"),
            std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace tributary::testutil
