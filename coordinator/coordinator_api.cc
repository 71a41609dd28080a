// The coordinator daemon's CLI requests: submit, list, get, stop, logs, export (docs/protocol.md).
#include <spdlog/spdlog.h>

#include <filesystem>
#include <random>

#include "coordinator/coordinator_internal.h"
#include "federation/method.h"

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

}  // namespace

Result<std::string> Coordinator::Impl::CreateJob(const JobSpec& spec, const std::string& submit_token) {
  std::string job_id = NewJobId();
  while (jobs.count(job_id) > 0) job_id = NewJobId();
  auto job = std::make_unique<JobEntry>();
  job->job_id = job_id;
  job->spec = spec;
  job->record.job_id = job_id;
  job->record.submit_token = submit_token;
  job->record.spec_yaml = spec.source_text;
  TRIB_RETURN_IF_ERROR(StartJob(job.get(), /*resume=*/false));
  auto log = JobLog::Open((fs::path(options.data_dir) / "logs" / (job_id + ".log")).string());
  if (log.ok()) job->log = std::move(*log);
  JobEntry* raw = job.get();
  jobs[job_id] = std::move(job);
  LogJob(raw, "submitted: " + spec.mode + " job '" + spec.name + "', " + std::to_string(spec.rounds) +
                  " round(s), dataset '" + spec.dataset + "', base model " + spec.base_model +
                  ", initial weights hash " + raw->weights_hash);
  PublishView();
  return job_id;
}

void Coordinator::Impl::HandleSubmit(const Incoming& in) {
  const v1::SubmitJob& req = in.message.envelope.submit_job();
  Status token_ok = ValidateSubmitToken(req.submit_token(), "submit token");
  if (!token_ok.ok()) return ReplyError(in, token_ok);
  auto spec = ParseJobSpec(req.spec_yaml(), "submitted job spec");
  if (!spec.ok()) return ReplyError(in, spec.status());
  Envelope reply = transport::NewEnvelope("coordinator");
  v1::SubmitJobReply* out = reply.mutable_submit_job_reply();
  if (!req.submit_token().empty()) {
    auto existing = store->FindJobBySubmitToken(req.submit_token());
    if (existing.ok()) {
      auto stored = ParseJobSpec(existing->spec_yaml, "job '" + existing->job_id + "' stored spec");
      if (!stored.ok() || JobSpecHash(*stored) != JobSpecHash(*spec))
        return ReplyError(in, Status::AlreadyExists("submit token '" + req.submit_token() + "' was used for job '" +
                                                    existing->job_id + "' with a different spec"));
      out->set_accepted(true);
      out->set_existing(true);
      out->set_job_id(existing->job_id);
      return Reply(in, std::move(reply));
    }
    if (existing.status().code() != StatusCode::kNotFound) return ReplyError(in, existing.status());
  }
  if (!spec->eval_dataset.empty() && options.eval_data.count(spec->eval_dataset) == 0)
    return ReplyError(in, Status::InvalidArgument("field 'eval.dataset': '" + spec->eval_dataset +
                                                  "' is not a held-out dataset of this coordinator"));
  if (req.dry_run()) {
    out->set_accepted(true);
    return Reply(in, std::move(reply));
  }
  auto job_id = CreateJob(*spec, req.submit_token());
  if (!job_id.ok()) {
    spdlog::warn("coordinator: submit from {} refused: {}", in.peer.Describe(), job_id.status().ToString());
    return ReplyError(in, job_id.status());
  }
  out->set_accepted(true);
  out->set_job_id(*job_id);
  Reply(in, std::move(reply));
}

void Coordinator::Impl::HandleListJobs(const Incoming& in) {
  const v1::ListJobs& req = in.message.envelope.list_jobs();
  Envelope reply = transport::NewEnvelope("coordinator");
  v1::ListJobsReply* out = reply.mutable_list_jobs_reply();
  for (const auto& [id, job] : jobs) {
    if (!req.submit_token().empty() && job->record.submit_token != req.submit_token()) continue;
    const v1::JobStatus st = StatusOf(*job);
    if (!req.state_filter().empty() && st.state() != req.state_filter()) continue;
    *out->add_jobs() = st;
    if (req.limit() > 0 && out->jobs_size() >= static_cast<int>(req.limit())) break;
  }
  Reply(in, std::move(reply));
}

void Coordinator::Impl::HandleGetJob(const Incoming& in) {
  const std::string& job_id = in.message.envelope.get_job().job_id();
  JobEntry* job = FindJob(job_id);
  if (job == nullptr) return ReplyError(in, Status::NotFound("job '" + job_id + "' not found"));
  Envelope reply = transport::NewEnvelope("coordinator");
  v1::GetJobReply* out = reply.mutable_get_job_reply();
  *out->mutable_job() = StatusOf(*job);
  out->set_spec_yaml(job->record.spec_yaml);
  if (job->driver && job->driver->round_open()) {
    for (const std::string& p : job->driver->current().participants) out->add_workers(p);
  }
  for (const v1::RoundSummary& r : job->rounds) *out->add_rounds() = r;
  for (const auto& [id, w] : workers) {
    for (const v1::ReplicaState& replica : w.replicas) {
      if (replica.job_id() != job_id) continue;
      v1::ReplicaState* r = out->add_replicas();
      *r = replica;
      r->set_worker_id(id);
    }
  }
  Reply(in, std::move(reply));
}

void Coordinator::Impl::HandleStopJob(const Incoming& in) {
  const v1::StopJob& req = in.message.envelope.stop_job();
  JobEntry* job = FindJob(req.job_id());
  if (job == nullptr) return ReplyError(in, Status::NotFound("job '" + req.job_id() + "' not found"));
  Envelope reply = transport::NewEnvelope("coordinator");
  v1::StopJobReply* out = reply.mutable_stop_job_reply();
  if (checkpoint::IsFinished(job->record.state)) {
    out->set_stopped(false);
    out->set_state(checkpoint::JobStateName(job->record.state));
    out->set_error("job '" + job->job_id + "' is already " + checkpoint::JobStateName(job->record.state));
    return Reply(in, std::move(reply));
  }
  const std::string reason = req.reason().empty() ? "stopped by " + in.peer.Describe() : req.reason();
  Status updated = store->UpdateJobState(job->job_id, checkpoint::JobState::kStopped, reason, UnixMillis());
  if (!updated.ok()) return ReplyError(in, updated);
  auto record = store->GetJob(job->job_id);
  if (record.ok()) job->record = *record;
  job->driver.reset();
  job->model.reset();
  LogJob(job, "job stopped at committed round " + std::to_string(job->record.current_round) + ": " + reason);
  PublishView();
  out->set_stopped(true);
  out->set_state(checkpoint::JobStateName(job->record.state));
  Reply(in, std::move(reply));
}

void Coordinator::Impl::HandleFetchLogs(const Incoming& in) {
  const v1::FetchLogs& req = in.message.envelope.fetch_logs();
  if (!req.worker_id().empty())
    return ReplyError(in, Status::InvalidArgument("worker logs stay on the worker (e.g. journalctl -u tributary-worker "
                                                  "on its host); FetchLogs serves the coordinator's job log"));
  JobEntry* job = FindJob(req.job_id());
  if (job == nullptr) return ReplyError(in, Status::NotFound("job '" + req.job_id() + "' not found"));
  if (!job->log) return ReplyError(in, Status::Unavailable("job '" + req.job_id() + "': its log file is not open"));
  const uint32_t max_lines = req.max_lines() == 0 ? kDefaultLogPage : req.max_lines();
  auto page = job->log->Read(req.from_line(), max_lines);
  if (!page.ok()) return ReplyError(in, page.status());
  Envelope reply = transport::NewEnvelope("coordinator");
  v1::FetchLogsReply* out = reply.mutable_fetch_logs_reply();
  for (std::string& line : page->lines) out->add_lines(std::move(line));
  out->set_next_line(page->next_line);
  out->set_eof(checkpoint::IsFinished(job->record.state) && out->lines_size() < static_cast<int>(max_lines));
  Reply(in, std::move(reply));
}

void Coordinator::Impl::HandleExport(const Incoming& in) {
  const v1::ExportModel& req = in.message.envelope.export_model();
  JobEntry* job = FindJob(req.job_id());
  if (job == nullptr) return ReplyError(in, Status::NotFound("job '" + req.job_id() + "' not found"));
  const uint32_t last = job->record.current_round;
  if (req.round() > last)
    return ReplyError(in, Status::InvalidArgument("job '" + job->job_id + "': round " + std::to_string(req.round()) +
                                                  " is not committed (last committed: " + std::to_string(last) + ")"));
  const uint32_t round = req.round() == 0 ? last : static_cast<uint32_t>(req.round());
  if (req.format() != "safetensors" && req.format() != "peft")
    return ReplyError(in, Status::InvalidArgument("format '" + req.format() + "': expected safetensors or peft"));
  if (req.format() == "peft" && !MethodOf(job->spec).trains_adapters)
    return ReplyError(in, Status::FailedPrecondition("job '" + job->job_id + "' is a " + job->spec.mode +
                                                     " job: --format peft needs a job that trains adapters (use "
                                                     "safetensors)"));
  const fs::path dir =
      fs::path(options.data_dir) / "exports" / job->job_id / ("round-" + std::to_string(round) + "-" + req.format());
  if (!fs::exists(dir / ".complete")) {
    std::unique_ptr<JobModel> loaded;
    JobModel* model = job->model.get();
    if (model == nullptr) {
      auto created = JobModel::Load(job->spec);
      if (!created.ok()) return ReplyError(in, created.status());
      loaded = std::move(*created);
      model = loaded.get();
    }
    Arena rebuilt;
    const Arena* state = nullptr;
    if (job->driver && job->driver->last_committed_round() == round) {
      state = &job->driver->global();
    } else {
      rebuilt = model->NewState();
      Status status = RebuildTrainableState(store.get(), job->job_id, job->spec, round, &rebuilt);
      if (!status.ok()) return ReplyError(in, status);
      state = &rebuilt;
    }
    std::error_code ec;
    fs::remove_all(dir, ec);
    Status exported = model->Export(*state, req.format(), dir.string());
    if (!exported.ok()) return ReplyError(in, exported);
    FILE* marker = std::fopen((dir / ".complete").c_str(), "w");
    if (marker != nullptr) std::fclose(marker);
    LogJob(job, "exported round " + std::to_string(round) + " as " + req.format() + " to " + dir.string());
  }
  Envelope reply = transport::NewEnvelope("coordinator");
  v1::ExportModelReply* out = reply.mutable_export_model_reply();
  out->set_job_id(job->job_id);
  out->set_round(round);
  out->set_format(req.format());
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file() && entry.path().filename() != ".complete") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  for (const fs::path& path : files) {
    const std::string object_id =
        "export/" + job->job_id + "/" + std::to_string(round) + "/" + req.format() + "/" + path.filename().string();
    auto source = transport::FileSource::Open(path.string());
    if (!source.ok()) return ReplyError(in, source.status());
    Status added = bulk.AddObject(object_id, std::shared_ptr<transport::BulkSource>(std::move(*source)));
    if (!added.ok()) return ReplyError(in, added);
    bulk_expiry_ms[object_id] = UnixMillis() + 10 * 60 * 1000;
    v1::ExportedFile* file = out->add_files();
    file->set_name(path.filename().string());
    file->set_object_id(object_id);
    file->set_size(fs::file_size(path));
    file->set_checksum(bulk.ObjectChecksumOf(object_id));
  }
  Reply(in, std::move(reply));
}

}  // namespace tributary
