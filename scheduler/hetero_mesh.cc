#include "scheduler/hetero_mesh.h"

#include <algorithm>
#include <numeric>

namespace tributary {
namespace {

HeteroGroup MakeGroup(const std::vector<int>& logical, const std::vector<int>& physical_of_logical,
                      const std::vector<std::string>& type_of_rank) {
  HeteroGroup group;
  for (int l : logical) group.ranks.push_back(physical_of_logical[static_cast<size_t>(l)]);
  group.fabric = type_of_rank[static_cast<size_t>(group.ranks.front())];
  for (int r : group.ranks)
    if (type_of_rank[static_cast<size_t>(r)] != group.fabric) group.fabric = "heter";
  return group;
}

std::string RanksText(const std::vector<int>& ranks) {
  std::string out = "[";
  for (size_t i = 0; i < ranks.size(); ++i) out += (i ? "," : "") + std::to_string(ranks[i]);
  return out + "]";
}

Status CheckSingleFabric(const std::vector<HeteroGroup>& groups, const char* kind) {
  for (const HeteroGroup& g : groups) {
    if (g.fabric == "heter")
      return Status::FailedPrecondition(std::string(kind) + " group " + RanksText(g.ranks) +
                                        " spans NIC types; each NIC type must hold whole stages (stages x dp x tp "
                                        "ranks)");
  }
  return Status::OK();
}

}  // namespace

Result<HeteroMesh> FormHeteroGroups(const std::vector<std::string>& device_type_of_rank,
                                    const std::vector<std::string>& type_order, int tp, int pp, int dp) {
  if (tp < 1 || pp < 1 || dp < 1)
    return Status::InvalidArgument("tp, pp, dp: must be >= 1, got " + std::to_string(tp) + ", " + std::to_string(pp) +
                                   ", " + std::to_string(dp));
  const int world = static_cast<int>(device_type_of_rank.size());
  if (tp * pp * dp != world)
    return Status::InvalidArgument("tp * pp * dp = " + std::to_string(tp * pp * dp) + " but there are " +
                                   std::to_string(world) + " ranks");
  std::vector<int> type_index(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) {
    auto it = std::find(type_order.begin(), type_order.end(), device_type_of_rank[static_cast<size_t>(r)]);
    if (it == type_order.end())
      return Status::InvalidArgument("rank " + std::to_string(r) + ": NIC type '" +
                                     device_type_of_rank[static_cast<size_t>(r)] + "' is not in type_order");
    type_index[static_cast<size_t>(r)] = static_cast<int>(it - type_order.begin());
  }
  HeteroMesh mesh;
  mesh.physical_of_logical.resize(static_cast<size_t>(world));
  std::iota(mesh.physical_of_logical.begin(), mesh.physical_of_logical.end(), 0);
  std::stable_sort(mesh.physical_of_logical.begin(), mesh.physical_of_logical.end(), [&](int a, int b) {
    return type_index[static_cast<size_t>(a)] < type_index[static_cast<size_t>(b)];
  });

  const int per_stage = world / pp;  // dp * tp logical ranks per pipeline stage
  for (int start = 0; start < world; start += tp) {
    std::vector<int> logical(static_cast<size_t>(tp));
    std::iota(logical.begin(), logical.end(), start);
    mesh.tp_groups.push_back(MakeGroup(logical, mesh.physical_of_logical, device_type_of_rank));
  }
  for (int stage = 0; stage < pp; ++stage) {
    for (int j = 0; j < tp; ++j) {
      std::vector<int> logical;
      for (int l = stage * per_stage + j; l < (stage + 1) * per_stage; l += tp) logical.push_back(l);
      mesh.dp_groups.push_back(MakeGroup(logical, mesh.physical_of_logical, device_type_of_rank));
    }
  }
  for (int i = 0; i < per_stage; ++i) {
    std::vector<int> logical;
    for (int l = i; l < world; l += per_stage) logical.push_back(l);
    mesh.pp_groups.push_back(MakeGroup(logical, mesh.physical_of_logical, device_type_of_rank));
  }
  TRIB_RETURN_IF_ERROR(CheckSingleFabric(mesh.tp_groups, "tensor-parallel"));
  TRIB_RETURN_IF_ERROR(CheckSingleFabric(mesh.dp_groups, "data-parallel"));
  return mesh;
}

}  // namespace tributary
