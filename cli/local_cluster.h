// A coordinator and N workers as separate `tributary` processes on loopback, with CURVE keys for
// every daemon and for a CLI client (`tributary demo`, the multi-process tests, the round-overhead
// benchmark). Each process logs to <dir>/<name>.log.
//
// Layout of <dir>: keys/{coordinator,worker-I,client}.{key,pub}, keys/allowed_keys, client.yaml (a
// client profile: `tributary --config <dir>/client.yaml status JOB`), store/ (the coordinator's data dir).
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "transport/channel.h"

namespace tributary::cli {

// A child process whose stdout and stderr go to one log file.
class ChildProcess {
 public:
  // Starts `binary args...` with stdin from /dev/null. The child gets SIGTERM when the calling thread exits
  // (PR_SET_PDEATHSIG), so a killed demo or bench leaves no daemons behind: call it from a thread that outlives
  // the child.
  static Result<std::unique_ptr<ChildProcess>> Spawn(const std::string& binary, const std::vector<std::string>& args,
                                                     const std::string& log_path);
  ~ChildProcess();  // SIGKILLs and reaps a process still running
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }
  bool running();
  void Signal(int signal);
  // Waits up to timeout_ms for the exit; returns the exit code (128 + signal when killed), or -1 on timeout.
  int Wait(int timeout_ms);

 private:
  ChildProcess(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}
  pid_t pid_;
  std::string log_path_;
  int exit_code_ = -1;
};

struct LocalClusterOptions {
  std::string binary;  // the tributary executable
  std::string dir;     // work directory (created)
  int num_workers = 4;
  bool insecure = false;
  double heartbeat_interval_s = 1.0;
  int worker_threads = 1;  // compute threads per worker process (they share the machine)
  // Datasets per worker: worker index -> NAME=PATH entries.
  std::map<int, std::vector<std::string>> worker_data;
  std::vector<std::string> eval_data;  // coordinator held-out datasets, NAME=PATH
  std::string log_level = "info";
  // Extra global arguments placed before the subcommand (e.g. "--set", "coordinator.inline_payload_bytes=65536").
  std::vector<std::string> coordinator_args = {};
  std::vector<std::string> worker_args = {};
  // Extra global arguments of one worker (worker index -> arguments), after worker_args.
  std::map<int, std::vector<std::string>> worker_own_args = {};
};

class LocalCluster {
 public:
  explicit LocalCluster(LocalClusterOptions options);
  ~LocalCluster();  // kills whatever still runs

  // Writes the key pairs, the allow-list and the client profile.
  Status Prepare();
  // Starts the coordinator (any free port, remembered across restarts) and waits for it to listen.
  Status StartCoordinator();
  Status StartWorker(int index);
  Status StartAll();

  static std::string WorkerName(int index) { return "worker-" + std::to_string(index + 1); }
  const std::string& endpoint() const { return endpoint_; }
  int http_port() const { return http_port_; }
  const std::string& client_config() const { return client_config_; }
  const LocalClusterOptions& options() const { return options_; }
  ChildProcess* coordinator() { return coordinator_.get(); }
  ChildProcess* worker(int index) { return workers_[index].get(); }

  // A CLI client connection to the coordinator (the client key).
  Result<std::unique_ptr<transport::Client>> Connect() const;

  // SIGKILL (no cleanup) or SIGTERM (clean stop) and reap.
  void KillCoordinator(int signal);
  void KillWorker(int index, int signal);
  // SIGTERM to everything, then wait (SIGKILL after a few seconds).
  void StopAll();

 private:
  std::vector<std::string> WorkerArgs(int index) const;

  LocalClusterOptions options_;
  std::string endpoint_;  // "tcp://127.0.0.1:PORT" once the coordinator started
  int http_port_ = 0;
  std::string client_config_;
  std::unique_ptr<ChildProcess> coordinator_;
  std::vector<std::unique_ptr<ChildProcess>> workers_;
};

}  // namespace tributary::cli
