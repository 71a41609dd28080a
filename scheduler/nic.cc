#include "scheduler/nic.h"

#include <string>

namespace tributary {

const char* NicFabricName(NicFabric fabric) {
  switch (fabric) {
    case NicFabric::kEthernet: return "ethernet";
    case NicFabric::kRoce: return "roce";
    case NicFabric::kInfiniband: return "infiniband";
    case NicFabric::kOther: return "other";
  }
  return "other";
}

Result<NicFabric> ParseNicFabric(std::string_view name) {
  for (NicFabric f : {NicFabric::kEthernet, NicFabric::kRoce, NicFabric::kInfiniband, NicFabric::kOther}) {
    if (name == NicFabricName(f)) return f;
  }
  return Status::InvalidArgument("nic fabric: unknown kind '" + std::string(name) +
                                 "' (expected ethernet, roce, infiniband or other)");
}

bool IsPlaceable(const NicInfo& nic) {
  return nic.fabric != NicFabric::kOther && nic.speed_mbps > 0;
}

}  // namespace tributary
