// The job lifecycle through the real `tributary` CLI against real daemons: submit (with a token),
// jobs, status, wait, logs, download (safetensors and peft), stop; and a client with an unknown key.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/file_util.h"
#include "engine/io/model_dir.h"
#include "federation/replica_state.h"
#include "peft/lora.h"
#include "tests/system/system_util.h"
#include "transport/security.h"

namespace tributary::system_test {
namespace {

namespace fs = std::filesystem;

nlohmann::json JsonLine(const std::string& out) {
  // The JSON envelope is the stdout line starting with '{' (log lines go to the same file here).
  size_t begin = 0;
  while (begin < out.size()) {
    size_t end = out.find('\n', begin);
    if (end == std::string::npos) end = out.size();
    if (out[begin] == '{') return nlohmann::json::parse(out.substr(begin, end - begin), nullptr, false);
    begin = end + 1;
  }
  return nlohmann::json();
}

TEST(CliLifecycleSystemTest, SubmitWaitStatusLogsDownloadStop) {
  TestDir dir;
  TestCluster cluster(dir.path());
  const std::string profile = cluster.cluster().client_config();
  const std::string job_file = (fs::path(dir.path()) / "job.yaml").string();
  ASSERT_TRUE(WriteFileAtomic(job_file, JobYaml(cluster.base_model(), "lora", 2, 8)).ok());

  CliRun submit = Cli(dir.path(), profile, {"submit", job_file, "--submit-token", "t-1", "--format", "json"});
  ASSERT_EQ(submit.exit_code, 0) << submit.out;
  nlohmann::json submitted = JsonLine(submit.out);
  const std::string job_id = submitted["data"]["job_id"].get<std::string>();
  EXPECT_FALSE(submitted["data"]["existing"].get<bool>());
  CliRun again = Cli(dir.path(), profile, {"submit", job_file, "--submit-token", "t-1", "--format", "json"});
  ASSERT_EQ(again.exit_code, 0) << again.out;
  EXPECT_EQ(JsonLine(again.out)["data"]["job_id"], job_id);
  EXPECT_TRUE(JsonLine(again.out)["data"]["existing"].get<bool>());

  CliRun wait = Cli(dir.path(), profile, {"wait", job_id, "--timeout", "240"});
  ASSERT_EQ(wait.exit_code, 0) << wait.out;

  CliRun status = Cli(dir.path(), profile, {"status", job_id, "--format", "json"});
  ASSERT_EQ(status.exit_code, 0) << status.out;
  nlohmann::json st = JsonLine(status.out);
  EXPECT_EQ(st["data"]["job"]["state"], "FINISHED:COMPLETED");
  EXPECT_EQ(st["data"]["job"]["round"], 2);
  ASSERT_EQ(st["data"]["rounds"].size(), 2u);
  const std::string final_hash = st["data"]["rounds"][1]["weights_hash"].get<std::string>();

  CliRun jobs = Cli(dir.path(), profile, {"jobs", "--format", "json"});
  ASSERT_EQ(jobs.exit_code, 0) << jobs.out;
  EXPECT_EQ(JsonLine(jobs.out)["data"]["jobs"].size(), 1u) << "the repeated token must not create a second job";

  CliRun logs = Cli(dir.path(), profile, {"logs", job_id});
  ASSERT_EQ(logs.exit_code, 0) << logs.out;
  EXPECT_NE(logs.out.find("round 2 committed"), std::string::npos) << logs.out;

  // The PEFT adapter holds exactly the coordinator's final adapters (its hash is the round's hash).
  const std::string peft_dir = (fs::path(dir.path()) / "adapter").string();
  CliRun peft = Cli(dir.path(), profile, {"download", job_id, "--format", "peft", "-o", peft_dir});
  ASSERT_EQ(peft.exit_code, 0) << peft.out;
  auto base = LoadModelDir(cluster.base_model());
  ASSERT_TRUE(base.ok());
  auto adapters = LoraAdapters::Load(peft_dir, base->config);
  ASSERT_TRUE(adapters.ok()) << adapters.status().ToString();
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(WeightsHash((*adapters)->params())));
  EXPECT_EQ(hex, final_hash);
  // The merged model loads as an HF directory.
  const std::string merged_dir = (fs::path(dir.path()) / "merged").string();
  CliRun merged = Cli(dir.path(), profile, {"download", job_id, "--format", "safetensors", "-o", merged_dir});
  ASSERT_EQ(merged.exit_code, 0) << merged.out;
  auto merged_model = LoadModelDir(merged_dir);
  EXPECT_TRUE(merged_model.ok()) << merged_model.status().ToString();

  // A long job is stopped: wait reports it as not completed (exit 1), status shows FINISHED:STOPPED.
  const std::string long_file = (fs::path(dir.path()) / "long.yaml").string();
  ASSERT_TRUE(WriteFileAtomic(long_file, JobYaml(cluster.base_model(), "ferret", 500, 8)).ok());
  CliRun long_submit = Cli(dir.path(), profile, {"submit", long_file, "--format", "json"});
  ASSERT_EQ(long_submit.exit_code, 0) << long_submit.out;
  const std::string long_id = JsonLine(long_submit.out)["data"]["job_id"].get<std::string>();
  CliRun stop = Cli(dir.path(), profile, {"stop", long_id});
  EXPECT_EQ(stop.exit_code, 0) << stop.out;
  CliRun stopped = Cli(dir.path(), profile, {"wait", long_id, "--timeout", "60"});
  EXPECT_EQ(stopped.exit_code, 1) << stopped.out;
  CliRun long_status = Cli(dir.path(), profile, {"status", long_id, "--format", "json"});
  EXPECT_EQ(JsonLine(long_status.out)["data"]["job"]["state"], "FINISHED:STOPPED");

  // A CLI user whose key the coordinator does not know gets exit 2.
  const std::string stranger = (fs::path(dir.path()) / "keys" / "stranger").string();
  ASSERT_TRUE(transport::WriteKeyPairFiles(stranger, false, nullptr).ok());
  const std::string stranger_profile = (fs::path(dir.path()) / "stranger.yaml").string();
  ASSERT_TRUE(WriteFileAtomic(stranger_profile, "client:\n  coordinator: " + cluster.cluster().endpoint() +
                                                    "\n  secret_key: " + stranger + ".key\n  coordinator_key: " +
                                                    dir.path() + "/keys/coordinator.pub\n  request_timeout_s: 3\n")
                  .ok());
  CliRun refused = Cli(dir.path(), stranger_profile, {"status", job_id});
  EXPECT_EQ(refused.exit_code, 2) << refused.out;
}

}  // namespace
}  // namespace tributary::system_test
