#include "worker/control_loop.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "federation/method.h"

namespace tributary {
namespace {

using transport::Envelope;
using transport::Message;

constexpr int kControlPollMs = 100;  // the loop checks the stop flag at least this often
constexpr int64_t kMinRegisterRetryMs = 1000;

v1::Capabilities ToProto(const WorkerCapabilities& caps, const std::vector<DatasetInfo>& datasets,
                         const std::string& software_version) {
  v1::Capabilities out;
  out.set_cpu_cores(static_cast<uint32_t>(std::max(caps.cores, 0)));
  out.set_memory_bytes(static_cast<uint64_t>(std::max<int64_t>(caps.memory_bytes, 0)));
  for (const GpuInfo& gpu : caps.gpus) {
    v1::Gpu* g = out.add_gpus();
    g->set_name(gpu.name);
    g->set_memory_bytes(static_cast<uint64_t>(std::max<int64_t>(gpu.total_memory_bytes, 0)));
    g->set_compute_capability(std::to_string(gpu.compute_capability_major) + "." +
                              std::to_string(gpu.compute_capability_minor));
  }
  for (const NicInfo& nic : caps.nics) {
    v1::Nic* n = out.add_nics();
    n->set_name(nic.name);
    n->set_kind(NicFabricName(nic.fabric));
    n->set_speed_mbps(static_cast<uint64_t>(std::max<int64_t>(nic.speed_mbps, 0)));
    n->set_fabric_id(nic.fabric_id);
  }
  for (const DatasetInfo& dataset : datasets) {
    v1::DatasetInfo* d = out.add_datasets();
    d->set_name(dataset.name);
    d->set_samples(static_cast<uint64_t>(std::max<int64_t>(dataset.samples, 0)));
  }
  out.set_software_version(software_version);
  for (const MethodInfo* method : RegisteredMethods()) out.add_modes(method->name);
  return out;
}

int64_t MsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

ControlLoop::ControlLoop(const WorkerOptions& options, transport::Client* control, WorkQueue* queue,
                         const StatusBoard* board, std::function<bool()> stopping, std::function<bool()> draining)
    : options_(options),
      name_("worker '" + options.worker_id + "'"),
      peer_("coordinator " + options.coordinator),
      control_(control),
      queue_(queue),
      board_(board),
      stopping_(std::move(stopping)),
      draining_(std::move(draining)),
      heartbeat_interval_ms_(options.default_heartbeat_interval_ms) {}

Status ControlLoop::Run() {
  next_register_ = Clock::now();
  next_heartbeat_ = Clock::now();
  last_ack_ = Clock::now();
  while (!stopping_()) {
    Report();
    const auto now = Clock::now();
    if (!registered_ && now >= next_register_) {
      SendRegister();
      next_register_ = now + std::chrono::milliseconds(std::max(heartbeat_interval_ms_, kMinRegisterRetryMs));
    }
    if (registered_ && now >= next_heartbeat_) {
      SendHeartbeat();
      next_heartbeat_ = now + std::chrono::milliseconds(heartbeat_interval_ms_);
    }
    if (registered_ && MsSince(last_ack_) > heartbeat_miss_limit_ * heartbeat_interval_ms_) {
      spdlog::warn("{}: no HeartbeatAck from {} for {} intervals: registering again", name_, peer_,
                   heartbeat_miss_limit_);
      registered_ = false;
      next_register_ = now;
      continue;
    }
    if (registered_ && prober_ != nullptr)
      for (const v1::ProbeReport& report : prober_->TakeReports()) SendProbeReport(report);
    const auto next_due = registered_ ? next_heartbeat_ : next_register_;
    const int64_t until_due = std::chrono::duration_cast<std::chrono::milliseconds>(next_due - now).count();
    const int wait_ms = static_cast<int>(std::clamp<int64_t>(until_due, 1, kControlPollMs));
    Result<Message> received = control_->Receive(wait_ms);
    if (!received.ok()) {
      if (received.status().code() != StatusCode::kTimeout && !stopping_())
        spdlog::warn("{}: control connection: {}", name_, received.status().message());
      continue;
    }
    TRIB_RETURN_IF_ERROR(Handle(received->envelope));
  }
  return Status::OK();
}

Status ControlLoop::Handle(const Envelope& envelope) {
  switch (envelope.body_case()) {
    case Envelope::kRegisterAck:
      if (envelope.in_reply_to() != register_message_id_) return Status::OK();  // answers an older Register
      return HandleRegisterAck(envelope.register_ack());
    case Envelope::kHeartbeatAck: last_ack_ = Clock::now(); return Status::OK();
    case Envelope::kError: HandleError(envelope); return Status::OK();
    case Envelope::kRoundStart: {
      const v1::RoundStart& start = envelope.round_start();
      if (draining_()) {
        spdlog::info("{}: {}: RoundStart from {} not taken: the worker is stopping", name_,
                     JobRound(start.job_id(), start.round()), peer_);
        return Status::OK();
      }
      spdlog::info("{}: {}: RoundStart from {}", name_, JobRound(start.job_id(), start.round()), peer_);
      queue_->PushStart(start);
      return Status::OK();
    }
    case Envelope::kRoundCommitted: {
      const v1::RoundCommitted& committed = envelope.round_committed();
      spdlog::debug("{}: {}: RoundCommitted from {}", name_, JobRound(committed.job_id(), committed.round()), peer_);
      queue_->PushCommitted(committed);
      return Status::OK();
    }
    case Envelope::kProbeAssignment: HandleProbeAssignment(envelope); return Status::OK();
    default:
      spdlog::debug("{}: ignoring '{}' on the control connection", name_, transport::BodyName(envelope.body_case()));
      return Status::OK();
  }
}

Status ControlLoop::HandleRegisterAck(const v1::RegisterAck& ack) {
  if (!ack.accepted())
    return Status::PermissionDenied(peer_ + " refused the registration of worker '" + options_.worker_id +
                                    "': " + ack.reason());
  if (ack.heartbeat_interval_ms() > 0) heartbeat_interval_ms_ = ack.heartbeat_interval_ms();
  if (ack.heartbeat_miss_limit() > 0) heartbeat_miss_limit_ = ack.heartbeat_miss_limit();
  registered_ = true;
  last_ack_ = Clock::now();
  next_heartbeat_ = last_ack_;
  spdlog::info("{} registered with {} (coordinator id '{}', heartbeat every {} ms)", name_, peer_, ack.coordinator_id(),
               heartbeat_interval_ms_);
  options_.hooks.Ready();
  return Status::OK();
}

void ControlLoop::HandleError(const Envelope& envelope) {
  const Status error = transport::StatusFromError(envelope.error(), peer_);
  if (envelope.in_reply_to() == register_message_id_ && !registered_) {
    spdlog::warn("{}: registration failed: {}; retrying", name_, error.message());
  } else if (error.code() == StatusCode::kNotFound && envelope.in_reply_to() < register_message_id_) {
    // Answers a heartbeat queued before the latest Register (message ids increase): already handled.
    spdlog::debug("{}: {} (for an earlier heartbeat)", name_, error.message());
  } else if (error.code() == StatusCode::kNotFound) {
    spdlog::info("{}: {}: registering again", name_, error.message());
    registered_ = false;
    next_register_ = Clock::now();
  } else {
    spdlog::warn("{}: {}", name_, error.message());
  }
}

void ControlLoop::HandleProbeAssignment(const Envelope& envelope) {
  const v1::ProbeAssignment& assignment = envelope.probe_assignment();
  if (envelope.in_reply_to() != 0) {  // the answer to a ProbeReport
    if (!assignment.report_accepted())
      spdlog::warn("{}: {} refused a probe report: {}", name_, peer_, assignment.report_error());
    return;
  }
  if (prober_ == nullptr) return;
  if (std::optional<v1::ProbeReport> ready = prober_->OnAssignment(assignment)) SendProbeReport(*ready);
}

void ControlLoop::SendProbeReport(const v1::ProbeReport& report) {
  Envelope envelope = transport::NewEnvelope(options_.worker_id);
  *envelope.mutable_probe_report() = report;
  Status sent = control_->Send(envelope);
  if (!sent.ok()) spdlog::warn("{}: sending a probe report to {}: {}", name_, peer_, sent.message());
}

void ControlLoop::SendRegister() {
  Envelope envelope = transport::NewEnvelope(options_.worker_id);
  v1::Register* reg = envelope.mutable_register_worker();
  reg->set_worker_id(options_.worker_id);
  reg->set_hostname(options_.capabilities.hostname);
  *reg->mutable_capabilities() = ToProto(options_.capabilities, options_.datasets, options_.software_version);
  for (const ReplicaReport& replica : board_->Snapshot().replicas)
    (*reg->mutable_applied_rounds())[replica.job_id] = replica.round;
  register_message_id_ = envelope.message_id();
  Status sent = control_->Send(envelope);
  if (!sent.ok()) spdlog::warn("{}: sending Register to {}: {}", name_, peer_, sent.message());
}

uint64_t ControlLoop::SendHeartbeat(const std::string& state) {
  Envelope envelope = transport::NewEnvelope(options_.worker_id);
  v1::Heartbeat* heartbeat = envelope.mutable_heartbeat();
  heartbeat->set_worker_id(options_.worker_id);
  heartbeat->set_sequence(++heartbeat_sequence_);
  const PublishedStatus status = board_->Snapshot();
  heartbeat->set_state(state.empty() ? status.state : state);
  heartbeat->set_job_id(status.job_id);
  heartbeat->set_round(status.round);
  heartbeat->set_progress(status.state == "uploading" ? 1.0 : 0.0);
  for (const ReplicaReport& replica : status.replicas) {
    v1::ReplicaState* state = heartbeat->add_replicas();
    state->set_worker_id(options_.worker_id);
    state->set_job_id(replica.job_id);
    state->set_round(replica.round);
    state->set_weights_hash(replica.weights_hash);
  }
  for (const CalibrationReport& report : status.calibrations) {
    v1::JobCalibration* calibration = heartbeat->add_calibrations();
    calibration->set_job_id(report.job_id);
    calibration->set_tokens_per_s(report.tokens_per_s);
    calibration->set_measured_unix_ms(report.measured_unix_ms);
  }
  for (const ProblemReport& report : status.problems) {
    v1::JobProblem* problem = heartbeat->add_problems();
    problem->set_job_id(report.job_id);
    problem->set_round(report.round);
    problem->set_reason(report.reason);
    problem->set_since_unix_ms(report.since_unix_ms);
  }
  Status sent = control_->Send(envelope);
  if (!sent.ok()) spdlog::warn("{}: sending Heartbeat to {}: {}", name_, peer_, sent.message());
  return heartbeat_sequence_;
}

void ControlLoop::SendLeaving(int wait_ms) {
  if (register_message_id_ == 0) return;  // never sent a Register: the coordinator does not know this worker
  const uint64_t sequence = SendHeartbeat("leaving");
  const auto until = Clock::now() + std::chrono::milliseconds(wait_ms);
  while (Clock::now() < until) {
    Result<Message> received = control_->Receive(kControlPollMs);
    if (!received.ok()) continue;
    const Envelope& envelope = received->envelope;
    if (envelope.body_case() == Envelope::kHeartbeatAck && envelope.heartbeat_ack().sequence() == sequence) {
      spdlog::info("{}: {} knows this worker is leaving", name_, peer_);
      return;
    }
    if (envelope.body_case() == Envelope::kError && envelope.in_reply_to() > register_message_id_) {
      spdlog::info("{}: {} did not take the leaving heartbeat: {}", name_, peer_, envelope.error().message());
      return;
    }
  }
  spdlog::info("{}: no answer from {} to the leaving heartbeat in {} ms", name_, peer_, wait_ms);
}

std::string ControlLoop::StatusLine() const {
  std::string line;
  if (!registered_) {
    line = "registering as " + options_.worker_id + " with " + peer_;
  } else {
    const PublishedStatus status = board_->Snapshot();
    line = "registered as " + options_.worker_id + "; " + status.state;
    if (status.state != "idle") line += " " + JobRound(status.job_id, status.round);
  }
  return drain_reported_ ? "draining: " + line : line;
}

void ControlLoop::Report() {
  options_.hooks.Alive();
  if (!drain_reported_ && draining_()) {
    drain_reported_ = true;
    options_.hooks.Stopping();
  }
  if (!options_.hooks.status) return;
  std::string line = StatusLine();
  if (line == status_line_) return;
  status_line_ = std::move(line);
  options_.hooks.ReportStatus(status_line_);
}

}  // namespace tributary
