#include "worker/log_shipper.h"

#include <spdlog/spdlog.h>

#include "transport/message.h"

namespace tributary {
namespace {

constexpr auto kRefusalLogEvery = std::chrono::minutes(1);
constexpr int kStopPollMs = 100;

}  // namespace

LogShipper::LogShipper(std::string worker_id, transport::Client* client, JobLogCapture* capture, int request_timeout_ms)
    : worker_id_(std::move(worker_id)), client_(client), capture_(capture), request_timeout_ms_(request_timeout_ms) {}

LogShipper::~LogShipper() {
  Stop();
}

void LogShipper::Start() {
  thread_ = std::thread([this] { Run(); });
}

void LogShipper::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void LogShipper::Run() {
  while (!stop_) {
    ShipOnce();
    for (int waited = 0; waited < kShipIntervalMs && !stop_; waited += kStopPollMs)
      std::this_thread::sleep_for(std::chrono::milliseconds(kStopPollMs));
  }
}

bool LogShipper::ShipOnce() {
  // One message per job with unsent lines; a job whose lines were all sent is not picked again.
  for (size_t sent = 0; sent < JobLogCapture::kMaxJobs * 8 && !stop_; ++sent) {
    JobLogBatch batch = capture_->Unsent(kMaxMessageBytes);
    if (batch.job_id.empty()) return true;
    transport::Envelope envelope = transport::NewEnvelope(worker_id_);
    v1::WorkerLogLines* out = envelope.mutable_worker_log_lines();
    out->set_worker_id(worker_id_);
    out->set_job_id(batch.job_id);
    out->set_first_line(batch.first_line);
    for (std::string& line : batch.lines) out->add_lines(std::move(line));
    const uint64_t end = batch.first_line + static_cast<uint64_t>(out->lines_size());
    Result<transport::Message> reply = client_->Request(envelope, request_timeout_ms_);
    if (!reply.ok()) {
      // Not registered yet or unreachable: sent again at the next pass. Anything else is a refusal.
      const StatusCode code = reply.status().code();
      if (code == StatusCode::kTimeout || code == StatusCode::kUnavailable || code == StatusCode::kNotFound)
        return false;
      NoteRefusal(batch.job_id, reply.status().message());
    } else if (!reply->envelope.has_worker_log_lines_reply() || !reply->envelope.worker_log_lines_reply().accepted()) {
      NoteRefusal(batch.job_id, reply->envelope.worker_log_lines_reply().reason());
    }
    capture_->MarkSent(batch.job_id, end);
  }
  return true;
}

void LogShipper::NoteRefusal(const std::string& job_id, const std::string& reason) {
  const auto now = std::chrono::steady_clock::now();
  if (now - last_refusal_log_ < kRefusalLogEvery) return;
  last_refusal_log_ = now;
  spdlog::warn(
      "worker '{}': the coordinator refused log lines of job {}: {} (dropped; refusals are logged once a "
      "minute)",
      worker_id_, job_id, reason.empty() ? "no reason given" : reason);
}

}  // namespace tributary
