// What a worker can do, as reported to the coordinator at registration: cores, memory, GPUs,
// NICs (fabric, speed and RDMA island, kept in the scheduler's inventory for NIC-aware placement:
// scheduler/nic.h) and local datasets.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
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
  // Interface name -> its IPv4 network ("10.0.1.0/24"); unset: read with getifaddrs(3) (tests set it).
  std::optional<std::map<std::string, std::string>> interface_networks;
};

// "10.0.1.0/24" for an address and netmask in host byte order ("" for a non-contiguous mask).
std::string Ipv4Network(uint32_t address, uint32_t netmask);

// Reads NICs from <sysfs>/class/net (speed, operstate; loopback skipped) and RDMA ports from
// <sysfs>/class/infiniband/*/ports/*/{link_layer,rate,state}: link_layer InfiniBand -> infiniband,
// Ethernet -> roce (its netdev is then reported as roce, not ethernet). Memory from <procfs>/meminfo.
// Fabric identity (which NICs share a network, docs/placement.md): an InfiniBand port's is its subnet
// prefix from GID 0 (ports/N/gids/0: "ib-fe80000000000000"); a RoCE port's and an Ethernet NIC's is
// the IPv4 network of the (bound) interface ("10.0.1.0/24"); empty when unknown. InfiniBand fabrics
// on the default prefix fe80:: look alike: give them distinct subnet prefixes or set worker.nics.
Result<WorkerCapabilities> DetectCapabilities(const DetectOptions& options = {});

// Replaces detected NICs with overrides of the form NAME:FABRIC:MBPS[:FABRIC_ID] (e.g.
// "ib0:infiniband:200000:ib-fabric-a"; FABRIC as NicFabricName; FABRIC_ID names the network).
Status ApplyNicOverrides(const std::vector<std::string>& overrides, WorkerCapabilities* caps);

// JSON for logs and `tributary worker --print-capabilities`.
std::string CapabilitiesToJson(const WorkerCapabilities& caps);

}  // namespace tributary
