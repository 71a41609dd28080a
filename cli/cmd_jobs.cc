// Job lifecycle commands, clients of the coordinator: submit, jobs, status, wait, logs, stop, download.
#include <cstdio>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "scheduler/job_spec.h"

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
  bool dry_run = false;
};

constexpr const char* kNeedsCoordinator = "the coordinator client protocol (ZeroMQ + CURVE job API)";

// NVFlare's rule for submit tokens: non-empty, at most 128 of [A-Za-z0-9._:-].
Status ValidateSubmitToken(const std::string& token) {
  if (token.size() > 128) return Status::InvalidArgument("--submit-token: longer than 128 characters");
  for (char c : token) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == ':' || c == '-';
    if (!ok)
      return Status::InvalidArgument("--submit-token '" + token + "': only letters, digits and . _ : - are allowed");
  }
  return Status::OK();
}

// The spec is checked here, before any connection, so a bad spec never reaches a coordinator.
Status RunSubmit(const JobFlags& f) {
  TRIB_RETURN_IF_ERROR(ValidateSubmitToken(f.submit_token));
  TRIB_ASSIGN_OR_RETURN(JobSpec spec, LoadJobSpec(f.spec_file, f.sets));
  if (!f.dry_run) return NotBuiltYet(std::string(kNeedsCoordinator) + " (the spec is valid; --dry-run prints it)");
  if (f.format == "json") {
    nlohmann::json j = {{"spec", f.spec_file},
                        {"mode", FederatedModeName(spec.mode)},
                        {"rounds", spec.rounds},
                        {"hash", JobSpecHash(spec)},
                        {"canonical", CanonicalJobSpec(spec)}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("%s: valid %s job, %lld rounds (spec hash %016llx)\n%s", f.spec_file.c_str(),
                FederatedModeName(spec.mode), static_cast<long long>(spec.rounds),
                static_cast<unsigned long long>(JobSpecHash(spec)), CanonicalJobSpec(spec).c_str());
  }
  return Status::OK();
}

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
  submit->add_flag("--dry-run", f->dry_run, "Validate the spec and print its canonical form; submit nothing");
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

  registry.handlers["submit"] = [f](CommandContext&) -> Status { return RunSubmit(*f); };
  for (const char* name : {"jobs", "status", "wait", "logs", "stop", "download"}) {
    registry.handlers[name] = [f](CommandContext&) -> Status {
      return NotBuiltYet(kNeedsCoordinator);
    };  // f owns the option storage
  }
}

}  // namespace tributary::cli
