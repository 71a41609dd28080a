// The coordinator daemon's CLI requests: submit, list, get, stop, logs, export (docs/protocol.md, "CLI <->
// coordinator"), answered through the job runners, the worker registry and the bulk objects.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <random>
#include <set>

#include "base/file_util.h"
#include "coordinator/coordinator_internal.h"
#include "coordinator/job_view.h"
#include "engine/io/model_dir.h"
#include "federation/job_spec.h"

namespace tributary {

namespace fs = std::filesystem;
using transport::Envelope;
using transport::Incoming;

namespace {

constexpr uint32_t kDefaultLogPage = 1000;

std::string NewJobId() {
  std::random_device rd;
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%08x", rd());
  return std::string("job-") + buf;
}

// FailedPrecondition when workers are registered (alive or not) but none holds `dataset`: such a job would
// wait forever. With no worker registered yet (a coordinator that just started or restarted) the job is
// accepted and waits; its status says why (JobStatus.waiting).
Status CheckSomeWorkerHolds(const WorkerRegistry& workers, const std::string& dataset) {
  const std::vector<const WorkerEntry*> all = workers.All();
  if (all.empty()) return Status::OK();
  std::set<std::string> held;
  for (const WorkerEntry* w : all) {
    if (w->inventory.datasets.count(dataset) > 0) return Status::OK();
    for (const auto& [name, samples] : w->inventory.datasets) held.insert(name);
  }
  constexpr size_t kNamed = 10;  // the message stays one short line with thousands of workers
  std::string names;
  size_t listed = 0;
  for (const std::string& name : held) {
    if (listed++ == kNamed) {
      names += ", ... (" + std::to_string(held.size()) + " in all)";
      break;
    }
    names += (names.empty() ? "'" : ", '") + name + "'";
  }
  return Status::FailedPrecondition("field 'data.dataset': no registered worker holds dataset '" + dataset + "' (the " +
                                    std::to_string(all.size()) + " registered worker(s) hold " +
                                    (held.empty() ? std::string("no datasets") : names) + ")");
}

// The job submitted earlier with `token` ("" when none or no token), or AlreadyExists when that job's spec
// differs from `spec` (a token is the client's idempotency key, not a name to reuse). Any thread.
Result<std::string> JobOfSubmitToken(checkpoint::CheckpointStore* store, const std::string& token,
                                     const JobSpec& spec) {
  if (token.empty()) return std::string();
  auto existing = store->FindJobBySubmitToken(token);
  if (!existing.ok() && existing.status().code() == StatusCode::kNotFound) return std::string();
  if (!existing.ok()) return existing.status();
  auto stored = ParseJobSpec(existing->spec_yaml, "job '" + existing->job_id + "' stored spec");
  if (!stored.ok() || JobSpecHash(*stored) != JobSpecHash(spec))
    return Status::AlreadyExists("submit token '" + token + "' was used for job '" + existing->job_id +
                                 "' with a different spec");
  return existing->job_id;
}

}  // namespace

void Coordinator::Impl::HandleSubmit(const Incoming& in) {
  const v1::SubmitJob& req = in.message.envelope.submit_job();
  Status token_ok = ValidateSubmitToken(req.submit_token(), "submit token");
  if (!token_ok.ok()) return ReplyError(in, token_ok);
  auto spec = ParseJobSpec(req.spec_yaml(), "submitted job spec");
  if (!spec.ok()) return ReplyError(in, spec.status());
  Envelope reply = transport::NewEnvelope("coordinator");
  v1::SubmitJobReply* out = reply.mutable_submit_job_reply();
  auto existing = JobOfSubmitToken(store.get(), req.submit_token(), *spec);
  if (!existing.ok()) return ReplyError(in, existing.status());
  if (!existing->empty()) {
    out->set_accepted(true);
    out->set_existing(true);
    out->set_job_id(*existing);
    return Reply(in, std::move(reply));
  }
  if (!spec->eval_dataset.empty() && options.eval_data.count(spec->eval_dataset) == 0)
    return ReplyError(in, Status::InvalidArgument("field 'eval.dataset': '" + spec->eval_dataset +
                                                  "' is not a held-out dataset of this coordinator"));
  if (Status held = CheckSomeWorkerHolds(*workers, spec->dataset); !held.ok()) return ReplyError(in, held);
  // Sizes the spec derives with its model's shape; a model that cannot be read is the job runner's error.
  if (auto model = ReadLlamaConfig(JoinPath(spec->base_model, "config.json")); model.ok()) {
    Status sizes = CheckJobSizesForModel(*spec, *model, "submitted job spec");
    if (!sizes.ok()) return ReplyError(in, sizes);
  }
  if (req.dry_run()) {
    out->set_accepted(true);
    return Reply(in, std::move(reply));
  }
  std::string job_id = NewJobId();
  while (jobs.count(job_id) > 0) job_id = NewJobId();
  // Building the job (its model read, its initial snapshot written) runs on the submissions queue, one at a
  // time: a second submit with the same token finds the first's job there.
  struct Built {
    Result<std::unique_ptr<JobRunner>> job = Status::Internal("not built");
    std::string existing_id;  // the token's job, submitted while this one waited
  };
  auto built = std::make_shared<Built>();
  const std::string token = req.submit_token();
  submissions.Post(
      [built, services = Services(), job_id, spec = *spec, token, store = store.get()] {
        auto existing = JobOfSubmitToken(store, token, spec);
        if (!existing.ok() || !existing->empty()) {
          if (existing.ok()) built->existing_id = *existing;
          if (!existing.ok()) built->job = existing.status();
          return;
        }
        built->job = JobRunner::Submit(services, job_id, spec, token);
      },
      [this, built, job_id, request = KeepRequest(in), reply = std::move(reply)]() mutable {
        v1::SubmitJobReply* out = reply.mutable_submit_job_reply();
        out->set_accepted(true);
        if (!built->existing_id.empty()) {
          out->set_existing(true);
          out->set_job_id(built->existing_id);
          return Reply(*request, std::move(reply));
        }
        if (!built->job.ok()) {
          spdlog::warn("coordinator: submit from {} refused: {}", request->peer.Describe(),
                       built->job.status().ToString());
          return ReplyError(*request, built->job.status());
        }
        jobs[job_id] = std::move(*built->job);
        out->set_job_id(job_id);
        Reply(*request, std::move(reply));
      });
}

void Coordinator::Impl::HandleListJobs(const Incoming& in) {
  const v1::ListJobs& req = in.message.envelope.list_jobs();
  Envelope reply = transport::NewEnvelope("coordinator");
  v1::ListJobsReply* out = reply.mutable_list_jobs_reply();
  for (const auto& [id, job] : jobs) {
    if (!req.submit_token().empty() && job->record().submit_token != req.submit_token()) continue;
    v1::JobStatus st = job->Describe();
    if (!req.state_filter().empty() && st.state() != req.state_filter()) continue;
    *out->add_jobs() = std::move(st);
    if (req.limit() > 0 && out->jobs_size() >= static_cast<int>(req.limit())) break;
  }
  Reply(in, std::move(reply));
}

void Coordinator::Impl::HandleListWorkers(const Incoming& in) {
  Envelope reply = transport::NewEnvelope("coordinator");
  v1::ListWorkersReply* out = reply.mutable_list_workers_reply();
  *out = ListWorkersOf(*workers, UnixMillis());
  Reply(in, std::move(reply));
}

void Coordinator::Impl::HandleGetJob(const Incoming& in) {
  const std::string& job_id = in.message.envelope.get_job().job_id();
  JobRunner* job = FindJob(job_id);
  if (job == nullptr) return ReplyError(in, Status::NotFound("job '" + job_id + "' not found"));
  Envelope reply = transport::NewEnvelope("coordinator");
  *reply.mutable_get_job_reply() = job->Detail(workers->ReplicasOf(job_id));
  for (v1::JobProblem& problem : workers->ProblemsOf(job_id))
    *reply.mutable_get_job_reply()->add_worker_problems() = std::move(problem);
  BoundJobDetail(kMaxJobDetailBytes, reply.mutable_get_job_reply());
  Reply(in, std::move(reply));
}

void Coordinator::Impl::HandleStopJob(const Incoming& in) {
  const v1::StopJob& req = in.message.envelope.stop_job();
  JobRunner* job = FindJob(req.job_id());
  if (job == nullptr) return ReplyError(in, Status::NotFound("job '" + req.job_id() + "' not found"));
  Envelope reply = transport::NewEnvelope("coordinator");
  v1::StopJobReply* out = reply.mutable_stop_job_reply();
  if (checkpoint::IsFinished(job->record().state)) {
    out->set_stopped(false);
    out->set_state(checkpoint::JobStateName(job->record().state));
    out->set_error("job '" + job->job_id() + "' is already " + checkpoint::JobStateName(job->record().state));
    return Reply(in, std::move(reply));
  }
  const std::string reason = req.reason().empty() ? "stopped by " + in.peer.Describe() : req.reason();
  Status stopped = job->Stop(reason, UnixMillis());
  if (!stopped.ok()) return ReplyError(in, stopped);
  out->set_stopped(true);
  out->set_state(checkpoint::JobStateName(job->record().state));
  Reply(in, std::move(reply));
}

void Coordinator::Impl::HandleFetchLogs(const Incoming& in) {
  const v1::FetchLogs& req = in.message.envelope.fetch_logs();
  if (!req.worker_id().empty()) return HandleFetchWorkerLogs(in);
  JobRunner* job = FindJob(req.job_id());
  if (job == nullptr) return ReplyError(in, Status::NotFound("job '" + req.job_id() + "' not found"));
  const uint32_t max_lines = req.max_lines() == 0 ? kDefaultLogPage : req.max_lines();
  auto page = job->ReadLog(req.from_line(), max_lines);
  if (!page.ok()) return ReplyError(in, page.status());
  Envelope reply = transport::NewEnvelope("coordinator");
  v1::FetchLogsReply* out = reply.mutable_fetch_logs_reply();
  for (std::string& line : page->lines) out->add_lines(std::move(line));
  out->set_next_line(page->next_line);
  out->set_eof(checkpoint::IsFinished(job->record().state) && out->lines_size() < static_cast<int>(max_lines));
  Reply(in, std::move(reply));
}

void Coordinator::Impl::HandleExport(const Incoming& in) {
  const v1::ExportModel& req = in.message.envelope.export_model();
  JobRunner* job = FindJob(req.job_id());
  if (job == nullptr) return ReplyError(in, Status::NotFound("job '" + req.job_id() + "' not found"));
  // The export runs on the job's task queue; the reply goes when it is done (the request is kept for it).
  auto request = KeepRequest(in);
  job->ExportAsync(req.round(), req.format(),
                   [this, request](const Result<JobRunner::Exported>& exported, uint32_t round) {
                     ReplyExport(*request, exported, round);
                   });
}

void Coordinator::Impl::ReplyExport(const Incoming& in, const Result<JobRunner::Exported>& exported, uint32_t round) {
  const v1::ExportModel& req = in.message.envelope.export_model();
  if (!exported.ok()) return ReplyError(in, exported.status());
  Envelope reply = transport::NewEnvelope("coordinator");
  v1::ExportModelReply* out = reply.mutable_export_model_reply();
  out->set_job_id(req.job_id());
  out->set_round(round);
  out->set_format(req.format());
  const int64_t now_ms = UnixMillis();
  for (const JobRunner::ExportedFile& exported_file : exported->files) {
    Status offered = bulk.OfferPrepared(exported_file.object_id, exported_file.object, now_ms);
    if (!offered.ok()) return ReplyError(in, offered);
    v1::ExportedFile* file = out->add_files();
    file->set_name(exported_file.name);
    file->set_object_id(exported_file.object_id);
    file->set_size(exported_file.size);
    file->set_checksum(exported_file.object.object_checksum);
  }
  Reply(in, std::move(reply));
}

void Coordinator::Impl::ServeWorkersView(int64_t now_ms) {
  {
    std::lock_guard<std::mutex> lock(view_mu);
    if (workers_view_asked == workers_view_served) return;  // nobody waits for it
  }
  // Missed heartbeats grow with time alone, so a view older than a second is rebuilt even when no heartbeat
  // moved the liveness version. One rebuild of 10,000 workers holds the loop (which reads their heartbeats) for
  // tens of milliseconds: the next waits 20 times the last one's duration (the older view is served meanwhile),
  // so the view takes at most about 5% of the loop however often it is asked for.
  const int64_t since_ms = now_ms - workers_view_ms;
  const int64_t gap_ms = std::max<int64_t>(250, 20 * workers_view_build_ms);
  const bool fresh = workers->liveness_version() == workers_view_version && since_ms < 1000;
  if (!fresh && since_ms >= gap_ms) BuildWorkersView(now_ms);
  std::lock_guard<std::mutex> lock(view_mu);
  workers_view_served = workers_view_asked;
  workers_view_ready.notify_all();
}

void Coordinator::Impl::BuildWorkersView(int64_t now_ms) {
  const auto started = std::chrono::steady_clock::now();
  nlohmann::json view = WorkersViewJson(*workers, now_ms);
  workers_view_build_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
  workers_view_version = workers->liveness_version();
  workers_view_ms = now_ms;
  std::lock_guard<std::mutex> lock(view_mu);
  workers_view = std::move(view);
}

}  // namespace tributary
