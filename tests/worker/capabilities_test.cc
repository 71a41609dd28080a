#include "worker/capabilities.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tests/common/temp_dir.h"

namespace tributary {
namespace {
namespace fs = std::filesystem;

void WriteFile(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

// A fake /sys and /proc laid out like the kernel's: an Ethernet NIC, a down virtual NIC, loopback,
// a RoCE device bound to a netdev, and an InfiniBand HCA with IPoIB.
class FakeSysfs : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_.path();
    const fs::path net = root_ / "sys/class/net";
    WriteFile(net / "lo/type", "772\n");
    WriteFile(net / "eth0/type", "1\n");
    WriteFile(net / "eth0/speed", "25000\n");
    WriteFile(net / "eth0/operstate", "up\n");
    WriteFile(net / "veth9/type", "1\n");
    WriteFile(net / "veth9/speed", "-1\n");
    WriteFile(net / "veth9/operstate", "down\n");
    WriteFile(net / "ens5/type", "1\n");
    WriteFile(net / "ens5/speed", "100000\n");
    WriteFile(net / "ens5/operstate", "up\n");
    WriteFile(net / "ib0/type", "32\n");
    WriteFile(net / "ib0/speed", "200000\n");
    WriteFile(net / "ib0/operstate", "up\n");
    const fs::path ib = root_ / "sys/class/infiniband";
    WriteFile(ib / "mlx5_0/ports/1/link_layer", "Ethernet\n");
    WriteFile(ib / "mlx5_0/ports/1/rate", "100 Gb/sec (2X HDR)\n");
    WriteFile(ib / "mlx5_0/ports/1/state", "4: ACTIVE\n");
    fs::create_directories(ib / "mlx5_0/device/net/ens5");
    WriteFile(ib / "mlx5_1/ports/1/link_layer", "InfiniBand\n");
    WriteFile(ib / "mlx5_1/ports/1/rate", "200 Gb/sec (4X HDR)\n");
    WriteFile(ib / "mlx5_1/ports/1/state", "4: ACTIVE\n");
    fs::create_directories(ib / "mlx5_1/device/net/ib0");
    WriteFile(ib / "mlx5_1/ports/1/gids/0", "fe80:0000:0000:00a1:0002:c903:00a1:b2c1\n");
    options_.interface_networks = std::map<std::string, std::string>{{"eth0", "10.0.1.0/24"}, {"ens5", "10.2.0.0/16"}};
    WriteFile(root_ / "proc/meminfo", "MemTotal:       24576000 kB\nMemFree:        1000 kB\n");
    options_.sysfs_root = (root_ / "sys").string();
    options_.procfs_root = (root_ / "proc").string();
    options_.query_gpus = false;
  }

  const NicInfo* FindNic(const WorkerCapabilities& caps, const std::string& name) {
    for (const auto& n : caps.nics)
      if (n.name == name) return &n;
    return nullptr;
  }

  testutil::TempDir dir_{"tributary-sysfs"};
  fs::path root_;
  DetectOptions options_;
};

TEST_F(FakeSysfs, ClassifiesEthernetRoceAndInfiniband) {
  Result<WorkerCapabilities> caps = DetectCapabilities(options_);
  ASSERT_TRUE(caps.ok()) << caps.status().ToString();
  EXPECT_EQ(caps->memory_bytes, 24576000LL * 1024);
  EXPECT_GE(caps->cores, 1);
  EXPECT_EQ(FindNic(*caps, "lo"), nullptr);
  EXPECT_EQ(FindNic(*caps, "ib0"), nullptr) << "IPoIB netdev is reported through its RDMA port";

  const NicInfo* eth = FindNic(*caps, "eth0");
  ASSERT_NE(eth, nullptr);
  EXPECT_EQ(eth->fabric, NicFabric::kEthernet);
  EXPECT_EQ(eth->speed_mbps, 25000);
  EXPECT_TRUE(eth->up);
  EXPECT_EQ(eth->fabric_id, "10.0.1.0/24");

  const NicInfo* veth = FindNic(*caps, "veth9");
  ASSERT_NE(veth, nullptr);
  EXPECT_EQ(veth->speed_mbps, 0);
  EXPECT_FALSE(veth->up);

  const NicInfo* roce_netdev = FindNic(*caps, "ens5");
  ASSERT_NE(roce_netdev, nullptr);
  EXPECT_EQ(roce_netdev->fabric, NicFabric::kRoce);

  const NicInfo* roce = FindNic(*caps, "mlx5_0/1");
  ASSERT_NE(roce, nullptr);
  EXPECT_EQ(roce->fabric, NicFabric::kRoce);
  EXPECT_EQ(roce->speed_mbps, 100000);
  EXPECT_EQ(roce->fabric_id, "10.2.0.0/16");  // the network of its netdev ens5
  EXPECT_EQ(roce_netdev->fabric_id, "10.2.0.0/16");

  const NicInfo* ib = FindNic(*caps, "mlx5_1/1");
  ASSERT_NE(ib, nullptr);
  EXPECT_EQ(ib->fabric, NicFabric::kInfiniband);
  EXPECT_EQ(ib->speed_mbps, 200000);
  EXPECT_TRUE(ib->up);
  EXPECT_EQ(ib->fabric_id, "ib-fe800000000000a1");  // the subnet prefix of GID 0
  EXPECT_EQ(veth->fabric_id, "");                   // no address

  auto j = nlohmann::json::parse(CapabilitiesToJson(*caps));
  EXPECT_EQ(j["nics"].size(), caps->nics.size());
}

TEST_F(FakeSysfs, AZeroOrMissingGidGivesNoFabricIdentity) {
  WriteFile(root_ / "sys/class/infiniband/mlx5_1/ports/1/gids/0", "0000:0000:0000:0000:0000:0000:0000:0000\n");
  Result<WorkerCapabilities> caps = DetectCapabilities(options_);
  ASSERT_TRUE(caps.ok());
  EXPECT_EQ(FindNic(*caps, "mlx5_1/1")->fabric_id, "");
  fs::remove(root_ / "sys/class/infiniband/mlx5_1/ports/1/gids/0");
  caps = DetectCapabilities(options_);
  ASSERT_TRUE(caps.ok());
  EXPECT_EQ(FindNic(*caps, "mlx5_1/1")->fabric_id, "");
}

TEST(Ipv4NetworkTest, MasksTheAddress) {
  EXPECT_EQ(Ipv4Network(0x0A000105, 0xFFFFFF00), "10.0.1.0/24");
  EXPECT_EQ(Ipv4Network(0xC0A80A11, 0xFFFF0000), "192.168.0.0/16");
  EXPECT_EQ(Ipv4Network(0x0A000105, 0xFFFFFFFF), "10.0.1.5/32");
  EXPECT_EQ(Ipv4Network(0x0A000105, 0xFF00FF00), "");  // not a prefix
}

TEST_F(FakeSysfs, MissingMeminfoIsAnErrorNamingTheFile) {
  fs::remove(root_ / "proc/meminfo");
  Result<WorkerCapabilities> caps = DetectCapabilities(options_);
  ASSERT_FALSE(caps.ok());
  EXPECT_NE(caps.status().message().find("meminfo"), std::string::npos);
}

TEST(NicOverrideTest, ReplacesDetectedNics) {
  WorkerCapabilities caps;
  caps.nics.push_back({"eth0", NicFabric::kEthernet, 1000, true, ""});
  ASSERT_TRUE(ApplyNicOverrides({"ib0:infiniband:200000:ib-a", "eth1:ethernet:25000"}, &caps).ok());
  ASSERT_EQ(caps.nics.size(), 2u);
  EXPECT_EQ(caps.nics[0].fabric, NicFabric::kInfiniband);
  EXPECT_EQ(caps.nics[0].speed_mbps, 200000);
  EXPECT_EQ(caps.nics[0].fabric_id, "ib-a");
  EXPECT_TRUE(IsPlaceable(caps.nics[0]));
  EXPECT_EQ(caps.nics[1].name, "eth1");
  EXPECT_EQ(caps.nics[1].fabric_id, "");
  auto j = nlohmann::json::parse(CapabilitiesToJson(caps));
  EXPECT_EQ(j["nics"][0]["fabric"], "infiniband");
  EXPECT_EQ(j["nics"][0]["fabric_id"], "ib-a");
}

TEST(NicOverrideTest, RejectsMalformedOverrides) {
  WorkerCapabilities caps;
  for (const char* bad : {"ib0", "ib0:infiniband", "ib0:token-ring:100", "ib0:roce:fast", ":roce:100", "x:roce:-5",
                          "x:roce:100:", "x:roce:100:a:b"}) {
    Status s = ApplyNicOverrides({bad}, &caps);
    EXPECT_TRUE(s.IsInvalidArgument()) << bad;
    EXPECT_NE(s.message().find(bad), std::string::npos) << s.message();
  }
}

TEST(DetectCapabilitiesTest, RealMachine) {
  Result<WorkerCapabilities> caps = DetectCapabilities();
  ASSERT_TRUE(caps.ok()) << caps.status().ToString();
  EXPECT_GT(caps->memory_bytes, 0);
  EXPECT_GE(caps->cores, 1);
  for (const auto& n : caps->nics) EXPECT_NE(n.name, "lo");
}

}  // namespace
}  // namespace tributary
