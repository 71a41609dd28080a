// One NIC vocabulary for the worker's capability report, the wire (v1::Nic: fabric name, speed,
// fabric_id) and the scheduler's inventory, so the three never disagree about what a NIC is.
//
// The fabric decides who can do RDMA with whom: InfiniBand and RoCE NICs cannot reach each other, and
// within one fabric type only NICs with the same non-empty fabric_id share a network (an RDMA island,
// the unit of NIC-aware placement). Loopback, virtual and unknown devices are "other" and never placed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace tributary {

enum class NicFabric { kEthernet, kRoce, kInfiniband, kOther };

const char* NicFabricName(NicFabric fabric);  // "ethernet" | "roce" | "infiniband" | "other"
// InvalidArgument naming the value for other names.
Result<NicFabric> ParseNicFabric(std::string_view name);

struct NicInfo {
  std::string name;  // netdev name (eth0) or RDMA device/port (mlx5_0/1)
  NicFabric fabric = NicFabric::kOther;
  int64_t speed_mbps = 0;  // 0 when unknown (link down, virtual device)
  bool up = false;
  // NICs with the same non-empty fabric_id share one network (empty: not known; a worker setting).
  std::string fabric_id;
};

// Whether placement may count on the NIC: a known fabric and a known speed.
bool IsPlaceable(const NicInfo& nic);

}  // namespace tributary
