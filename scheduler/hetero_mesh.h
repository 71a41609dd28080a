// Holmes's group formation for 3D-parallel training across NIC types (holmes-spec §3): physical ranks
// are sorted by (position of their NIC type in a preference order, rank) and laid on Megatron's mesh
// [pp, dp, cp = 1, tp] (tp fastest), so consecutive pipeline stages fill the fastest NIC type first.
// For a valid configuration every tensor- and data-parallel group holds one NIC type (it can use that
// fabric's RDMA) and only pipeline groups mix types (their small point-to-point traffic takes TCP).
// tributary's cluster mode places dense groups by fabric itself (scheduler/planner.h); this function
// keeps Holmes's rule as a checked reference for 3D layouts.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"

namespace tributary {

struct HeteroGroup {
  std::vector<int> ranks;  // physical ranks, in logical order
  std::string fabric;      // the members' NIC type, or "heter" when they differ (TCP)
};

struct HeteroMesh {
  std::vector<int> physical_of_logical;  // logical rank -> physical rank
  std::vector<HeteroGroup> tp_groups, dp_groups, pp_groups;
};

// `device_type_of_rank[r]` is physical rank r's NIC type; `type_order` lists the types fastest first
// (every rank's type must appear in it). InvalidArgument naming the field when tp, pp, dp < 1, when
// tp * pp * dp differs from the rank count, or for a type missing from type_order; FailedPrecondition
// naming the group when a tensor- or data-parallel group would span NIC types (Holmes requires island
// k to hold exactly s_k * dp * tp ranks: such a group is never formed silently).
Result<HeteroMesh> FormHeteroGroups(const std::vector<std::string>& device_type_of_rank,
                                    const std::vector<std::string>& type_order, int tp, int pp, int dp);

}  // namespace tributary
