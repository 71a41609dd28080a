// The coordinator daemon's side of worker log lines (docs/protocol.md, "Worker log lines"): WorkerLogLines
// from the workers, kept in WorkerLogs, and FetchLogs with a worker_id from the CLI.
#include <spdlog/spdlog.h>

#include "coordinator/coordinator_internal.h"

namespace tributary {

using transport::Envelope;
using transport::Incoming;

namespace {

constexpr uint32_t kDefaultWorkerLogPage = 1000;
constexpr int64_t kRefusalLogEveryMs = 60000;

}  // namespace

void Coordinator::Impl::HandleFetchWorkerLogs(const Incoming& in) {
  const v1::FetchLogs& req = in.message.envelope.fetch_logs();
  const std::string& worker = req.worker_id();
  JobRunner* job = FindJob(req.job_id());
  if (job == nullptr) return ReplyError(in, Status::NotFound("job '" + req.job_id() + "' not found"));
  if (!worker_logs.Has(job->job_id(), worker)) {
    if (workers->Find(worker) == nullptr)
      return ReplyError(in, Status::NotFound("worker '" + worker + "' is not known to this coordinator"));
    if (WorkersOfJob(job->Detail(workers->ReplicasOf(job->job_id()))).count(worker) == 0)
      return ReplyError(in, Status::NotFound("worker '" + worker + "' never worked on job '" + job->job_id() + "'"));
  }
  const uint32_t max_lines = req.max_lines() == 0 ? kDefaultWorkerLogPage : req.max_lines();
  WorkerLogs::Page page = worker_logs.Read(job->job_id(), worker, req.from_line(), max_lines);
  Envelope reply = transport::NewEnvelope("coordinator");
  v1::FetchLogsReply* out = reply.mutable_fetch_logs_reply();
  for (std::string& line : page.lines) out->add_lines(std::move(line));
  out->set_next_line(page.next_line);
  // The worker may still ship a last line or two after the job finished: eof is a reader's hint.
  out->set_eof(checkpoint::IsFinished(job->record().state) && out->lines_size() < static_cast<int>(max_lines));
  Reply(in, std::move(reply));
}

void Coordinator::Impl::HandleWorkerLogLines(const Incoming& in) {
  const v1::WorkerLogLines& req = in.message.envelope.worker_log_lines();
  auto worker = workers->Authorize(req.worker_id(), in.peer);
  if (!worker.ok()) return ReplyError(in, worker.status());  // NotFound: the worker sends them again later
  Envelope reply = transport::NewEnvelope("coordinator");
  v1::WorkerLogLinesReply* out = reply.mutable_worker_log_lines_reply();
  JobRunner* job = FindJob(req.job_id());
  std::string refused;
  if (job == nullptr) {
    refused = "unknown job '" + req.job_id() + "'";
  } else if (req.lines_size() > static_cast<int>(WorkerLogs::kMaxLinesPerMessage)) {
    refused = std::to_string(req.lines_size()) + " lines in one message (at most " +
              std::to_string(WorkerLogs::kMaxLinesPerMessage) + ")";
  } else if (WorkersOfJob(job->Detail(workers->ReplicasOf(job->job_id()))).count(req.worker_id()) == 0) {
    refused = "worker '" + req.worker_id() + "' is not in job '" + req.job_id() + "'";
  }
  out->set_accepted(refused.empty());
  out->set_reason(refused);
  if (refused.empty()) {
    worker_logs.Append(job->job_id(), req.worker_id(), req.first_line(), {req.lines().begin(), req.lines().end()});
  } else if (const int64_t now = UnixMillis(); now - last_log_refusal_ms >= kRefusalLogEveryMs) {
    last_log_refusal_ms = now;
    spdlog::warn("coordinator: refused log lines from {}: {} (refusals are logged once a minute)", in.peer.Describe(),
                 refused);
  }
  Reply(in, std::move(reply));
}

}  // namespace tributary
