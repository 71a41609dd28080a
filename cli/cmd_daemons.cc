// `tributary coordinator` and `tributary worker`.
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "worker/capabilities.h"

namespace tributary::cli {
namespace {

struct CoordinatorFlags {
  std::string listen;
  std::string http_listen;
  std::string data_dir;
  bool insecure = false;
};

struct WorkerFlags {
  std::string coordinator;
  std::vector<std::string> data;
  bool insecure = false;
  bool print_capabilities = false;
};

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
  coordinator->add_option("--listen", cf->listen, "ZeroMQ endpoint (config coordinator.listen)");
  coordinator->add_option("--http", cf->http_listen, "HTTP host:port (config coordinator.http_listen)");
  coordinator->add_option("--data-dir", cf->data_dir, "RocksDB store directory (config coordinator.data_dir)");
  coordinator->add_flag("--insecure", cf->insecure, "Disable CURVE encryption and authentication (local only)");
  registry.handlers["coordinator"] = [cf](CommandContext&) -> Status {
    return NotBuiltYet("the coordinator daemon (rounds over ZeroMQ + CURVE with the RocksDB store)");
  };

  auto wf = std::make_shared<WorkerFlags>();
  CLI::App* worker = app.add_subcommand("worker", "Run a worker daemon that trains on local data for a coordinator");
  worker->add_option("--coordinator", wf->coordinator, "Coordinator endpoint, e.g. tcp://10.0.0.1:7400");
  worker->add_option("--data", wf->data, "Local dataset as NAME=PATH (repeatable); data never leaves the worker");
  worker->add_flag("--insecure", wf->insecure, "Disable CURVE encryption and authentication (local only)");
  worker->add_flag("--print-capabilities", wf->print_capabilities,
                   "Print the capabilities this worker would register (cores, memory, GPUs, NICs) as JSON and exit");
  registry.handlers["worker"] = [wf](CommandContext& ctx) -> Status {
    if (wf->print_capabilities) return PrintCapabilities(ctx.config);
    return NotBuiltYet("the worker daemon (registration, heartbeats and tasklets over ZeroMQ + CURVE)");
  };
}

}  // namespace tributary::cli
