#include "scheduler/hetero_mesh.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace tributary {
namespace {

std::vector<std::string> Nodes(const std::vector<std::string>& node_types, int gpus_per_node) {
  std::vector<std::string> ranks;
  for (const std::string& t : node_types) ranks.insert(ranks.end(), static_cast<size_t>(gpus_per_node), t);
  return ranks;
}

std::vector<int> Range(int first, int count) {
  std::vector<int> out;
  for (int i = 0; i < count; ++i) out.push_back(first + i);
  return out;
}

// holmes-spec §3.5: 4 nodes x 8 GPUs launched roce, ib, roce, ib; TP 8, PP 2, DP 2, ib preferred.
TEST(HeteroMeshTest, ReproducesHolmesTestVector) {
  auto mesh = FormHeteroGroups(Nodes({"roce", "ib", "roce", "ib"}, 8), {"ib", "roce"}, 8, 2, 2);
  ASSERT_TRUE(mesh.ok()) << mesh.status().ToString();
  ASSERT_EQ(mesh->dp_groups.size(), 16u);
  for (int j = 0; j < 8; ++j) {
    EXPECT_EQ(mesh->dp_groups[j].ranks, (std::vector<int>{8 + j, 24 + j}));
    EXPECT_EQ(mesh->dp_groups[j].fabric, "ib");
    EXPECT_EQ(mesh->dp_groups[8 + j].ranks, (std::vector<int>{j, 16 + j}));
    EXPECT_EQ(mesh->dp_groups[8 + j].fabric, "roce");
  }
  ASSERT_EQ(mesh->pp_groups.size(), 16u);
  EXPECT_EQ(mesh->pp_groups[0].ranks, (std::vector<int>{8, 0}));
  EXPECT_EQ(mesh->pp_groups[1].ranks, (std::vector<int>{9, 1}));
  for (const HeteroGroup& g : mesh->pp_groups) EXPECT_EQ(g.fabric, "heter");
  ASSERT_EQ(mesh->tp_groups.size(), 4u);
  EXPECT_EQ(mesh->tp_groups[0].ranks, Range(8, 8));
  EXPECT_EQ(mesh->tp_groups[1].ranks, Range(24, 8));
  EXPECT_EQ(mesh->tp_groups[2].ranks, Range(0, 8));
  EXPECT_EQ(mesh->tp_groups[3].ranks, Range(16, 8));
}

// Whatever the launch order of the nodes, dense groups stay on one NIC type and only pipeline groups
// cross types, once per pipeline (2 islands: one slow boundary).
TEST(HeteroMeshTest, DenseGroupsStayOnOneTypeForEveryLaunchOrder) {
  std::vector<std::string> order = {"ib", "ib", "roce", "roce"};
  std::sort(order.begin(), order.end());
  int layouts = 0;
  do {
    auto mesh = FormHeteroGroups(Nodes(order, 8), {"ib", "roce"}, 8, 2, 2);
    ASSERT_TRUE(mesh.ok()) << mesh.status().ToString();
    for (const HeteroGroup& g : mesh->dp_groups) EXPECT_NE(g.fabric, "heter");
    for (const HeteroGroup& g : mesh->tp_groups) EXPECT_NE(g.fabric, "heter");
    for (const HeteroGroup& g : mesh->pp_groups) EXPECT_EQ(g.fabric, "heter");
    // Stage 0 (the first member of every pipeline group) is on the preferred type.
    const std::vector<std::string> types = Nodes(order, 8);
    for (const HeteroGroup& g : mesh->pp_groups) EXPECT_EQ(types[g.ranks.front()], "ib");
    ++layouts;
  } while (std::next_permutation(order.begin(), order.end()));
  EXPECT_EQ(layouts, 6);
}

TEST(HeteroMeshTest, RefusesADataParallelGroupAcrossTypes) {
  auto mesh = FormHeteroGroups(Nodes({"ib", "ib", "ib", "roce"}, 8), {"ib", "roce"}, 8, 2, 2);
  ASSERT_FALSE(mesh.ok());
  EXPECT_EQ(mesh.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(mesh.status().message().find("data-parallel group [16,24] spans NIC types"), std::string::npos)
      << mesh.status().ToString();
}

TEST(HeteroMeshTest, RefusesBadShapes) {
  EXPECT_EQ(FormHeteroGroups(Nodes({"ib"}, 8), {"ib"}, 4, 1, 1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(FormHeteroGroups(Nodes({"ib"}, 8), {"ib"}, 0, 1, 8).status().code(), StatusCode::kInvalidArgument);
  auto unknown = FormHeteroGroups(Nodes({"eth"}, 2), {"ib"}, 2, 1, 1);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("'eth' is not in type_order"), std::string::npos);
}

}  // namespace
}  // namespace tributary
