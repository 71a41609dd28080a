// Bad input against the real daemons, through the real CLI: a job naming a dataset no registered worker
// holds and a base model with a NaN weight are refused at submit (exit 4, one line naming the dataset or the
// file and tensor); a worker that cannot train a job (here: its dataset file is gone) tells the coordinator,
// and `tributary status` shows the worker and the reason.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/file_util.h"
#include "engine/io/model_dir.h"
#include "tests/system/system_util.h"

namespace tributary::system_test {
namespace {

namespace fs = std::filesystem;

// Polls `tributary workers` until `count` workers are registered (or a minute passed).
bool WaitRegistered(const std::string& dir, const std::string& profile, size_t count) {
  for (int attempt = 0; attempt < 120; ++attempt) {
    CliRun run = Cli(dir, profile, {"workers", "--format", "json"});
    if (run.exit_code == 0 && nlohmann::json::parse(run.out)["data"]["workers"].size() >= count) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return false;
}

// Writes `yaml` to DIR/NAME and submits it.
CliRun SubmitYaml(const std::string& dir, const std::string& profile, const std::string& name,
                  const std::string& yaml) {
  const std::string path = (fs::path(dir) / name).string();
  EXPECT_TRUE(WriteFileAtomic(path, yaml).ok());
  return Cli(dir, profile, {"submit", path});
}

TEST(BadInputSystemTest, RefusedAtSubmitOrShownInStatus) {
  TestDir dir;
  TestCluster cluster(dir.path(), ClusterOptions{.num_workers = 1});
  const std::string profile = cluster.cluster().client_config();
  ASSERT_TRUE(WaitRegistered(dir.path(), profile, 1));
  const std::vector<std::string> one_client = {"federation.min_clients=1"};

  // A dataset no registered worker holds: the job would wait forever.
  std::vector<std::string> overrides = one_client;
  overrides.push_back("data.dataset=nobody-has-it");
  CliRun unheld =
      SubmitYaml(dir.path(), profile, "unheld.yaml", JobYaml(cluster.base_model(), "fedavg", 2, 1, overrides));
  EXPECT_EQ(unheld.exit_code, 4) << unheld.err;
  EXPECT_NE(unheld.err.find("no registered worker holds dataset 'nobody-has-it'"), std::string::npos) << unheld.err;
  EXPECT_NE(unheld.err.find("'words'"), std::string::npos) << "names the datasets the workers hold: " << unheld.err;

  // A base model with a NaN weight: refused when the coordinator loads it, naming the file and the tensor.
  auto base = LoadModelDir(cluster.base_model());
  ASSERT_TRUE(base.ok()) << base.status().ToString();
  base->params.tensor(1)[2] = std::nanf("");
  const std::string nan_model = (fs::path(dir.path()) / "nan-model").string();
  SaveModelOptions save;
  save.copy_tokenizer_from = cluster.base_model();
  ASSERT_TRUE(SaveModelDir(nan_model, base->config, base->params, save).ok());
  CliRun nan = SubmitYaml(dir.path(), profile, "nan.yaml", JobYaml(nan_model, "fedavg", 2, 1, one_client));
  EXPECT_EQ(nan.exit_code, 4) << nan.err;
  EXPECT_NE(nan.err.find(nan_model + "/model.safetensors: tensor '" + base->params.table()[1].name + "'"),
            std::string::npos)
      << nan.err;
  EXPECT_NE(nan.err.find("not a finite number"), std::string::npos) << nan.err;
  EXPECT_EQ(nan.err.find('\n'), nan.err.size() - 1) << "one line: " << nan.err;

  // A worker that cannot train: its dataset file is gone since it registered.
  fs::remove(fs::path(dir.path()) / "data" / "shard-0.jsonl");
  CliRun submit =
      SubmitYaml(dir.path(), profile, "job.yaml", JobYaml(cluster.base_model(), "fedavg", 2, 1, one_client));
  ASSERT_EQ(submit.exit_code, 0) << submit.err;
  const std::string job = submit.out.substr(0, submit.out.find('\n'));
  nlohmann::json problems;
  for (int attempt = 0; attempt < 120 && problems.empty(); ++attempt) {
    CliRun status = Cli(dir.path(), profile, {"status", job, "--format", "json"});
    ASSERT_EQ(status.exit_code, 0) << status.err;
    problems = nlohmann::json::parse(status.out)["data"]["worker_problems"];
    if (problems.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0]["worker_id"], cli::LocalCluster::WorkerName(0));
  EXPECT_EQ(problems[0]["round"], 1);
  EXPECT_NE(problems[0]["reason"].get<std::string>().find("shard-0.jsonl"), std::string::npos) << problems;
  CliRun text = Cli(dir.path(), profile, {"status", job});
  EXPECT_NE(text.out.find("cannot train  worker '" + cli::LocalCluster::WorkerName(0) + "' (round 1): "),
            std::string::npos)
      << text.out;
}

}  // namespace
}  // namespace tributary::system_test
