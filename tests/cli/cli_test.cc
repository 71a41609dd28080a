// The `tributary` binary end to end: help, exit codes, argument and config errors.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/cli/cli_util.h"

namespace tributary::testutil {
namespace {

const std::vector<std::string> kCommands = {"coordinator", "worker",   "submit",   "jobs",  "status", "wait", "logs",
                                            "stop",        "download", "train",    "merge", "keygen", "demo", "version",
                                            "init-model",  "config",   "generate", "eval",  "plan"};

int CountLines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

TEST(CliTest, HelpListsEverySubcommand) {
  ProcessResult r = RunTributary({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const auto& cmd : kCommands) EXPECT_NE(r.out.find("  " + cmd + " "), std::string::npos) << cmd;
  EXPECT_NE(r.out.find("--log-format"), std::string::npos);
}

TEST(CliTest, EverySubcommandHasHelp) {
  for (const auto& cmd : kCommands) {
    ProcessResult r = RunTributary({cmd, "--help"});
    EXPECT_EQ(r.exit_code, 0) << cmd << ": " << r.err;
    EXPECT_NE(r.out.find("Usage:"), std::string::npos) << cmd;
  }
}

TEST(CliTest, NoCommandIsAnArgumentError) {
  ProcessResult r = RunTributary({});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_EQ(CountLines(r.err), 1) << r.err;
}

TEST(CliTest, UnknownCommandIsNamed) {
  ProcessResult r = RunTributary({"sumbit", "job.yaml"});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_NE(r.err.find("unknown command 'sumbit'"), std::string::npos) << r.err;
  EXPECT_EQ(CountLines(r.err), 1);
}

TEST(CliTest, UnknownFlagAndMissingArgument) {
  ProcessResult r = RunTributary({"status", "j1", "--colour"});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_NE(r.err.find("--colour"), std::string::npos) << r.err;
  r = RunTributary({"status"});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_NE(r.err.find("job"), std::string::npos) << r.err;
  r = RunTributary({"download", "j1", "--format", "onnx", "-o", "/tmp/x"});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_NE(r.err.find("onnx"), std::string::npos) << r.err;
}

TEST(CliTest, BadLogFlagsAreArgumentErrors) {
  ProcessResult r = RunTributary({"--log-level", "loud", "version"});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_NE(r.err.find("loud"), std::string::npos);
  r = RunTributary({"--log-format", "xml", "version"});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_NE(r.err.find("xml"), std::string::npos);
}

TEST(CliTest, UnbuiltModesExit69NamingWhatIsMissing) {
  TempDir dir;
  ProcessResult r = RunTributary({"generate", "--model", "job:j1@3", "--prompt", "hi"});
  EXPECT_EQ(CountLines(r.err), 1) << r.err;
  EXPECT_EQ(r.exit_code, 69) << r.err;
  EXPECT_NE(r.err.find("not built yet: "), std::string::npos) << r.err;
}

// Daemons and client commands refuse to start without their security and connection settings, with
// one line naming the setting (CURVE is on by default; --insecure is explicit).
TEST(CliTest, DaemonsAndClientsNameTheMissingSetting) {
  TempDir dir;
  const std::string empty_profile = dir.Write("empty.yaml", "log:\n  level: warn\n");
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"coordinator", "--data-dir", dir.path() + "/store"}, "coordinator.secret_key"},
      {{"worker", "--coordinator", "tcp://127.0.0.1:1", "--data", "d=" + empty_profile}, "key"},
      {{"--config", empty_profile, "jobs"}, "coordinator"},
      {{"--config", empty_profile, "status", "j1"}, "coordinator"},
  };
  for (const auto& [args, what] : cases) {
    ProcessResult r = RunTributary(args);
    EXPECT_EQ(r.exit_code, 4) << args[0] << ": " << r.err;
    EXPECT_NE(r.err.find(what), std::string::npos) << r.err;
    EXPECT_EQ(CountLines(r.err), 1) << r.err;
  }
}

TEST(CliTest, VersionJson) {
  ProcessResult r = RunTributary({"version", "--format", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto envelope = nlohmann::json::parse(r.out);
  EXPECT_EQ(envelope["ok"], true);
  EXPECT_EQ(envelope["command"], "version");
  const auto& j = envelope["data"];
  EXPECT_EQ(j["version"], "0.1.0");
  EXPECT_TRUE(j.contains("cuda"));
  EXPECT_FALSE(j["openblas_core"].get<std::string>().empty());
}

TEST(CliTest, ConfigFileAndOverrides) {
  TempDir dir;
  const std::string good = dir.Write("good.yaml", "log:\n  level: warn\ncoordinator:\n  heartbeat_misses: 4\n");
  ProcessResult r = RunTributary({"--config", good, "--set", "coordinator.heartbeat_misses=7", "config"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("log.level: \"warn\"  # " + good + ":2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("coordinator.heartbeat_misses: 7  # --set"), std::string::npos) << r.out;
  // A dedicated flag beats the file.
  r = RunTributary({"--config", good, "--log-level", "error", "config"});
  EXPECT_NE(r.out.find("log.level: \"error\"  # --log-level"), std::string::npos) << r.out;
}

TEST(CliTest, ConfigErrorsNameFileLineAndKey) {
  TempDir dir;
  const std::string unknown = dir.Write("unknown.yaml", "log:\n  level: info\nworker:\n  cores: 3\n");
  ProcessResult r = RunTributary({"--config", unknown, "config"});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_NE(r.err.find(unknown + ":4: unknown key 'worker.cores'"), std::string::npos) << r.err;

  const std::string badtype = dir.Write("badtype.yaml", "coordinator:\n  insecure: perhaps\n");
  r = RunTributary({"--config", badtype, "config"});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_NE(r.err.find(badtype + ":2: key 'coordinator.insecure': expected true or false, got 'perhaps'"),
            std::string::npos)
      << r.err;

  r = RunTributary({"--set", "worker.threads=lots", "config"});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_NE(r.err.find("worker.threads"), std::string::npos) << r.err;

  r = RunTributary({"--config", dir.path() + "/missing.yaml", "config"});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_NE(r.err.find("missing.yaml"), std::string::npos) << r.err;
}

TEST(CliTest, WorkerPrintsCapabilities) {
  ProcessResult r = RunTributary({"--set", "worker.nics=[ib0:infiniband:200000]", "worker", "--print-capabilities"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_GT(j["memory_bytes"].get<int64_t>(), 0);
  ASSERT_EQ(j["nics"].size(), 1u);
  EXPECT_EQ(j["nics"][0]["fabric"], "infiniband");
}

}  // namespace
}  // namespace tributary::testutil

namespace tributary::testutil {
namespace {

TEST(CliTest, ShippedExampleConfigsAreValid) {
  for (const char* file : {"examples/coordinator.yaml", "examples/worker.yaml"}) {
    ProcessResult r = RunTributary({"--config", file, "config"});
    EXPECT_EQ(r.exit_code, 0) << file << ": " << r.err;
    EXPECT_NE(r.out.find(std::string("# ") + file), std::string::npos) << r.out;
  }
}

}  // namespace
}  // namespace tributary::testutil

namespace tributary::testutil {
namespace {

TEST(CliTest, KeygenWritesAKeyPairAndRefusesToOverwrite) {
  TempDir dir;
  const std::string prefix = dir.path() + "/worker1";
  ProcessResult r = RunTributary({"keygen", "-o", prefix});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  struct stat st {};
  ASSERT_EQ(stat((prefix + ".key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const size_t at = r.out.find("public key: ");
  ASSERT_NE(at, std::string::npos) << r.out;
  const std::string key = r.out.substr(at + 12, 40);  // Z85 of a 32-byte key
  std::stringstream pub;
  pub << std::ifstream(prefix + ".pub").rdbuf();
  EXPECT_NE(pub.str().find(key), std::string::npos) << pub.str();

  r = RunTributary({"keygen", "-o", prefix});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("worker1"), std::string::npos) << r.err;
  EXPECT_EQ(RunTributary({"keygen", "-o", prefix, "--force"}).exit_code, 0);
}

}  // namespace
}  // namespace tributary::testutil

namespace tributary::testutil {
namespace {

TEST(CliTest, InvalidUtf8ArgumentsAreRefusedNamingTheFlag) {
  // They would travel in protobuf string fields, which must be UTF-8: refused before connecting (a worker
  // so named used to retry its unencodable Register forever).
  TempDir dir;
  const std::string profile = dir.Write("profile.yaml", "log:\n  level: warn\n");
  const std::string bad = "w\xff";
  const std::vector<std::string> insecure = {"--coordinator", "tcp://127.0.0.1:1", "--insecure"};
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"worker", "--name", bad}, "--name: 'w\\xff' is not valid UTF-8 (byte 1)"},
      {{"worker", "--name", "w1", "--data", "d\xe9=" + profile}, "--data: 'd\\xe9="},
      {{"status", bad}, "'w\\xff' is not valid UTF-8"},
      {{"stop", "j1", "--reason", bad}, "--reason: "},
      {{"logs", "j1", "--worker", bad}, "--worker: "},
  };
  for (auto [args, what] : cases) {
    args.insert(args.begin(), {"--config", profile});
    args.insert(args.end(), insecure.begin(), insecure.end());
    ProcessResult r = RunTributary(args);
    EXPECT_EQ(r.exit_code, 4) << args[2] << ": " << r.err;
    EXPECT_NE(r.err.find(what), std::string::npos) << r.err;
    EXPECT_EQ(CountLines(r.err), 1) << r.err;
  }
}

TEST(CliTest, CorruptModelFilesExit4NamingTheFile) {
  TempDir dir;
  const std::string model = dir.path() + "/model";
  ProcessResult r = RunTributary({"init-model", "--config", "examples/tiny-model.yaml", "-o", model});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string weights = model + "/model.safetensors";
  std::string good;
  {
    std::ifstream in(weights, std::ios::binary);
    good.assign(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_GT(good.size(), 200u);
  std::string bad_json = good;
  bad_json[8] = '[';  // the header must be a JSON object
  const std::vector<std::pair<std::string, std::string>> cases = {
      {good.substr(0, good.size() - 100), "is beyond the data section"},
      {good.substr(0, 4), "truncated"},
      {bad_json, "JSON"},
  };
  for (const auto& [bytes, what] : cases) {
    {
      std::ofstream out(weights, std::ios::binary | std::ios::trunc);
      out << bytes;
    }
    r = RunTributary({"generate", "--model", model, "--prompt", "hi", "--max-new-tokens", "1"});
    EXPECT_EQ(r.exit_code, 4) << r.err;
    EXPECT_NE(r.err.find(weights + ": "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(what), std::string::npos) << r.err;
    EXPECT_EQ(CountLines(r.err), 1) << r.err;
  }
}

TEST(CliTest, SubmitValidatesTheSpecBeforeConnecting) {
  // A valid spec: --dry-run prints the canonical form; a real submit needs a coordinator endpoint.
  ProcessResult r = RunTributary({"submit", "examples/jobs/ferret-dolly.yaml", "--dry-run", "--format", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["data"]["mode"], "ferret");
  EXPECT_NE(j["data"]["canonical"].get<std::string>().find("federation.rounds"), std::string::npos);
  r = RunTributary({"submit", "examples/jobs/ferret-dolly.yaml", "--set", "federation.rounds=3", "--dry-run"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("3 rounds"), std::string::npos) << r.out;
  // An explicit profile without a coordinator, so a developer's own client.yaml cannot interfere.
  TempDir dir;
  const std::string no_coordinator = dir.Write("profile.yaml", "log:\n  level: warn\n");
  r = RunTributary({"--config", no_coordinator, "submit", "examples/jobs/ferret-dolly.yaml"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("coordinator"), std::string::npos) << r.err;

  // An invalid spec is refused with the file, line and field, before any connection.
  const std::string bad = dir.Write("job.yaml",
                                    "model:\n  base: /models/tiny\ndata:\n  dataset: dolly\nfederation:\n"
                                    "  rounds: zero\n");
  r = RunTributary({"submit", bad});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find(bad + ":6: key 'federation.rounds'"), std::string::npos) << r.err;
  r = RunTributary(
      {"submit", "examples/jobs/ferret-dolly.yaml", "--set", "federation.mode=fedavg", "--set", "ferret.k=100"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("ferret.k"), std::string::npos) << r.err;
  r = RunTributary({"submit", "examples/jobs/ferret-dolly.yaml", "--submit-token", "bad token!"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("--submit-token"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace tributary::testutil
