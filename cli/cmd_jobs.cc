// Job lifecycle commands, clients of the coordinator: submit, jobs, status, wait, logs, stop, download.
//
// Every command runs non-interactively: results on stdout (one JSON envelope with --format json,
// see cli/coordinator_client.h), diagnostics on stderr, live progress only when stdout is a TTY.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/hash.h"
#include "cli/commands.h"
#include "cli/coordinator_client.h"
#include "cli/exit_codes.h"
#include "cli/status_watch.h"
#include "cli/worker_calibrations.h"
#include "coordinator/cluster_plan.h"
#include "federation/job_spec.h"

namespace tributary::cli {
namespace {

namespace fs = std::filesystem;

struct JobFlags {
  ConnectionFlags connection;
  std::string job;
  std::string spec_file;
  std::vector<std::string> sets;
  std::string submit_token;
  std::string format = "text";  // text | json (read commands)
  std::string export_format;    // safetensors | peft (download)
  std::string state_filter;
  uint32_t limit = 0;
  double timeout_s = 0;
  bool follow = false;
  bool watch = false;
  double interval_s = 2;
  std::string worker;  // logs --worker
  int64_t round = 0;
  std::string output_dir;
  bool force = false;
  bool dry_run = false;
  std::string reason = "stopped from the CLI";
  bool json_printed = false;  // the command printed its own JSON envelope (also on failure)
};

constexpr auto kPollInterval = std::chrono::milliseconds(500);
constexpr uint32_t kLogPageLines = 1000;
// Polling commands (wait, logs --follow) ride out a coordinator restart: once it answered, this many
// consecutive unanswered requests (each waiting client.request_timeout_s) are retried.
constexpr int kPollRetries = 3;

Result<std::unique_ptr<CoordinatorClient>> ConnectFromFlags(const JobFlags& f, const CommandContext& ctx) {
  TRIB_ASSIGN_OR_RETURN(ConnectionProfile profile, ResolveConnectionProfile(ctx.config, f.connection));
  return CoordinatorClient::Connect(profile);
}

// The spec is checked here, before any connection, so a bad spec never reaches a coordinator.
Status RunSubmit(JobFlags& f, CommandContext& ctx) {
  TRIB_RETURN_IF_ERROR(ValidateSubmitToken(f.submit_token, "--submit-token"));
  TRIB_ASSIGN_OR_RETURN(JobSpec spec, LoadJobSpec(f.spec_file, f.sets));
  const std::string hash = HashHex(JobSpecHash(spec));
  if (f.dry_run) {
    if (f.format == "json") {
      PrintJsonOk("submit", {{"dry_run", true},
                             {"spec", f.spec_file},
                             {"name", spec.name},
                             {"mode", spec.mode},
                             {"rounds", spec.rounds},
                             {"spec_hash", hash},
                             {"canonical", CanonicalJobSpec(spec)}});
    } else {
      std::printf("%s: valid %s job, %lld rounds (spec hash %s)\n%s", f.spec_file.c_str(), spec.mode.c_str(),
                  static_cast<long long>(spec.rounds), hash.c_str(), CanonicalJobSpec(spec).c_str());
    }
    return Status::OK();
  }
  TRIB_ASSIGN_OR_RETURN(auto client, ConnectFromFlags(f, ctx));
  TRIB_ASSIGN_OR_RETURN(v1::SubmitJobReply reply, client->SubmitJob(EffectiveJobSpecYaml(spec), f.submit_token, false));
  if (!reply.accepted()) {
    return Status::InvalidArgument("coordinator " + client->endpoint() + " refused " + f.spec_file + ": " +
                                   (reply.error().empty() ? std::string("no reason given") : reply.error()));
  }
  if (f.format == "json") {
    PrintJsonOk("submit", {{"dry_run", false},
                           {"job_id", reply.job_id()},
                           {"existing", reply.existing()},
                           {"submit_token", f.submit_token},
                           {"spec", f.spec_file},
                           {"name", spec.name},
                           {"mode", spec.mode},
                           {"rounds", spec.rounds},
                           {"spec_hash", hash}});
  } else {
    if (reply.existing()) {
      std::fprintf(stderr,
                   "tributary submit: submit token '%s' names the existing job %s (same spec); nothing new "
                   "was submitted\n",
                   f.submit_token.c_str(), reply.job_id().c_str());
    }
    std::printf("%s\n", reply.job_id().c_str());
  }
  return Status::OK();
}

// Prints rows as left-aligned columns separated by two spaces.
void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

std::string RoundOfTotal(uint64_t round, uint64_t total) {
  return std::to_string(round) + "/" + std::to_string(total);
}

Status RunJobs(JobFlags& f, CommandContext& ctx) {
  if (!f.submit_token.empty()) TRIB_RETURN_IF_ERROR(ValidateSubmitToken(f.submit_token, "--submit-token"));
  TRIB_ASSIGN_OR_RETURN(auto client, ConnectFromFlags(f, ctx));
  TRIB_ASSIGN_OR_RETURN(v1::ListJobsReply reply, client->ListJobs(f.state_filter, f.limit, f.submit_token));
  if (f.format == "json") {
    nlohmann::json jobs = nlohmann::json::array();
    for (const v1::JobStatus& job : reply.jobs()) jobs.push_back(JobStatusJson(job));
    PrintJsonOk("jobs", {{"jobs", jobs}});
    return Status::OK();
  }
  std::vector<std::vector<std::string>> rows = {{"JOB", "NAME", "MODE", "STATE", "ROUND", "LOSS", "UPDATED (UTC)"}};
  for (const v1::JobStatus& job : reply.jobs()) {
    rows.push_back({job.job_id(), job.name().empty() ? "-" : job.name(), job.mode(), job.state(),
                    RoundOfTotal(job.round(), job.total_rounds()), FormatLoss(job.loss()),
                    FormatUnixMs(job.updated_unix_ms())});
  }
  PrintTable(rows);
  if (reply.jobs_size() == 0) std::fprintf(stderr, "tributary jobs: no jobs\n");
  return Status::OK();
}

// `tributary workers`: the registered workers, their liveness, tasklet and NICs (fabric identity), and
// their calibrated compute per job.
Status RunWorkers(JobFlags& f, CommandContext& ctx) {
  TRIB_ASSIGN_OR_RETURN(auto client, ConnectFromFlags(f, ctx));
  TRIB_ASSIGN_OR_RETURN(v1::ListWorkersReply reply, client->ListWorkers());
  nlohmann::json view = WorkersViewJson(reply);
  if (f.format == "json") {
    PrintJsonOk("workers", view);
    return Status::OK();
  }
  std::vector<std::vector<std::string>> rows = {{"WORKER", "HOST", "LIVENESS", "TASKLET", "LAST SEEN (UTC)", "NICS"}};
  for (size_t i = 0; i < view["workers"].size(); ++i) {
    const nlohmann::json& w = view["workers"][i];
    const v1::WorkerStatus& status = reply.workers(static_cast<int>(i));
    std::string nics;
    for (const v1::Nic& n : status.capabilities().nics())
      nics += (nics.empty() ? "" : " ") + n.name() + ":" + n.kind() + ":" + std::to_string(n.speed_mbps()) +
              (n.fabric_id().empty() ? "" : ":" + n.fabric_id());
    rows.push_back({status.worker_id(), status.hostname().empty() ? "-" : status.hostname(),
                    w["liveness"].get<std::string>(),
                    status.job_id().empty() ? "idle" : status.job_id() + " round " + std::to_string(status.round()),
                    FormatUnixMs(status.last_heartbeat_unix_ms()), nics.empty() ? "-" : nics});
  }
  PrintTable(rows);
  PrintCalibrations(reply);
  if (reply.workers_size() == 0) std::fprintf(stderr, "tributary workers: no workers registered\n");
  return Status::OK();
}

// What the last round's aggregation learned about each client (anomaly score: distance to the aggregate
// over the median distance; 1 is typical).
void PrintLastRoundClients(const v1::RoundSummary& round) {
  if (round.clients_size() == 0) return;
  std::printf("\n");
  std::vector<std::vector<std::string>> rows = {
      {"ROUND " + std::to_string(round.round()) + " CLIENT", "WEIGHT", "ANOMALY", "CLIPPED", "EXCLUDED"}};
  for (const v1::ClientReport& c : round.clients()) {
    char weight[32], score[32], clip[32];
    std::snprintf(weight, sizeof(weight), "%.4f", c.weight());
    std::snprintf(score, sizeof(score), "%.3g", c.anomaly_score());
    std::snprintf(clip, sizeof(clip), "x%.3g", c.clip_scale());
    rows.push_back({c.worker_id(), weight, std::isfinite(c.anomaly_score()) ? score : "-",
                    c.clip_scale() < 1.0 ? clip : "-", c.excluded() ? "yes" : "-"});
  }
  PrintTable(rows);
}

void PrintStatusText(const v1::GetJobReply& reply) {
  const v1::JobStatus& job = reply.job();
  std::printf("job           %s%s\n", job.job_id().c_str(),
              job.name().empty() ? "" : (" (" + job.name() + ")").c_str());
  std::printf("state         %s\n", job.state().c_str());
  if (!job.error().empty()) std::printf("error         %s\n", job.error().c_str());
  std::printf("mode          %s\n", job.mode().c_str());
  std::printf("round         %s  %s\n", RoundOfTotal(job.round(), job.total_rounds()).c_str(),
              ProgressBar(job.round(), job.total_rounds(), 30).c_str());
  std::string workers;
  for (const std::string& w : reply.workers()) workers += (workers.empty() ? "" : ", ") + w;
  std::printf("participants  %u%s\n", job.participants(), workers.empty() ? "" : ("  (now: " + workers + ")").c_str());
  std::printf("train loss    %s\n", FormatLoss(job.loss()).c_str());
  std::printf("held-out loss %s\n", FormatLoss(job.heldout_loss()).c_str());
  if (!job.waiting().empty()) std::printf("waiting       %s\n", job.waiting().c_str());
  for (const v1::JobProblem& p : reply.worker_problems())
    std::printf("cannot train  worker '%s' (round %llu): %s\n", p.worker_id().c_str(),
                static_cast<unsigned long long>(p.round()), p.reason().c_str());
  if (job.islands() > 0 || job.island_reforms() > 0) {
    std::printf("islands       %u training, %llu re-formation(s) so far\n", job.islands(),
                static_cast<unsigned long long>(job.island_reforms()));
  }
  if (job.has_privacy())
    std::printf("privacy       %s\n", PrivacyText(job.privacy(), job.round(), job.total_rounds()).c_str());
  std::printf("bytes         up %s, down %s (last round: up %s, down %s)\n", FormatBytes(job.bytes_up()).c_str(),
              FormatBytes(job.bytes_down()).c_str(), FormatBytes(job.last_round_bytes_up()).c_str(),
              FormatBytes(job.last_round_bytes_down()).c_str());
  if (job.mode() == "cluster") {
    std::printf("in islands    %s (last round %s); up and down crossed the islands\n",
                FormatBytes(job.island_bytes()).c_str(), FormatBytes(job.last_round_island_bytes()).c_str());
  }
  if (job.dense_state_bytes() > 0) {
    std::printf("dense state   %s (what FedAvg sends per client per round, each way)\n",
                FormatBytes(job.dense_state_bytes()).c_str());
  }
  std::printf("created (UTC) %s\n", FormatUnixMs(job.created_unix_ms()).c_str());
  std::printf("updated (UTC) %s\n", FormatUnixMs(job.updated_unix_ms()).c_str());
  if (reply.islands_size() > 0) {
    std::printf("\n");
    for (const v1::IslandStatus& island : reply.islands()) std::printf("%s\n", IslandStatusText(island).c_str());
  }
  if (reply.has_plan()) {
    std::printf("\nplan (made when round %llu opened; docs/placement.md)\n",
                static_cast<unsigned long long>(reply.plan().round()));
    std::fputs(ClusterPlanText(reply.plan()).c_str(), stdout);
  } else if (!reply.plan_error().empty()) {
    std::printf("\nplan          none: %s\n", reply.plan_error().c_str());
  }
  if (reply.rounds_size() > 0) {
    std::printf("\n");
    const bool cluster = job.mode() == "cluster";
    std::vector<std::vector<std::string>> rows = {
        {"ROUND", "CLIENTS", "TRAIN LOSS", "HELD-OUT", "UP", "DOWN", "COMMITTED (UTC)", "WEIGHTS HASH"}};
    if (cluster) rows[0].insert(rows[0].begin() + 6, "IN ISLANDS");
    for (const v1::RoundSummary& r : reply.rounds()) {
      rows.push_back({std::to_string(r.round()), std::to_string(r.participants()), FormatLoss(r.train_loss()),
                      FormatLoss(r.heldout_loss()), FormatBytes(r.bytes_up()), FormatBytes(r.bytes_down()),
                      FormatUnixMs(r.committed_unix_ms()), r.weights_hash().empty() ? "-" : r.weights_hash()});
      if (cluster) rows.back().insert(rows.back().begin() + 6, FormatBytes(r.island_bytes()));
    }
    PrintTable(rows);
    if (reply.rounds_omitted() > 0)
      std::printf("(%llu earlier round(s) not shown: the reply is bounded; `tributary logs` has every round)\n",
                  static_cast<unsigned long long>(reply.rounds_omitted()));
    PrintLastRoundClients(reply.rounds(reply.rounds_size() - 1));
  }
  if (reply.replicas_size() > 0) {
    std::printf("\n");
    std::vector<std::vector<std::string>> rows = {{"REPLICA (WORKER)", "ROUND", "WEIGHTS HASH"}};
    for (const v1::ReplicaState& r : reply.replicas()) {
      rows.push_back({r.worker_id(), std::to_string(r.round()), r.weights_hash().empty() ? "-" : r.weights_hash()});
    }
    PrintTable(rows);
    if (reply.replicas_omitted() > 0)
      std::printf("(%llu more replica(s) not shown: the reply is bounded)\n",
                  static_cast<unsigned long long>(reply.replicas_omitted()));
  }
}

Status RunStatus(JobFlags& f, CommandContext& ctx) {
  TRIB_ASSIGN_OR_RETURN(auto client, ConnectFromFlags(f, ctx));
  if (f.watch) {
    return WatchJob(*client, {f.job, f.interval_s, f.format == "json"}, &ctx.exit_code_override, &f.json_printed);
  }
  TRIB_ASSIGN_OR_RETURN(v1::GetJobReply reply, client->GetJob(f.job));
  if (f.format == "json") {
    PrintJsonOk("status", JobDetailJson(reply));
  } else {
    PrintStatusText(reply);
  }
  return Status::OK();
}

// One line summing up a job: "job J FINISHED:COMPLETED, round 10/10, loss 1.2345".
std::string JobLine(const v1::JobStatus& job) {
  std::string line = "job " + job.job_id() + " " + job.state() + ", round " +
                     RoundOfTotal(job.round(), job.total_rounds()) + ", loss " + FormatLoss(job.loss());
  if (!job.error().empty()) line += ": " + job.error();
  return line;
}

Status RunWait(JobFlags& f, CommandContext& ctx) {
  TRIB_ASSIGN_OR_RETURN(auto client, ConnectFromFlags(f, ctx));
  const bool json = f.format == "json";
  const bool live = !json && StdoutIsTerminal();
  const auto start = std::chrono::steady_clock::now();
  const auto elapsed_s = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  std::optional<v1::JobStatus> last;
  int failures = 0;
  while (true) {
    Result<v1::GetJobReply> reply = client->GetJob(f.job);
    if (!reply.ok()) {
      if (IsConnectionFailure(reply.status()) && last && ++failures <= kPollRetries) {
        if (live) std::printf("\n");
        std::fprintf(stderr, "tributary wait: %s; retrying\n", reply.status().message().c_str());
        continue;
      }
      if (live) std::printf("\n");
      return reply.status();
    }
    failures = 0;
    last = reply->job();
    const JobOutcome outcome = OutcomeOfState(last->state());
    if (live) {
      std::printf("\r%s %s  %s  loss %s   ", last->job_id().c_str(), last->state().c_str(),
                  ProgressBar(last->round(), last->total_rounds(), 30).c_str(), FormatLoss(last->loss()).c_str());
      std::fflush(stdout);
    }
    if (outcome != JobOutcome::kRunning) break;
    if (f.timeout_s > 0 && elapsed_s() >= f.timeout_s) {
      if (live) std::printf("\n");
      const std::string message = "job " + f.job + " still " + last->state() + " after " +
                                  std::to_string(static_cast<int64_t>(f.timeout_s)) + " s (round " +
                                  RoundOfTotal(last->round(), last->total_rounds()) + ")";
      if (json) {
        PrintJsonError("wait", kExitTimeout, "TIMEOUT", message, JobStatusJson(*last));
        f.json_printed = true;
      }
      return Status::Timeout(message);
    }
    auto pause = std::chrono::duration_cast<std::chrono::milliseconds>(kPollInterval);
    if (f.timeout_s > 0) {
      const auto left = std::chrono::milliseconds(static_cast<int64_t>((f.timeout_s - elapsed_s()) * 1000) + 1);
      pause = std::min(pause, left);
    }
    std::this_thread::sleep_for(pause);
  }
  if (live) std::printf("\n");
  const JobOutcome outcome = OutcomeOfState(last->state());
  if (outcome == JobOutcome::kCompleted) {
    if (json) {
      PrintJsonOk("wait", JobStatusJson(*last));
    } else {
      std::printf("%s\n", JobLine(*last).c_str());
    }
    return Status::OK();
  }
  // FAILED and STOPPED both mean "no finished model": exit 1, as NVFlare's `job wait` does.
  ctx.exit_code_override = kExitJobFailed;
  const std::string message = JobLine(*last);
  if (json) {
    PrintJsonError("wait", kExitJobFailed, outcome == JobOutcome::kStopped ? "JOB_STOPPED" : "JOB_FAILED", message,
                   JobStatusJson(*last));
    f.json_printed = true;
  } else {
    std::printf("%s\n", message.c_str());
  }
  return Status(StatusCode::kFailedPrecondition, message);
}

Status RunLogs(JobFlags& f, CommandContext& ctx) {
  TRIB_ASSIGN_OR_RETURN(auto client, ConnectFromFlags(f, ctx));
  const bool json = f.format == "json";
  nlohmann::json lines = nlohmann::json::array();
  uint64_t from = 0;
  bool eof = false;
  bool answered = false;
  int failures = 0;
  while (true) {
    Result<v1::FetchLogsReply> reply = client->FetchLogs(f.job, from, kLogPageLines, f.worker);
    if (!reply.ok()) {
      if (f.follow && IsConnectionFailure(reply.status()) && answered && ++failures <= kPollRetries) {
        std::fprintf(stderr, "tributary logs: %s; retrying\n", reply.status().message().c_str());
        continue;
      }
      return reply.status();
    }
    answered = true;
    failures = 0;
    for (const std::string& line : reply->lines()) {
      if (json) {
        lines.push_back(line);
      } else {
        std::printf("%s\n", line.c_str());
      }
    }
    std::fflush(stdout);
    const uint64_t next = std::max<uint64_t>(reply->next_line(), from + static_cast<uint64_t>(reply->lines_size()));
    const bool progressed = next > from;
    from = next;
    eof = reply->eof();
    if (eof) break;
    if (reply->lines_size() >= static_cast<int>(kLogPageLines) && progressed) continue;  // more pages now
    if (!f.follow) break;
    std::this_thread::sleep_for(kPollInterval);
  }
  if (json) {
    PrintJsonOk("logs", {{"job_id", f.job},
                         {"worker_id", f.worker.empty() ? nlohmann::json(nullptr) : nlohmann::json(f.worker)},
                         {"lines", lines},
                         {"next_line", from},
                         {"eof", eof}});
  }
  return Status::OK();
}

Status RunStop(JobFlags& f, CommandContext& ctx) {
  TRIB_ASSIGN_OR_RETURN(auto client, ConnectFromFlags(f, ctx));
  TRIB_ASSIGN_OR_RETURN(v1::StopJobReply reply, client->StopJob(f.job, f.reason));
  const JobOutcome outcome = OutcomeOfState(reply.state());
  // Stopping a stopped job is a no-op success, so a retried `stop` never fails.
  if (!reply.stopped() && outcome != JobOutcome::kStopped) {
    std::string why = reply.error();
    if (why.empty()) why = outcome == JobOutcome::kRunning ? "no reason given" : "it already finished";
    return Status::FailedPrecondition("job " + f.job + " (" + reply.state() + ") was not stopped: " + why);
  }
  if (f.format == "json") {
    PrintJsonOk("stop", {{"job_id", f.job}, {"stopped", reply.stopped()}, {"state", reply.state()}});
  } else {
    std::printf("job %s %s (%s)\n", f.job.c_str(), reply.stopped() ? "stopped" : "was already stopped",
                reply.state().c_str());
  }
  return Status::OK();
}

// A file name the coordinator lists must stay inside the output directory.
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

Status PrepareOutputDir(const std::string& dir, bool force) {
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) return Status::InvalidArgument("-o " + dir + ": exists and is not a directory");
    if (!fs::is_empty(dir, ec) && !force) {
      return Status::InvalidArgument("-o " + dir + ": directory is not empty (pass --force to write into it)");
    }
    return Status::OK();
  }
  fs::create_directories(dir, ec);
  if (ec) return Status::InvalidArgument("-o " + dir + ": cannot create the directory: " + ec.message());
  return Status::OK();
}

Status RunDownload(JobFlags& f, CommandContext& ctx) {
  // Checked before connecting: a refused directory never costs an export.
  TRIB_RETURN_IF_ERROR(PrepareOutputDir(f.output_dir, f.force));
  TRIB_ASSIGN_OR_RETURN(auto client, ConnectFromFlags(f, ctx));
  TRIB_ASSIGN_OR_RETURN(v1::ExportModelReply reply,
                        client->ExportModel(f.job, static_cast<uint64_t>(f.round), f.export_format));
  if (reply.files_size() == 0) {
    return Status::FailedPrecondition("coordinator exported no files for job " + f.job + " (" + f.export_format + ")");
  }
  for (const v1::ExportedFile& file : reply.files()) {
    if (!IsPlainFileName(file.name())) {
      return Status::InvalidArgument("coordinator listed an unsafe file name '" + file.name() + "' for job " + f.job);
    }
  }
  uint64_t total = 0;
  const bool live = StdoutIsTerminal();
  for (const v1::ExportedFile& file : reply.files()) {
    const std::string path = (fs::path(f.output_dir) / file.name()).string();
    if (live) std::fprintf(stderr, "fetching %s (%s)\n", file.name().c_str(), FormatBytes(file.size()).c_str());
    TRIB_RETURN_IF_ERROR(client->FetchFile(file.object_id(), path, file.checksum()));
    total += file.size();
  }
  if (f.format == "json") {
    nlohmann::json files = nlohmann::json::array();
    for (const v1::ExportedFile& file : reply.files()) files.push_back({{"name", file.name()}, {"size", file.size()}});
    PrintJsonOk("download", {{"job_id", f.job},
                             {"round", reply.round()},
                             {"format", f.export_format},
                             {"output_dir", f.output_dir},
                             {"bytes", total},
                             {"files", files}});
    return Status::OK();
  }
  std::printf("wrote job %s round %llu (%s, %d files, %s) to %s\n", f.job.c_str(),
              static_cast<unsigned long long>(reply.round()), f.export_format.c_str(), reply.files_size(),
              FormatBytes(total).c_str(), f.output_dir.c_str());
  return Status::OK();
}

CLI::Option* AddReadFormat(CLI::App* cmd, std::string& format) {
  return cmd->add_option("--format", format, "text|json (json: one envelope object on stdout)")
      ->check(CLI::IsMember({"text", "json"}));
}

using JobRunner = Status (*)(JobFlags&, CommandContext&);

// Wraps a command: in --format json mode a failure is also printed as the JSON error envelope.
CommandHandler JsonAware(std::shared_ptr<JobFlags> f, std::string name, JobRunner run) {
  return [f, name, run](CommandContext& ctx) -> Status {
    Status s = run(*f, ctx);
    if (!s.ok() && f->format == "json" && !f->json_printed) {
      const int code = ctx.exit_code_override >= 0 ? ctx.exit_code_override : ExitCodeForStatus(s);
      PrintJsonError(name, code, JsonErrorCode(s), s.message());
    }
    return s;
  };
}

}  // namespace

void RegisterJobCommands(CLI::App& app, CommandRegistry& registry) {
  auto f = std::make_shared<JobFlags>();  // option storage, shared by the handlers

  CLI::App* submit = app.add_subcommand("submit", "Submit a job spec (YAML) to the coordinator; prints the job id");
  submit->add_option("spec", f->spec_file, "Job spec file")->required()->check(CLI::ExistingFile);
  submit->add_option("--set", f->sets, "Override a spec field: --set key=value (repeatable)");
  submit->add_option("--submit-token", f->submit_token, "Idempotency token: the same token yields the same job");
  submit->add_flag("--dry-run", f->dry_run, "Validate the spec and print its canonical form; submit nothing");
  AddReadFormat(submit, f->format);
  AddConnectionFlags(submit, f->connection);

  CLI::App* jobs = app.add_subcommand("jobs", "List jobs");
  jobs->add_option("--submit-token", f->submit_token, "Only the job submitted with this token");
  jobs->add_option("--state", f->state_filter, "Only jobs in this state, e.g. RUNNING");
  jobs->add_option("--limit", f->limit, "At most N jobs (0: all)");
  AddReadFormat(jobs, f->format);
  AddConnectionFlags(jobs, f->connection);

  CLI::App* workers = app.add_subcommand("workers", "List the registered workers: liveness, tasklet, NICs");
  AddReadFormat(workers, f->format);
  AddConnectionFlags(workers, f->connection);

  CLI::App* status = app.add_subcommand("status", "Show a job's round, participants, loss, bytes and progress");
  status->add_option("job", f->job, "Job id")->required();
  CLI::Option* watch = status->add_flag(
      "--watch,-w", f->watch, "Refresh until the job ends (loss curve drawn; exit codes as wait; Ctrl-C exits 0)");
  status->add_option("--interval", f->interval_s, "Seconds between refreshes of --watch (default 2)")
      ->check(CLI::Range(0.1, 3600.0))
      ->needs(watch);
  AddReadFormat(status, f->format);
  AddConnectionFlags(status, f->connection);

  CLI::App* wait = app.add_subcommand(
      "wait", "Wait for a job to finish (exit 0 completed, 1 failed or stopped, 2 connection/auth error, 3 timeout)");
  wait->add_option("job", f->job, "Job id")->required();
  wait->add_option("--timeout", f->timeout_s, "Give up after S seconds (exit 3)")->check(CLI::PositiveNumber);
  AddReadFormat(wait, f->format);
  AddConnectionFlags(wait, f->connection);

  CLI::App* logs = app.add_subcommand("logs", "Print a job's log (the coordinator's, or a worker's with --worker)");
  logs->add_option("job", f->job, "Job id")->required();
  logs->add_option("--worker", f->worker, "The lines this worker logged for the job (shipped to the coordinator)");
  logs->add_flag("--follow,-f", f->follow, "Keep printing new lines until the job finishes");
  AddReadFormat(logs, f->format);
  AddConnectionFlags(logs, f->connection);

  CLI::App* stop = app.add_subcommand("stop", "Stop a job (terminal state FINISHED:STOPPED)");
  stop->add_option("job", f->job, "Job id")->required();
  stop->add_option("--reason", f->reason, "Why (recorded with the job)");
  AddReadFormat(stop, f->format);
  AddConnectionFlags(stop, f->connection);

  CLI::App* download = app.add_subcommand("download", "Download a job's model as HF safetensors or a PEFT adapter");
  download->add_option("job", f->job, "Job id")->required();
  download->add_option("--round", f->round, "Committed round to export (default: the last)")
      ->check(CLI::PositiveNumber);
  download->add_option("--format", f->export_format, "safetensors|peft")
      ->required()
      ->check(CLI::IsMember({"safetensors", "peft"}));
  download->add_option("-o,--output", f->output_dir, "Output directory (created; must be empty unless --force)")
      ->required();
  download->add_flag("--force", f->force, "Write into a non-empty output directory");
  // --format names the model format here, so the summary's format has its own flag.
  download->add_option("--summary-format", f->format, "text|json summary on stdout (json: one envelope object)")
      ->check(CLI::IsMember({"text", "json"}));
  AddConnectionFlags(download, f->connection);

  registry.handlers["submit"] = JsonAware(f, "submit", RunSubmit);
  registry.handlers["jobs"] = JsonAware(f, "jobs", RunJobs);
  registry.handlers["workers"] = JsonAware(f, "workers", RunWorkers);
  registry.handlers["status"] = JsonAware(f, "status", RunStatus);
  registry.handlers["wait"] = JsonAware(f, "wait", RunWait);
  registry.handlers["logs"] = JsonAware(f, "logs", RunLogs);
  registry.handlers["stop"] = JsonAware(f, "stop", RunStop);
  registry.handlers["download"] = JsonAware(f, "download", RunDownload);
}

}  // namespace tributary::cli
