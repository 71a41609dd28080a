// Job lifecycle commands, clients of the coordinator: submit, jobs, status, wait, logs, stop, download.
#include <memory>

#include "cli/commands.h"

namespace tributary::cli {
namespace {

struct JobFlags {
  std::string job;
  std::string spec_file;
  std::vector<std::string> sets;
  std::string submit_token;
  std::string format = "text";
  double timeout_s = 0;
  bool follow = false;
  int64_t round = -1;
  std::string output_dir;
};

constexpr const char* kNeedsCoordinator = "the coordinator client protocol (ZeroMQ + CURVE job API)";

CLI::Option* AddReadFormat(CLI::App* cmd, std::string& format) {
  return cmd->add_option("--format", format, "text|json")->check(CLI::IsMember({"text", "json"}));
}

}  // namespace

void RegisterJobCommands(CLI::App& app, CommandRegistry& registry) {
  auto f = std::make_shared<JobFlags>();

  CLI::App* submit = app.add_subcommand("submit", "Submit a job spec (YAML) to the coordinator");
  submit->add_option("spec", f->spec_file, "Job spec file")->required()->check(CLI::ExistingFile);
  submit->add_option("--set", f->sets, "Override a spec field: --set key=value (repeatable)");
  submit->add_option("--submit-token", f->submit_token, "Idempotency token: the same token yields the same job");
  AddReadFormat(submit, f->format);

  CLI::App* jobs = app.add_subcommand("jobs", "List jobs");
  jobs->add_option("--submit-token", f->submit_token, "Only the job submitted with this token");
  AddReadFormat(jobs, f->format);

  CLI::App* status = app.add_subcommand("status", "Show a job's round, participants, loss, bytes and progress");
  status->add_option("job", f->job, "Job id")->required();
  AddReadFormat(status, f->format);

  CLI::App* wait = app.add_subcommand(
      "wait", "Wait for a job to finish (exit 0 completed, 1 failed, 2 connection/auth error, 3 timeout)");
  wait->add_option("job", f->job, "Job id")->required();
  wait->add_option("--timeout", f->timeout_s, "Give up after S seconds (exit 3)")->check(CLI::PositiveNumber);
  AddReadFormat(wait, f->format);

  CLI::App* logs = app.add_subcommand("logs", "Print a job's log");
  logs->add_option("job", f->job, "Job id")->required();
  logs->add_flag("--follow,-f", f->follow, "Keep printing new lines until the job finishes");

  CLI::App* stop = app.add_subcommand("stop", "Stop a job (terminal state FINISHED:STOPPED)");
  stop->add_option("job", f->job, "Job id")->required();

  CLI::App* download = app.add_subcommand("download", "Download a job's model as HF safetensors or a PEFT adapter");
  download->add_option("job", f->job, "Job id")->required();
  download->add_option("--round", f->round, "Round to rebuild (default: the last committed)");
  download->add_option("--format", f->format, "safetensors|peft")
      ->required()
      ->check(CLI::IsMember({"safetensors", "peft"}));
  download->add_option("-o,--output", f->output_dir, "Output directory")->required();

  for (const char* name : {"submit", "jobs", "status", "wait", "logs", "stop", "download"}) {
    registry.handlers[name] = [f](CommandContext&) -> Status {
      return NotBuiltYet(kNeedsCoordinator);
    };  // f owns the option storage
  }
}

}  // namespace tributary::cli
