// Helpers of the multi-process tests: a LocalCluster (cli/local_cluster.h) over the demo's word-task
// data with a small model, job specs per mode, and protocol requests to the coordinator.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cli/local_cluster.h"
#include "federation/outer_codec.h"
#include "tests/common/temp_dir.h"
#include "transport/channel.h"

namespace tributary::system_test {

// A test directory kept (and its path printed) when the test failed, so the daemons' logs can be read.
class TestDir : public testutil::TempDir {
 public:
  TestDir() : TempDir("tributary_system_test", /*keep_on_failure=*/true) {}
};

struct ClusterOptions {
  int num_workers = 4;
  bool insecure = false;
  // Extra global CLI arguments of the daemons (cli::LocalClusterOptions).
  std::vector<std::string> coordinator_args = {};
  std::vector<std::string> worker_args = {};
  std::map<int, std::vector<std::string>> worker_own_args = {};  // worker index -> its own extra arguments
};

// One run of the `tributary` binary.
struct CliRun {
  int exit_code = -1;
  std::string out;  // stdout only
  std::string err;
};

// Runs the CLI with a client profile (empty: none), stdout and stderr kept apart in files under `dir`;
// waits up to 5 minutes.
CliRun Cli(const std::string& dir, const std::string& profile, const std::vector<std::string>& args);

// Writes the base model (once per directory) and per-worker non-IID data, starts the coordinator and
// the workers, and connects a client. Fails the test (ASSERT) on error.
class TestCluster {
 public:
  TestCluster(const std::string& dir, ClusterOptions options = {});
  ~TestCluster();

  cli::LocalCluster& cluster() { return *cluster_; }
  transport::Client& client() { return *client_; }
  const std::string& dir() const { return dir_; }
  const std::string& base_model() const { return base_model_; }
  // Re-connects the client (after a coordinator restart, a fresh DEALER avoids stale replies).
  void Reconnect();

 private:
  std::string dir_;
  std::string base_model_;
  std::unique_ptr<cli::LocalCluster> cluster_;
  std::unique_ptr<transport::Client> client_;
};

// A job spec over the cluster's data: `mode` ferret | fedavg | lora, with --set style overrides. Every
// round waits for all 4 workers (min_clients 4, quorum 1: a slow worker on a loaded machine re-plans the
// round instead of being left out), so runs with the same seed are comparable.
std::string JobYaml(const std::string& base_model, const std::string& mode, int rounds, uint64_t seed,
                    const std::vector<std::string>& overrides = {});

// The outer payload of one island of the job's model in `codec` (federation/outer_codec.h), e.g. int8: per
// tensor a 256-entry fp32 codebook and one byte per value.
uint64_t OuterPayloadBytes(const std::string& yaml, OuterCodec codec);

// The held-out loss of the job's initial model on the cluster's held-out data (computed in-process).
double InitialHeldOutLoss(const TestCluster& cluster, const std::string& yaml);

// Requests (ADD_FAILURE and an empty result on error).
std::string Submit(transport::Client& client, const std::string& yaml, const std::string& token = "");
Result<v1::GetJobReply> GetJob(transport::Client& client, const std::string& job_id);
// Polls until the job is FINISHED:* (or the timeout); returns the last reply.
v1::GetJobReply WaitFinished(transport::Client& client, const std::string& job_id, int timeout_s = 240);
// Polls until `predicate(reply)` holds; false on timeout.
bool WaitFor(transport::Client& client, const std::string& job_id,
             const std::function<bool(const v1::GetJobReply&)>& predicate, int timeout_s = 120);
// Waits until `workers` workers report (in heartbeats) a replica of the job at `round`, then expects each
// replica at that round to have weights hash `hash`.
void ExpectReplicasAtFinalHash(transport::Client& client, const std::string& job_id, uint64_t round,
                               const std::string& hash, int workers);
// Waits until `worker_id` reports (in its heartbeats) a replica of the job at `round`, then expects its
// weights hash to be `hash`.
void ExpectReplicaReaches(transport::Client& client, const std::string& job_id, const std::string& worker_id,
                          uint64_t round, const std::string& hash);
// The coordinator's job log lines.
std::vector<std::string> JobLog(transport::Client& client, const std::string& job_id);

}  // namespace tributary::system_test
