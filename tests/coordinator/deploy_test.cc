// Checks of the deployment artefacts in deploy/: the systemd units pass `systemd-analyze verify`
// and carry the directives deploy/README.md promises. The Kubernetes manifests are rendered and
// validated by tests/deploy/kubernetes_test.sh.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "tests/common/temp_dir.h"

namespace tributary {
namespace {

namespace fs = std::filesystem;

const fs::path kSystemdDir = "deploy/systemd";

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Runs a shell command, returning its exit status and combined stdout/stderr.
std::pair<int, std::string> RunCommand(const std::string& command) {
  std::string output;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::array<char, 4096> buffer;
  size_t n = 0;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) output.append(buffer.data(), n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

bool HaveSystemdAnalyze() {
  return RunCommand("command -v systemd-analyze").first == 0;
}

// A unit file as section -> key -> values (a key may repeat).
using UnitFile = std::map<std::string, std::map<std::string, std::vector<std::string>>>;

UnitFile ParseUnit(const std::string& text) {
  UnitFile unit;
  std::istringstream in(text);
  std::string line;
  std::string section;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[' && line.back() == ']') {
      section = line.substr(1, line.size() - 2);
      continue;
    }
    const size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    unit[section][line.substr(0, eq)].push_back(line.substr(eq + 1));
  }
  return unit;
}

std::string Only(const UnitFile& unit, const std::string& section, const std::string& key) {
  if (!unit.count(section) || !unit.at(section).count(key)) return "<missing>";
  const std::vector<std::string>& values = unit.at(section).at(key);
  return values.size() == 1 ? values[0] : "<repeated>";
}

class DeployTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(kSystemdDir)) << "run the test from the repository root (cwd: " << fs::current_path() << ")";
    temp_dir_ = temp_.path();
  }

  // `systemd-analyze verify` on a copy of the unit whose ExecStart binary is /bin/true (the
  // tributary binary is not installed where tests run). Returns the diagnostics about the unit.
  std::string Verify(const std::string& unit_name, const std::string& text) {
    std::string copy = text;
    const std::string binary = "/usr/bin/tributary";
    for (size_t at = copy.find(binary); at != std::string::npos; at = copy.find(binary, at)) {
      copy.replace(at, binary.size(), "/bin/true");
    }
    const fs::path path = temp_dir_ / unit_name;
    std::ofstream(path) << copy;
    auto [rc, output] = RunCommand("systemd-analyze verify --man=no '" + path.string() + "'");
    // Other units on the host may produce noise; keep only lines about ours.
    std::string diagnostics;
    std::istringstream lines(output);
    std::string line;
    while (std::getline(lines, line)) {
      if (line.find("tributary") != std::string::npos) diagnostics += line + "\n";
    }
    if (rc != 0) diagnostics += "exit status " + std::to_string(rc) + ": " + output;
    return diagnostics;
  }

  tributary::testutil::TempDir temp_{"tributary_deploy_test"};

  fs::path temp_dir_;
};

TEST_F(DeployTest, UnitsPassSystemdAnalyzeVerify) {
  if (!HaveSystemdAnalyze()) GTEST_SKIP() << "systemd-analyze is not installed; units not verified";
  for (const char* name : {"tributary-coordinator.service", "tributary-worker@.service"}) {
    const std::string text = ReadFile(kSystemdDir / name);
    ASSERT_FALSE(text.empty()) << name;
    EXPECT_EQ(Verify(name, text), "") << name;
  }
}

TEST_F(DeployTest, SystemdAnalyzeCatchesABrokenUnit) {
  if (!HaveSystemdAnalyze()) GTEST_SKIP() << "systemd-analyze is not installed; units not verified";
  // Control for the test above: a misspelled key and a bad Type must be reported.
  std::string text = ReadFile(kSystemdDir / "tributary-coordinator.service");
  ASSERT_NE(text.find("NoNewPrivileges=yes"), std::string::npos);
  text.replace(text.find("NoNewPrivileges=yes"), 19, "NoNewPrivilege=yes");
  text.replace(text.find("Type=notify"), 11, "Type=notfy");
  const std::string diagnostics = Verify("tributary-broken.service", text);
  EXPECT_NE(diagnostics.find("NoNewPrivilege"), std::string::npos) << diagnostics;
  EXPECT_NE(diagnostics.find("notfy"), std::string::npos) << diagnostics;
}

TEST_F(DeployTest, UnitsCarryTheRequiredDirectives) {
  struct Expected {
    const char* file;
    const char* exec_start;
    int max_watchdog_s;  // the daemon pings at half of WatchdogSec; it must be set and sane
  };
  const Expected units[] = {
      {"tributary-coordinator.service", "/usr/bin/tributary --config /etc/tributary/coordinator.yaml coordinator", 300},
      {"tributary-worker@.service", "/usr/bin/tributary --config /etc/tributary/worker-%i.yaml worker", 60},
  };
  for (const Expected& expected : units) {
    SCOPED_TRACE(expected.file);
    const UnitFile unit = ParseUnit(ReadFile(kSystemdDir / expected.file));
    EXPECT_EQ(Only(unit, "Service", "ExecStart"), expected.exec_start);
    EXPECT_EQ(Only(unit, "Service", "Type"), "notify");
    EXPECT_EQ(Only(unit, "Service", "NotifyAccess"), "main");
    const std::string watchdog = Only(unit, "Service", "WatchdogSec");
    ASSERT_TRUE(std::regex_match(watchdog, std::regex("[0-9]+s"))) << watchdog;
    EXPECT_GE(std::atoi(watchdog.c_str()), 10);
    EXPECT_LE(std::atoi(watchdog.c_str()), expected.max_watchdog_s);
    EXPECT_EQ(Only(unit, "Service", "User"), "tributary");
    EXPECT_EQ(Only(unit, "Service", "Group"), "tributary");
    EXPECT_EQ(Only(unit, "Service", "ConfigurationDirectory"), "tributary");
    EXPECT_EQ(Only(unit, "Service", "Restart"), "on-failure");
    EXPECT_NE(Only(unit, "Unit", "StartLimitBurst"), "<missing>");
    EXPECT_NE(Only(unit, "Unit", "StartLimitIntervalSec"), "<missing>");
    for (const char* key : {"NoNewPrivileges", "PrivateTmp", "ProtectHome", "ProtectKernelTunables",
                            "ProtectKernelModules", "ProtectControlGroups", "RestrictSUIDSGID", "LockPersonality"})
      EXPECT_EQ(Only(unit, "Service", key), "yes") << key;
    EXPECT_EQ(Only(unit, "Service", "ProtectSystem"), "strict");
    EXPECT_EQ(Only(unit, "Service", "CapabilityBoundingSet"), "");
    EXPECT_GT(std::atol(Only(unit, "Service", "LimitNOFILE").c_str()), 1024);
    // Exit 69 (a capability this build lacks) must not cause a restart loop.
    EXPECT_NE(Only(unit, "Service", "RestartPreventExitStatus").find("69"), std::string::npos);
  }
  // The coordinator's store is its state directory; the worker writes nothing.
  const UnitFile coordinator = ParseUnit(ReadFile(kSystemdDir / "tributary-coordinator.service"));
  EXPECT_EQ(Only(coordinator, "Service", "StateDirectory"), "tributary");
  EXPECT_EQ(Only(coordinator, "Service", "ReadWritePaths"), "/var/lib/tributary");
  EXPECT_EQ(Only(coordinator, "Service", "PrivateDevices"), "yes");
  const UnitFile worker = ParseUnit(ReadFile(kSystemdDir / "tributary-worker@.service"));
  EXPECT_EQ(Only(worker, "Service", "StateDirectory"), "<missing>");
  // The drain after SIGTERM (worker.drain_timeout_s, default 60 s) must fit before systemd's SIGKILL.
  EXPECT_GT(std::atoi(Only(worker, "Service", "TimeoutStopSec").c_str()), 60);
}

TEST_F(DeployTest, SysusersCreatesTheUnitsUser) {
  const std::string text = ReadFile(kSystemdDir / "tributary.sysusers");
  EXPECT_TRUE(std::regex_search(text, std::regex(R"(\nu tributary - "[^"]+" /var/lib/tributary\n)"))) << text;
  if (RunCommand("command -v systemd-sysusers").first != 0)
    GTEST_SKIP() << "systemd-sysusers is not installed; the file is not parsed";
  // --root: applied to an empty tree, so the host's users are not touched.
  const fs::path root = temp_dir_ / "root";
  fs::create_directories(root / "etc");
  auto [rc, output] = RunCommand("systemd-sysusers --root='" + root.string() + "' '" +
                                 (fs::current_path() / kSystemdDir / "tributary.sysusers").string() + "'");
  EXPECT_EQ(rc, 0) << output;
  EXPECT_NE(ReadFile(root / "etc" / "passwd").find("tributary:x:"), std::string::npos) << output;
}

}  // namespace
}  // namespace tributary
