// `tributary coordinator` and `tributary worker`.
#include <spdlog/spdlog.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "cli/build_info.h"
#include "cli/commands.h"
#include "cli/daemon_coordinator.h"
#include "cli/daemon_support.h"
#include "cli/exit_codes.h"
#include "engine/text/dataset.h"
#include "transport/security.h"
#include "worker/capabilities.h"
#include "worker/worker_daemon.h"

namespace tributary::cli {
namespace {

struct WorkerFlags {
  std::string coordinator;
  std::string name;
  std::string key;              // secret key file (config worker.secret_key)
  std::string coordinator_key;  // coordinator public key file (config worker.coordinator_key)
  std::vector<std::string> data;
  bool insecure = false;
  bool print_capabilities = false;
};

// A path from a config file is relative to that file's directory ("FILE:LINE" origins); "~/" is $HOME.
std::string ResolveConfigPath(const std::string& path, const Config& config, const std::string& key) {
  if (path.empty()) return path;
  if (path.rfind("~/", 0) == 0) {
    const char* home = std::getenv("HOME");
    return home != nullptr && *home != '\0' ? std::string(home) + path.substr(1) : path;
  }
  const std::string origin = config.Origin(key);
  const size_t colon = origin.rfind(':');
  if (std::filesystem::path(path).is_absolute() || colon == std::string::npos || colon == 0) return path;
  std::error_code ec;
  const std::filesystem::path file = origin.substr(0, colon);
  if (!std::filesystem::is_regular_file(file, ec)) return path;
  return (file.parent_path() / path).lexically_normal().string();
}

Result<WorkerOptions> BuildWorkerOptions(const Config& config, const WorkerFlags& flags) {
  WorkerOptions options;
  options.coordinator = flags.coordinator.empty() ? config.GetString("worker.coordinator") : flags.coordinator;
  if (options.coordinator.empty())
    return Status::InvalidArgument(
        "no coordinator endpoint: pass --coordinator tcp://HOST:PORT or set worker.coordinator");
  if (options.coordinator.find("://") == std::string::npos)
    return Status::InvalidArgument("coordinator endpoint '" + options.coordinator + "': expected tcp://HOST:PORT");

  TRIB_ASSIGN_OR_RETURN(options.capabilities, DetectCapabilities());
  TRIB_RETURN_IF_ERROR(
      ApplyNicOverrides(config.GetStringList("worker.nics"), &options.capabilities).WithContext("key 'worker.nics'"));
  options.worker_id = !flags.name.empty() ? flags.name : config.GetString("worker.name");
  if (options.worker_id.empty()) options.worker_id = options.capabilities.hostname;
  if (options.worker_id.empty())
    return Status::InvalidArgument("no worker name: pass --name or set worker.name (the hostname is unknown)");

  // Datasets: the config's list, then --data; each one's samples are counted here (errors name the file).
  std::vector<DatasetInfo> datasets;
  for (const std::string& entry : config.GetStringList("worker.data")) {
    DatasetInfo dataset;
    TRIB_RETURN_IF_ERROR(ParseNamedPath(entry, "key 'worker.data'", &dataset.name, &dataset.path));
    dataset.path = ResolveConfigPath(dataset.path, config, "worker.data");
    datasets.push_back(dataset);
  }
  for (const std::string& entry : flags.data) {
    DatasetInfo dataset;
    TRIB_RETURN_IF_ERROR(ParseNamedPath(entry, "--data", &dataset.name, &dataset.path));
    datasets.push_back(dataset);
  }
  for (DatasetInfo& dataset : datasets) {
    auto examples = LoadExamples(dataset.path);
    if (!examples.ok()) return examples.status().WithContext("dataset '" + dataset.name + "'");
    if (examples->empty())
      return Status::InvalidArgument("dataset '" + dataset.name + "': " + dataset.path + ": no examples");
    dataset.samples = static_cast<int64_t>(examples->size());
  }
  options.datasets = datasets;
  options.capabilities.datasets = datasets;

  options.insecure = flags.insecure || config.GetBool("worker.insecure");
  if (!options.insecure) {
    const std::string key_file =
        flags.key.empty() ? ResolveConfigPath(config.GetString("worker.secret_key"), config, "worker.secret_key")
                          : flags.key;
    const std::string coordinator_key_file =
        flags.coordinator_key.empty()
            ? ResolveConfigPath(config.GetString("worker.coordinator_key"), config, "worker.coordinator_key")
            : flags.coordinator_key;
    if (key_file.empty())
      return Status::InvalidArgument(
          "no worker key: pass --key FILE or set worker.secret_key (create one with 'tributary keygen -o PREFIX' and "
          "add PREFIX.pub to the coordinator's allow-list), or --insecure for an insecure coordinator");
    if (coordinator_key_file.empty())
      return Status::InvalidArgument(
          "no coordinator public key: pass --coordinator-key FILE or set worker.coordinator_key (the coordinator's "
          ".pub file)");
    auto keys = transport::LoadKeyPair(key_file);
    if (!keys.ok()) return keys.status().WithContext("worker key");
    options.keys = std::move(*keys);
    auto coordinator_key = transport::LoadPublicKey(coordinator_key_file);
    if (!coordinator_key.ok()) return coordinator_key.status().WithContext("coordinator key");
    options.coordinator_public_key = std::move(*coordinator_key);
  }
  options.threads = static_cast<int>(config.GetInt("worker.threads"));
  options.inline_payload_bytes = static_cast<uint64_t>(config.GetInt("worker.inline_payload_bytes"));
  options.multistream_min_bytes = static_cast<uint64_t>(config.GetInt("worker.multistream_min_bytes"));
  options.island_address = config.GetString("worker.island_address");
  if (options.island_address.empty())
    return Status::InvalidArgument("key 'worker.island_address': must not be empty (the island fabric interface's IP)");
  options.drain_timeout_ms = std::llround(config.GetFloat("worker.drain_timeout_s") * 1000.0);
  options.calibration.enabled = config.GetBool("worker.calibrate");
  options.calibration.tokens_per_s = config.GetFloat("worker.tokens_per_s");
  options.software_version = kTributaryVersion;
  return options;
}

Status RunWorker(const Config& config, const WorkerFlags& flags) {
  TRIB_ASSIGN_OR_RETURN(WorkerOptions options, BuildWorkerOptions(config, flags));
  // systemd: the control loop sends READY=1 once registered, STATUS= and WATCHDOG=1, and STOPPING=1
  // when it starts draining (docs/deploy.md).
  TRIB_ASSIGN_OR_RETURN(SystemdNotifier notifier, SystemdNotifier::Create());
  options.hooks = notifier.Hooks();
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<WorkerDaemon> daemon, WorkerDaemon::Create(std::move(options)));
  const std::atomic<bool>* stop = InstallStopSignalHandlers();
  Status result = daemon->Run(stop);
  notifier.Stopping();
  if (result.code() == StatusCode::kTimeout) {
    // The drain timed out inside a tasklet that cannot be interrupted: its thread still uses the daemon,
    // so the process ends here (a requested stop: exit 0) rather than waiting for the tasklet.
    spdlog::warn("worker: {}; exiting now", result.message());
    spdlog::shutdown();
    std::fflush(nullptr);
    std::_Exit(kExitOk);
  }
  return result;
}

Status PrintCapabilities(const Config& config) {
  TRIB_ASSIGN_OR_RETURN(WorkerCapabilities caps, DetectCapabilities());
  TRIB_RETURN_IF_ERROR(ApplyNicOverrides(config.GetStringList("worker.nics"), &caps));
  std::printf("%s\n", CapabilitiesToJson(caps).c_str());
  return Status::OK();
}

}  // namespace

void RegisterDaemonCommands(CLI::App& app, CommandRegistry& registry) {
  auto cf = std::make_shared<CoordinatorFlags>();
  CLI::App* coordinator = app.add_subcommand(
      "coordinator", "Run the coordinator daemon: job queue, worker registry, rounds, checkpoint store, HTTP metrics");
  coordinator->add_option("--listen", cf->listen,
                          "ZeroMQ endpoint, e.g. tcp://0.0.0.0:7400 (config coordinator.listen)");
  coordinator->add_option("--http", cf->http_listen, "HTTP host:port (config coordinator.http_listen)");
  coordinator->add_option("--data-dir", cf->data_dir, "RocksDB store directory (config coordinator.data_dir)");
  coordinator->add_option("--key", cf->key, "CURVE secret key file (config coordinator.secret_key)");
  coordinator->add_option("--allowed-keys", cf->allowed_keys,
                          "File of admitted worker and client public keys (config coordinator.allowed_keys)");
  coordinator->add_option("--eval-data", cf->eval_data,
                          "Held-out dataset as NAME=PATH (repeatable; config coordinator.eval_data)");
  coordinator->add_flag("--insecure", cf->insecure, "Disable CURVE encryption and authentication (local only)");
  registry.handlers["coordinator"] = [cf](CommandContext& ctx) -> Status {
    return RunCoordinatorDaemon(ctx.config, *cf);
  };

  auto wf = std::make_shared<WorkerFlags>();
  CLI::App* worker = app.add_subcommand("worker", "Run a worker daemon that trains on local data for a coordinator");
  worker->add_option("--coordinator", wf->coordinator,
                     "Coordinator endpoint, e.g. tcp://10.0.0.1:7400 (config worker.coordinator)");
  worker->add_option("--name", wf->name, "Worker id (config worker.name; default: the hostname)");
  worker->add_option("--data", wf->data,
                     "Local dataset as NAME=PATH (repeatable, added to config worker.data); data never leaves the "
                     "worker");
  worker->add_option("--key", wf->key, "This worker's CURVE secret key file (config worker.secret_key)");
  worker->add_option("--coordinator-key", wf->coordinator_key,
                     "The coordinator's public key file (config worker.coordinator_key)");
  worker->add_flag("--insecure", wf->insecure, "Disable CURVE encryption and authentication (local only)");
  worker->add_flag("--print-capabilities", wf->print_capabilities,
                   "Print the capabilities this worker would register (cores, memory, GPUs, NICs) as JSON and exit");
  registry.handlers["worker"] = [wf](CommandContext& ctx) -> Status {
    if (wf->print_capabilities) return PrintCapabilities(ctx.config);
    return RunWorker(ctx.config, *wf);
  };
}

}  // namespace tributary::cli
