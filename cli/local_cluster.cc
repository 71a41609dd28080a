#include "cli/local_cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "base/file_util.h"
#include "transport/security.h"

namespace tributary::cli {

namespace fs = std::filesystem;

Result<std::unique_ptr<ChildProcess>> ChildProcess::Spawn(const std::string& binary,
                                                          const std::vector<std::string>& args,
                                                          const std::string& log_path) {
  const int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return Status::IOError(log_path + ": cannot open log file");
  std::vector<std::string> argv_storage;
  argv_storage.push_back(binary);
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    close(log_fd);
    return Status::IOError("fork failed");
  }
  if (pid == 0) {
    // The daemons stop (SIGTERM) when the process that started them dies, even by SIGKILL, instead of running on
    // as orphans. Spawn is only called from threads that outlive their children (the signal follows the thread).
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);  // the parent died before prctl
    const int null_fd = open("/dev/null", O_RDONLY);
    dup2(null_fd, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  close(log_fd);
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid, log_path));
}

ChildProcess::~ChildProcess() {
  if (running()) {
    kill(pid_, SIGKILL);
    Wait(5000);
  }
}

bool ChildProcess::running() {
  if (exit_code_ >= 0) return false;
  int status = 0;
  const pid_t done = waitpid(pid_, &status, WNOHANG);
  if (done == pid_) {
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return done == 0;
}

void ChildProcess::Signal(int signal) {
  if (running()) kill(pid_, signal);
}

int ChildProcess::Wait(int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return exit_code_;
}

LocalCluster::LocalCluster(LocalClusterOptions options) : options_(std::move(options)) {
  workers_.resize(static_cast<size_t>(options_.num_workers));
}

LocalCluster::~LocalCluster() {
  StopAll();
}

Status LocalCluster::Prepare() {
  std::error_code ec;
  fs::create_directories(fs::path(options_.dir) / "keys", ec);
  if (ec) return Status::IOError(options_.dir + ": cannot create: " + ec.message());
  const fs::path keys = fs::path(options_.dir) / "keys";
  std::string allowed = "# public keys admitted by the coordinator (one per line, then a name)\n";
  auto make = [&](const std::string& name, bool admit) -> Status {
    std::string public_key;
    const std::string prefix = (keys / name).string();
    if (!fs::exists(prefix + ".key")) TRIB_RETURN_IF_ERROR(transport::WriteKeyPairFiles(prefix, false, &public_key));
    TRIB_ASSIGN_OR_RETURN(public_key, transport::LoadPublicKey(prefix + ".pub"));
    if (admit) allowed += public_key + " " + name + "\n";
    return Status::OK();
  };
  TRIB_RETURN_IF_ERROR(make("coordinator", false));
  for (int i = 0; i < options_.num_workers; ++i) TRIB_RETURN_IF_ERROR(make(WorkerName(i), true));
  TRIB_RETURN_IF_ERROR(make("client", true));
  TRIB_RETURN_IF_ERROR(WriteFileAtomic((keys / "allowed_keys").string(), allowed));
  return Status::OK();
}

Status LocalCluster::StartCoordinator() {
  const fs::path dir(options_.dir);
  const fs::path keys = dir / "keys";
  // The first start picks free ports; a restart reuses them so workers and clients reconnect.
  const std::string listen = endpoint_.empty() ? "tcp://127.0.0.1:*" : endpoint_;
  const std::string http = http_port_ == 0 ? "127.0.0.1:0" : "127.0.0.1:" + std::to_string(http_port_);
  std::vector<std::string> args = {"--log-level", options_.log_level, "--set",
                                   "coordinator.heartbeat_interval_s=" + std::to_string(options_.heartbeat_interval_s)};
  args.insert(args.end(), options_.coordinator_args.begin(), options_.coordinator_args.end());
  args.insert(args.end(), {"coordinator", "--listen", listen, "--http", http, "--data-dir", (dir / "store").string()});
  if (options_.insecure) {
    args.push_back("--insecure");
  } else {
    args.insert(args.end(),
                {"--key", (keys / "coordinator.key").string(), "--allowed-keys", (keys / "allowed_keys").string()});
  }
  for (const std::string& eval : options_.eval_data) args.insert(args.end(), {"--eval-data", eval});
  const std::string log = (dir / "coordinator.log").string();
  // Only the lines this start writes count when looking for the listening line.
  std::error_code ec;
  const uint64_t log_offset = fs::exists(log) ? fs::file_size(log, ec) : 0;
  TRIB_ASSIGN_OR_RETURN(coordinator_, ChildProcess::Spawn(options_.binary, args, log));
  const std::regex listening(R"(coordinator listening on (tcp://\S+) http (\d+))");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    auto text = ReadFileToString(log);
    if (text.ok() && text->size() > log_offset) {
      std::smatch m;
      const std::string fresh = text->substr(log_offset);
      if (std::regex_search(fresh, m, listening)) {
        endpoint_ = m[1].str();
        http_port_ = std::stoi(m[2].str());
        break;
      }
    }
    if (!coordinator_->running()) return Status::Internal("the coordinator exited during start-up; see " + log);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (endpoint_.empty() || !coordinator_->running())
    return Status::Timeout("the coordinator did not report its endpoint within 60 s; see " + log);

  // The client profile (rewritten: the endpoint is known now).
  std::string profile = "# client profile written by the local cluster\nclient:\n  coordinator: " + endpoint_ + "\n";
  if (options_.insecure) {
    profile += "  insecure: true\n";
  } else {
    profile += "  secret_key: " + (keys / "client.key").string() +
               "\n  coordinator_key: " + (keys / "coordinator.pub").string() + "\n";
  }
  client_config_ = (dir / "client.yaml").string();
  return WriteFileAtomic(client_config_, profile);
}

std::vector<std::string> LocalCluster::WorkerArgs(int index) const {
  const fs::path keys = fs::path(options_.dir) / "keys";
  std::vector<std::string> args = {"--log-level", options_.log_level, "--set",
                                   "worker.threads=" + std::to_string(options_.worker_threads)};
  args.insert(args.end(), options_.worker_args.begin(), options_.worker_args.end());
  auto own = options_.worker_own_args.find(index);
  if (own != options_.worker_own_args.end()) args.insert(args.end(), own->second.begin(), own->second.end());
  args.insert(args.end(), {"worker", "--coordinator", endpoint_, "--name", WorkerName(index)});
  if (options_.insecure) {
    args.push_back("--insecure");
  } else {
    args.insert(args.end(), {"--key", (keys / (WorkerName(index) + ".key")).string(), "--coordinator-key",
                             (keys / "coordinator.pub").string()});
  }
  auto data = options_.worker_data.find(index);
  if (data != options_.worker_data.end()) {
    for (const std::string& d : data->second) args.insert(args.end(), {"--data", d});
  }
  return args;
}

Status LocalCluster::StartWorker(int index) {
  if (endpoint_.empty()) return Status::FailedPrecondition("start the coordinator first");
  const std::string log = (fs::path(options_.dir) / (WorkerName(index) + ".log")).string();
  TRIB_ASSIGN_OR_RETURN(workers_[static_cast<size_t>(index)],
                        ChildProcess::Spawn(options_.binary, WorkerArgs(index), log));
  return Status::OK();
}

Status LocalCluster::StartAll() {
  TRIB_RETURN_IF_ERROR(Prepare());
  TRIB_RETURN_IF_ERROR(StartCoordinator());
  for (int i = 0; i < options_.num_workers; ++i) TRIB_RETURN_IF_ERROR(StartWorker(i));
  return Status::OK();
}

Result<std::unique_ptr<transport::Client>> LocalCluster::Connect() const {
  transport::ClientOptions options;
  options.name = "client";
  options.insecure = options_.insecure;
  if (!options_.insecure) {
    const fs::path keys = fs::path(options_.dir) / "keys";
    TRIB_ASSIGN_OR_RETURN(options.keys, transport::LoadKeyPair((keys / "client.key").string()));
    TRIB_ASSIGN_OR_RETURN(options.server_public_key, transport::LoadPublicKey((keys / "coordinator.pub").string()));
  }
  return transport::Client::Connect(endpoint_, options);
}

void LocalCluster::KillCoordinator(int signal) {
  if (!coordinator_) return;
  coordinator_->Signal(signal);
  if (coordinator_->Wait(10000) < 0) {
    coordinator_->Signal(SIGKILL);
    coordinator_->Wait(5000);
  }
}

void LocalCluster::KillWorker(int index, int signal) {
  auto& worker = workers_[static_cast<size_t>(index)];
  if (!worker) return;
  worker->Signal(signal);
  if (worker->Wait(10000) < 0) {
    worker->Signal(SIGKILL);
    worker->Wait(5000);
  }
}

void LocalCluster::StopAll() {
  for (auto& worker : workers_) {
    if (worker) worker->Signal(SIGTERM);
  }
  if (coordinator_) coordinator_->Signal(SIGTERM);
  for (int i = 0; i < static_cast<int>(workers_.size()); ++i) KillWorker(i, SIGTERM);
  KillCoordinator(SIGTERM);
}

}  // namespace tributary::cli
