#include "worker/capabilities.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

namespace tributary {
namespace fs = std::filesystem;
namespace {

// First line of a small sysfs/procfs file; empty when absent or unreadable (e.g. speed of a down link
// reads as EINVAL).
std::string ReadFirstLine(const fs::path& path) {
  std::ifstream in(path);
  std::string line;
  if (in) std::getline(in, line);
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ' || line.back() == '\r')) line.pop_back();
  return line;
}

int64_t ParseLeadingInt(const std::string& s, bool* ok) {
  std::istringstream in(s);
  int64_t v = 0;
  *ok = static_cast<bool>(in >> v);
  return *ok ? v : 0;
}

// "100 Gb/sec (4X EDR)" -> 100000 Mbit/s.
int64_t ParseRdmaRateMbps(const std::string& rate) {
  std::istringstream in(rate);
  double value = 0;
  std::string unit;
  if (!(in >> value >> unit)) return 0;
  if (unit.rfind("Gb", 0) == 0) return std::llround(value * 1000.0);
  if (unit.rfind("Mb", 0) == 0) return std::llround(value);
  return 0;
}

Result<int64_t> ReadMemTotal(const std::string& procfs_root) {
  const fs::path path = fs::path(procfs_root) / "meminfo";
  std::ifstream in(path);
  if (!in) return Status::IOError(path.string() + ": cannot be read");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit) {
    if (key == "MemTotal:") return kib * 1024;
  }
  return Status::Corruption(path.string() + ": no MemTotal line");
}

// "fe80:0000:0000:0000:0002:c903:00a1:b2c1" -> "ib-fe80000000000000"; "" for a missing or zero GID.
std::string IbSubnetFromGid(const std::string& gid) {
  std::string prefix;
  int groups = 0;
  for (size_t i = 0; i < gid.size() && groups < 4; ++i) {
    if (gid[i] == ':') {
      ++groups;
      continue;
    }
    if (!std::isxdigit(static_cast<unsigned char>(gid[i]))) return "";
    prefix += gid[i];
  }
  if (prefix.size() != 16 || prefix.find_first_not_of('0') == std::string::npos) return "";
  return "ib-" + prefix;
}

std::map<std::string, std::string> ReadInterfaceNetworks() {
  std::map<std::string, std::string> networks;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return networks;
  for (ifaddrs* it = list; it != nullptr; it = it->ifa_next) {
    if (it->ifa_addr == nullptr || it->ifa_netmask == nullptr || it->ifa_addr->sa_family != AF_INET) continue;
    const auto* addr = reinterpret_cast<const sockaddr_in*>(it->ifa_addr);
    const auto* mask = reinterpret_cast<const sockaddr_in*>(it->ifa_netmask);
    const std::string network = Ipv4Network(ntohl(addr->sin_addr.s_addr), ntohl(mask->sin_addr.s_addr));
    if (!network.empty()) networks.emplace(it->ifa_name, network);  // the first address of an interface
  }
  freeifaddrs(list);
  return networks;
}

std::string NetworkOf(const std::map<std::string, std::string>& networks, const std::string& iface) {
  auto it = networks.find(iface);
  return it == networks.end() ? "" : it->second;
}

}  // namespace

std::string Ipv4Network(uint32_t address, uint32_t netmask) {
  const int bits = __builtin_popcount(netmask);
  if (bits > 0 && netmask != ~uint32_t{0} << (32 - bits)) return "";
  const uint32_t net = address & netmask;
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%u.%u.%u.%u/%d", net >> 24, (net >> 16) & 255, (net >> 8) & 255, net & 255, bits);
  return buf;
}

Result<WorkerCapabilities> DetectCapabilities(const DetectOptions& options) {
  WorkerCapabilities caps;
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) == 0) caps.hostname = host;
  caps.cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  TRIB_ASSIGN_OR_RETURN(caps.memory_bytes, ReadMemTotal(options.procfs_root));
  const std::map<std::string, std::string> networks =
      options.interface_networks ? *options.interface_networks : ReadInterfaceNetworks();

  // RDMA ports first: they decide which netdevs are RoCE.
  std::map<std::string, NicFabric> netdev_fabric;
  const fs::path ib_root = fs::path(options.sysfs_root) / "class" / "infiniband";
  std::error_code ec;
  if (fs::is_directory(ib_root, ec)) {
    std::vector<fs::path> devices;
    for (const auto& dev : fs::directory_iterator(ib_root, ec)) devices.push_back(dev.path());
    std::sort(devices.begin(), devices.end());
    for (const fs::path& dev : devices) {
      // Netdevs bound to this RDMA device (present for RoCE and IPoIB).
      std::vector<std::string> netdevs;
      for (const auto& nd : fs::directory_iterator(dev / "device" / "net", ec)) netdevs.push_back(nd.path().filename());
      std::sort(netdevs.begin(), netdevs.end());
      std::vector<fs::path> ports;
      for (const auto& port : fs::directory_iterator(dev / "ports", ec)) ports.push_back(port.path());
      std::sort(ports.begin(), ports.end());
      for (const fs::path& port : ports) {
        NicInfo nic;
        nic.name = dev.filename().string() + "/" + port.filename().string();
        const std::string layer = ReadFirstLine(port / "link_layer");
        nic.fabric = layer == "InfiniBand" ? NicFabric::kInfiniband
                     : layer == "Ethernet" ? NicFabric::kRoce
                                           : NicFabric::kOther;
        nic.speed_mbps = ParseRdmaRateMbps(ReadFirstLine(port / "rate"));
        nic.up = ReadFirstLine(port / "state").find("ACTIVE") != std::string::npos;
        if (nic.fabric == NicFabric::kInfiniband) nic.fabric_id = IbSubnetFromGid(ReadFirstLine(port / "gids" / "0"));
        if (nic.fabric == NicFabric::kRoce && !netdevs.empty()) nic.fabric_id = NetworkOf(networks, netdevs.front());
        for (const std::string& nd : netdevs) netdev_fabric[nd] = nic.fabric;
        caps.nics.push_back(nic);
      }
    }
  }

  const fs::path net_root = fs::path(options.sysfs_root) / "class" / "net";
  if (fs::is_directory(net_root, ec)) {
    std::vector<fs::path> ifaces;
    for (const auto& entry : fs::directory_iterator(net_root, ec)) ifaces.push_back(entry.path());
    std::sort(ifaces.begin(), ifaces.end());
    for (const fs::path& iface : ifaces) {
      const std::string name = iface.filename().string();
      bool ok = false;
      const int64_t type = ParseLeadingInt(ReadFirstLine(iface / "type"), &ok);
      if (name == "lo" || (ok && type == 772)) continue;  // ARPHRD_LOOPBACK
      auto rdma = netdev_fabric.find(name);
      if (rdma != netdev_fabric.end() && rdma->second == NicFabric::kInfiniband) continue;  // IPoIB: the port is listed
      NicInfo nic;
      nic.name = name;
      nic.fabric =
          rdma != netdev_fabric.end() ? rdma->second : (ok && type == 1 ? NicFabric::kEthernet : NicFabric::kOther);
      const int64_t speed = ParseLeadingInt(ReadFirstLine(iface / "speed"), &ok);
      nic.speed_mbps = ok && speed > 0 ? speed : 0;  // virtual NICs report -1 or nothing
      nic.up = ReadFirstLine(iface / "operstate") == "up";
      if (nic.fabric != NicFabric::kOther) nic.fabric_id = NetworkOf(networks, name);
      caps.nics.push_back(nic);
    }
  }

  if (options.query_gpus) caps.gpus = QueryAccelerators().gpus;
  return caps;
}

Status ApplyNicOverrides(const std::vector<std::string>& overrides, WorkerCapabilities* caps) {
  if (overrides.empty()) return Status::OK();
  std::vector<NicInfo> nics;
  for (const std::string& spec : overrides) {
    const size_t a = spec.find(':');
    const size_t b = a == std::string::npos ? a : spec.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos || a == 0)
      return Status::InvalidArgument("NIC override '" + spec + "': expected NAME:FABRIC:MBPS[:FABRIC_ID]");
    const size_t c = spec.find(':', b + 1);
    NicInfo nic;
    nic.name = spec.substr(0, a);
    Result<NicFabric> fabric = ParseNicFabric(spec.substr(a + 1, b - a - 1));
    if (!fabric.ok()) return fabric.status().WithContext("NIC override '" + spec + "'");
    nic.fabric = *fabric;
    const std::string mbps = spec.substr(b + 1, c == std::string::npos ? std::string::npos : c - b - 1);
    bool ok = false;
    nic.speed_mbps = ParseLeadingInt(mbps, &ok);
    if (!ok || nic.speed_mbps <= 0 || std::to_string(nic.speed_mbps) != mbps)
      return Status::InvalidArgument("NIC override '" + spec + "': MBPS must be a positive integer");
    if (c != std::string::npos) {
      nic.fabric_id = spec.substr(c + 1);
      if (nic.fabric_id.empty() || nic.fabric_id.find(':') != std::string::npos)
        return Status::InvalidArgument("NIC override '" + spec + "': FABRIC_ID must be a non-empty name without ':'");
    }
    nic.up = true;
    nics.push_back(nic);
  }
  caps->nics = std::move(nics);
  return Status::OK();
}

std::string CapabilitiesToJson(const WorkerCapabilities& caps) {
  nlohmann::json j;
  j["hostname"] = caps.hostname;
  j["cores"] = caps.cores;
  j["memory_bytes"] = caps.memory_bytes;
  j["gpus"] = nlohmann::json::array();
  for (const GpuInfo& g : caps.gpus) {
    j["gpus"].push_back({{"index", g.index},
                         {"name", g.name},
                         {"memory_bytes", g.total_memory_bytes},
                         {"compute_capability", std::to_string(g.compute_capability_major) + "." +
                                                    std::to_string(g.compute_capability_minor)}});
  }
  j["nics"] = nlohmann::json::array();
  for (const NicInfo& n : caps.nics) {
    j["nics"].push_back({{"name", n.name},
                         {"fabric", NicFabricName(n.fabric)},
                         {"speed_mbps", n.speed_mbps},
                         {"up", n.up},
                         {"fabric_id", n.fabric_id}});
  }
  j["datasets"] = nlohmann::json::array();
  for (const DatasetInfo& d : caps.datasets) {
    j["datasets"].push_back({{"name", d.name}, {"path", d.path}, {"samples", d.samples}});
  }
  return j.dump(2);
}

}  // namespace tributary
