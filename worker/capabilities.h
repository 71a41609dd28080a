// What a worker can do, as reported to the coordinator at registration: cores, memory, GPUs,
// NICs (fabric, speed and RDMA island, kept in the scheduler's inventory for NIC-aware placement:
// scheduler/nic.h) and local datasets.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/device.h"
#include "scheduler/nic.h"

namespace tributary {

struct DatasetInfo {
  std::string name;
  std::string path;
  int64_t samples = 0;
};

struct WorkerCapabilities {
  std::string hostname;
  int cores = 0;
  int64_t memory_bytes = 0;
  std::vector<GpuInfo> gpus;
  std::vector<NicInfo> nics;
  std::vector<DatasetInfo> datasets;
};

struct DetectOptions {
  std::string sysfs_root = "/sys";  // tests point these at a fake tree
  std::string procfs_root = "/proc";
  bool query_gpus = true;
};

// Reads NICs from <sysfs>/class/net (speed, operstate; loopback skipped) and RDMA ports from
// <sysfs>/class/infiniband/*/ports/*/{link_layer,rate,state}: link_layer InfiniBand -> infiniband,
// Ethernet -> roce (its netdev is then reported as roce, not ethernet). Memory from <procfs>/meminfo.
Result<WorkerCapabilities> DetectCapabilities(const DetectOptions& options = {});

// Replaces detected NICs with overrides of the form NAME:FABRIC:MBPS[:FABRIC_ID] (e.g.
// "ib0:infiniband:200000:ib-fabric-a"; FABRIC as NicFabricName; FABRIC_ID names the network).
Status ApplyNicOverrides(const std::vector<std::string>& overrides, WorkerCapabilities* caps);

// JSON for logs and `tributary worker --print-capabilities`.
std::string CapabilitiesToJson(const WorkerCapabilities& caps);

}  // namespace tributary
