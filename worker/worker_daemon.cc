#include "worker/worker_daemon.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "base/parallel.h"
#include "transport/bulk.h"

namespace tributary {
namespace {

using Clock = std::chrono::steady_clock;
using transport::Envelope;
using transport::Message;

constexpr int kRetryPauseMs = 1000;  // between retries of a request and of an UploadAck.retry
constexpr int kControlPollMs = 100;  // the control loop checks the stop flag at least this often
constexpr int64_t kMinRegisterRetryMs = 1000;

int64_t MsSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

bool Retryable(const Status& status) {
  return status.code() == StatusCode::kTimeout || status.code() == StatusCode::kUnavailable;
}

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

std::string JobRound(const std::string& job_id, uint64_t round) {
  return "job " + job_id + " round " + std::to_string(round);
}

}  // namespace

Result<std::unique_ptr<WorkerDaemon>> WorkerDaemon::Create(WorkerOptions options) {
  if (options.worker_id.empty()) return Status::InvalidArgument("worker: the worker id (worker.name) is empty");
  if (options.worker_id.find_first_of(" \t\n") != std::string::npos)
    return Status::InvalidArgument("worker: worker id '" + options.worker_id + "' contains whitespace");
  if (options.coordinator.find("://") == std::string::npos)
    return Status::InvalidArgument("worker: coordinator endpoint '" + options.coordinator +
                                   "' is not of the form tcp://HOST:PORT");
  if (!options.insecure) {
    if (!transport::IsValidZ85Key(options.keys.public_key) || !transport::IsValidZ85Key(options.keys.secret_key))
      return Status::InvalidArgument("worker: no valid CURVE key pair (worker.secret_key) and not --insecure");
    if (!transport::IsValidZ85Key(options.coordinator_public_key))
      return Status::InvalidArgument(
          "worker: no valid coordinator public key (worker.coordinator_key) and not --insecure");
  }
  std::set<std::string> names;
  for (const DatasetInfo& dataset : options.datasets) {
    if (dataset.name.empty()) return Status::InvalidArgument("worker: dataset '" + dataset.path + "' has no name");
    if (!names.insert(dataset.name).second)
      return Status::InvalidArgument("worker: dataset '" + dataset.name + "' is given twice");
  }
  if (options.threads < 0)
    return Status::InvalidArgument("worker: threads must be >= 0, got " + std::to_string(options.threads));
  if (options.default_heartbeat_interval_ms <= 0)
    return Status::InvalidArgument("worker: heartbeat interval must be > 0 ms");
  if (options.request_timeout_ms <= 0) return Status::InvalidArgument("worker: request timeout must be > 0 ms");
  if (options.inline_payload_bytes < transport::kMinInlinePayloadBytes ||
      options.inline_payload_bytes > transport::kMaxInlinePayloadBytes)
    return Status::InvalidArgument(
        "worker: worker.inline_payload_bytes must be " + std::to_string(transport::kMinInlinePayloadBytes) + ".." +
        std::to_string(transport::kMaxInlinePayloadBytes) + ", got " + std::to_string(options.inline_payload_bytes));
  if (options.capabilities.datasets.empty()) options.capabilities.datasets = options.datasets;
  if (options.threads > 0) SetNumThreads(options.threads);

  std::unique_ptr<WorkerDaemon> daemon(new WorkerDaemon(std::move(options)));
  const WorkerOptions& o = daemon->options_;
  daemon->peer_ = "coordinator " + o.coordinator;
  daemon->heartbeat_interval_ms_ = o.default_heartbeat_interval_ms;
  transport::ClientOptions client;
  client.insecure = o.insecure;
  client.keys = o.keys;
  client.server_public_key = o.coordinator_public_key;
  client.name = "worker '" + o.worker_id + "' control";
  TRIB_ASSIGN_OR_RETURN(daemon->control_, transport::Client::Connect(o.coordinator, client));
  client.name = "worker '" + o.worker_id + "' work";
  TRIB_ASSIGN_OR_RETURN(daemon->work_, transport::Client::Connect(o.coordinator, client));
  daemon->upload_objects_ = std::make_unique<transport::BulkSender>("worker '" + o.worker_id + "' uploads");
  return daemon;
}

WorkerDaemon::~WorkerDaemon() {
  stopping_ = true;
  queue_cv_.notify_all();
  if (compute_thread_.joinable()) compute_thread_.join();
}

void WorkerDaemon::SleepUnlessStopping(int ms) const {
  const auto until = Clock::now() + std::chrono::milliseconds(ms);
  while (!Stopping() && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

Status WorkerDaemon::Run(const std::atomic<bool>* stop) {
  stop_ = stop;
  if (options_.insecure)
    spdlog::warn("worker '{}': INSECURE mode: CURVE is off, the traffic with {} is neither encrypted nor authenticated",
                 options_.worker_id, peer_);
  spdlog::info("worker '{}' starting: {} dataset(s), {} compute thread(s), {}", options_.worker_id,
               options_.datasets.size(), NumThreads(), peer_);
  compute_thread_ = std::thread([this] { ComputeLoop(); });
  Status result = ControlLoop();
  stopping_ = true;
  queue_cv_.notify_all();
  compute_thread_.join();
  spdlog::info("worker '{}' stopped", options_.worker_id);
  return result;
}

// ---------------------------------------------------------------------------------------------
// Main thread: control connection.

Status WorkerDaemon::ControlLoop() {
  auto next_register = Clock::now();
  auto next_heartbeat = Clock::now();
  auto last_ack = Clock::now();
  while (!Stopping()) {
    const auto now = Clock::now();
    if (!registered_ && now >= next_register) {
      SendRegister();
      next_register = now + std::chrono::milliseconds(std::max(heartbeat_interval_ms_, kMinRegisterRetryMs));
    }
    if (registered_ && now >= next_heartbeat) {
      SendHeartbeat();
      next_heartbeat = now + std::chrono::milliseconds(heartbeat_interval_ms_);
    }
    if (registered_ && MsSince(last_ack) > heartbeat_miss_limit_ * heartbeat_interval_ms_) {
      spdlog::warn("worker '{}': no HeartbeatAck from {} for {} intervals: registering again", options_.worker_id,
                   peer_, heartbeat_miss_limit_);
      registered_ = false;
      next_register = now;
      continue;
    }
    const auto next_due = registered_ ? next_heartbeat : next_register;
    const int64_t until_due = std::chrono::duration_cast<std::chrono::milliseconds>(next_due - now).count();
    const int wait_ms = static_cast<int>(std::clamp<int64_t>(until_due, 1, kControlPollMs));
    Result<Message> received = control_->Receive(wait_ms);
    if (!received.ok()) {
      if (received.status().code() != StatusCode::kTimeout && !Stopping())
        spdlog::warn("worker '{}': control connection: {}", options_.worker_id, received.status().message());
      continue;
    }
    const Envelope& envelope = received->envelope;
    switch (envelope.body_case()) {
      case Envelope::kRegisterAck: {
        if (envelope.in_reply_to() != register_message_id_) break;  // answers an older Register
        const v1::RegisterAck& ack = envelope.register_ack();
        if (!ack.accepted())
          return Status::PermissionDenied(peer_ + " refused the registration of worker '" + options_.worker_id +
                                          "': " + ack.reason());
        if (ack.heartbeat_interval_ms() > 0) heartbeat_interval_ms_ = ack.heartbeat_interval_ms();
        if (ack.heartbeat_miss_limit() > 0) heartbeat_miss_limit_ = ack.heartbeat_miss_limit();
        registered_ = true;
        last_ack = Clock::now();
        next_heartbeat = last_ack;
        spdlog::info("worker '{}' registered with {} (coordinator id '{}', heartbeat every {} ms)", options_.worker_id,
                     peer_, ack.coordinator_id(), heartbeat_interval_ms_);
        break;
      }
      case Envelope::kHeartbeatAck: last_ack = Clock::now(); break;
      case Envelope::kError: {
        const Status error = transport::StatusFromError(envelope.error(), peer_);
        if (envelope.in_reply_to() == register_message_id_ && !registered_) {
          spdlog::warn("worker '{}': registration failed: {}; retrying", options_.worker_id, error.message());
        } else if (error.code() == StatusCode::kNotFound && envelope.in_reply_to() < register_message_id_) {
          // Answers a heartbeat queued before the latest Register (message ids increase): already handled.
          spdlog::debug("worker '{}': {} (for an earlier heartbeat)", options_.worker_id, error.message());
        } else if (error.code() == StatusCode::kNotFound) {
          spdlog::info("worker '{}': {}: registering again", options_.worker_id, error.message());
          registered_ = false;
          next_register = Clock::now();
        } else {
          spdlog::warn("worker '{}': {}", options_.worker_id, error.message());
        }
        break;
      }
      case Envelope::kRoundStart: {
        WorkItem item;
        item.is_start = true;
        item.start = envelope.round_start();
        spdlog::info("worker '{}': {}: RoundStart from {}", options_.worker_id,
                     JobRound(item.start.job_id(), item.start.round()), peer_);
        Enqueue(std::move(item));
        break;
      }
      case Envelope::kRoundCommitted: {
        WorkItem item;
        item.committed = envelope.round_committed();
        {
          std::lock_guard<std::mutex> lock(mutex_);
          uint64_t& seen = committed_seen_[item.committed.job_id()];
          seen = std::max<uint64_t>(seen, item.committed.round());
        }
        spdlog::debug("worker '{}': {}: RoundCommitted from {}", options_.worker_id,
                      JobRound(item.committed.job_id(), item.committed.round()), peer_);
        Enqueue(std::move(item));
        break;
      }
      default:
        spdlog::debug("worker '{}': ignoring '{}' on the control connection", options_.worker_id,
                      transport::BodyName(envelope.body_case()));
    }
  }
  return Status::OK();
}

void WorkerDaemon::SendRegister() {
  Envelope envelope = transport::NewEnvelope(options_.worker_id);
  v1::Register* reg = envelope.mutable_register_worker();
  reg->set_worker_id(options_.worker_id);
  reg->set_hostname(options_.capabilities.hostname);
  *reg->mutable_capabilities() = ToProto(options_.capabilities, options_.datasets, options_.software_version);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const ReplicaReport& replica : reported_replicas_)
      (*reg->mutable_applied_rounds())[replica.job_id] = replica.round;
  }
  register_message_id_ = envelope.message_id();
  Status sent = control_->Send(envelope);
  if (!sent.ok()) spdlog::warn("worker '{}': sending Register to {}: {}", options_.worker_id, peer_, sent.message());
}

void WorkerDaemon::SendHeartbeat() {
  Envelope envelope = transport::NewEnvelope(options_.worker_id);
  v1::Heartbeat* heartbeat = envelope.mutable_heartbeat();
  heartbeat->set_worker_id(options_.worker_id);
  heartbeat->set_sequence(++heartbeat_sequence_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    heartbeat->set_state(activity_state_);
    heartbeat->set_job_id(activity_job_);
    heartbeat->set_round(activity_round_);
    heartbeat->set_progress(activity_state_ == "uploading" ? 1.0 : 0.0);
    for (const ReplicaReport& replica : reported_replicas_) {
      v1::ReplicaState* state = heartbeat->add_replicas();
      state->set_worker_id(options_.worker_id);
      state->set_job_id(replica.job_id);
      state->set_round(replica.round);
      state->set_weights_hash(replica.weights_hash);
    }
  }
  Status sent = control_->Send(envelope);
  if (!sent.ok()) spdlog::warn("worker '{}': sending Heartbeat to {}: {}", options_.worker_id, peer_, sent.message());
}

void WorkerDaemon::Enqueue(WorkItem item) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (item.is_start) {
    const std::string& job = item.start.job_id();
    const uint64_t round = item.start.round();
    bool duplicate = busy_job_ == job && busy_round_ == round;
    for (const WorkItem& queued : queue_)
      duplicate = duplicate || (queued.is_start && queued.start.job_id() == job && queued.start.round() == round);
    if (duplicate) {
      spdlog::debug("worker '{}': {}: already being worked on; repeated RoundStart ignored", options_.worker_id,
                    JobRound(job, round));
      return;
    }
  }
  queue_.push_back(std::move(item));
  queue_cv_.notify_one();
}

// ---------------------------------------------------------------------------------------------
// Compute thread: work connection and model work.

void WorkerDaemon::ComputeLoop() {
  while (!Stopping()) {
    WorkItem item;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      queue_cv_.wait_for(lock, std::chrono::milliseconds(200), [this] { return !queue_.empty() || Stopping(); });
      if (queue_.empty()) continue;
      item = std::move(queue_.front());
      queue_.pop_front();
      if (item.is_start) {
        busy_job_ = item.start.job_id();
        busy_round_ = item.start.round();
      }
    }
    if (item.is_start) {
      HandleRoundStart(item.start);
    } else {
      HandleRoundCommitted(item.committed);
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      busy_job_.clear();
      busy_round_ = 0;
    }
    SetActivity("idle", "", 0);
  }
}

void WorkerDaemon::SetActivity(const std::string& state, const std::string& job_id, uint64_t round) {
  std::lock_guard<std::mutex> lock(mutex_);
  activity_state_ = state;
  activity_job_ = job_id;
  activity_round_ = round;
}

uint64_t WorkerDaemon::CommittedSeen(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = committed_seen_.find(job_id);
  return it == committed_seen_.end() ? 0 : it->second;
}

void WorkerDaemon::PublishReplicas() {
  std::vector<ReplicaReport> reports;
  for (const auto& [job_id, replica] : replicas_)
    reports.push_back({job_id, replica->round(), replica->weights_hash_hex()});
  for (const ReplicaReport& report : finished_) {
    if (replicas_.count(report.job_id) == 0) reports.push_back(report);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  reported_replicas_ = std::move(reports);
}

void WorkerDaemon::DropReplica(const std::string& job_id) {
  replicas_.erase(job_id);
  PublishReplicas();
}

Result<Message> WorkerDaemon::WorkRequest(const Envelope& request, const std::string& what,
                                          const std::function<bool()>& give_up) {
  int attempt = 0;
  while (!Stopping()) {
    if (give_up && give_up()) return Status::FailedPrecondition(what + ": no longer needed");
    // A fresh message id per attempt, so a late reply to an earlier attempt is never taken for this one.
    Envelope envelope = request;
    envelope.set_message_id(transport::NewEnvelope(options_.worker_id).message_id());
    Status sent = work_->Send(envelope);
    Status failure = sent;
    if (sent.ok()) {
      auto deadline = Clock::now() + std::chrono::milliseconds(options_.request_timeout_ms);
      failure = Status::Timeout(what + ": no reply from " + peer_ + " within " +
                                std::to_string(options_.request_timeout_ms) + " ms");
      while (!Stopping() && Clock::now() < deadline) {
        Result<Message> reply = work_->Receive(kControlPollMs);
        if (!reply.ok()) continue;  // a timeout slice, or a rejected message (already logged)
        if (reply->envelope.body_case() == Envelope::kBulkRequest) {
          // The coordinator pulls an upload's payload before it answers: progress, so wait on.
          Status served = upload_objects_->Serve(*work_, *reply);
          if (!served.ok()) spdlog::warn("worker '{}': serving {}: {}", options_.worker_id, what, served.message());
          failure = Status::Timeout(what + ": no reply from " + peer_ + " within " +
                                    std::to_string(options_.request_timeout_ms) + " ms of the last chunk request");
          deadline = Clock::now() + std::chrono::milliseconds(options_.request_timeout_ms);
          continue;
        }
        if (reply->envelope.in_reply_to() != envelope.message_id()) continue;  // stale reply
        if (reply->envelope.body_case() == Envelope::kError) {
          failure = transport::StatusFromError(reply->envelope.error(), peer_).WithContext(what);
          break;
        }
        return std::move(*reply);
      }
    }
    if (Stopping()) break;
    if (!Retryable(failure)) return failure;
    if (++attempt == 1 || attempt % 10 == 0)
      spdlog::warn("worker '{}': {} (attempt {}); retrying", options_.worker_id, failure.message(), attempt);
    SleepUnlessStopping(kRetryPauseMs);
  }
  return Status::Unavailable(what + ": the worker is stopping");
}

Result<v1::CatchUpReply> WorkerDaemon::RequestCatchUp(const std::string& job_id, uint64_t from_round,
                                                      uint64_t to_round) {
  Envelope request = transport::NewEnvelope(options_.worker_id);
  v1::CatchUpRequest* body = request.mutable_catch_up_request();
  body->set_job_id(job_id);
  body->set_worker_id(options_.worker_id);
  body->set_from_round(from_round);
  body->set_to_round(to_round);
  spdlog::info("worker '{}': job {}: catching up from round {} to {}", options_.worker_id, job_id, from_round,
               to_round);
  TRIB_ASSIGN_OR_RETURN(Message reply, WorkRequest(request, "job " + job_id + ": CatchUpRequest"));
  if (reply.envelope.body_case() != Envelope::kCatchUpReply)
    return Status::InvalidArgument(peer_ + " answered a CatchUpRequest with '" +
                                   transport::BodyName(reply.envelope.body_case()) + "'");
  return std::move(*reply.envelope.mutable_catch_up_reply());
}

Result<std::string> WorkerDaemon::FetchAggregate(const std::string& job_id, uint64_t round,
                                                 const std::string& object_id, uint64_t size,
                                                 const std::string& checksum) {
  if (size > options_.max_dense_payload_bytes)
    return Status::InvalidArgument(peer_ + ": job " + job_id + " round " + std::to_string(round) + ": aggregate of " +
                                   std::to_string(size) + " bytes is above this worker's limit");
  transport::BufferSink sink(size);
  transport::FetchOptions fetch;
  fetch.expected_checksum = checksum;
  fetch.sender = options_.worker_id;
  spdlog::info("worker '{}': job {}: fetching the aggregate of round {} ({} bytes) as bulk object '{}'",
               options_.worker_id, job_id, round, size, object_id);
  TRIB_RETURN_IF_ERROR(transport::FetchObject(*work_, object_id, &sink, fetch)
                           .WithContext("job " + job_id + ": aggregate of round " + std::to_string(round)));
  if (sink.data().size() != size)
    return Status::Corruption(peer_ + ": job " + job_id + " round " + std::to_string(round) + ": aggregate object '" +
                              object_id + "' has " + std::to_string(sink.data().size()) + " bytes, announced " +
                              std::to_string(size));
  return sink.Release();
}

Status WorkerDaemon::ApplyRound(JobReplica& replica, uint64_t round, std::span<const uint8_t> aggregate,
                                const std::string& expected_hash) {
  TRIB_RETURN_IF_ERROR(replica.ApplyRound(round, aggregate, expected_hash));
  spdlog::info("job {} round {} applied (weights hash {})", replica.job_id(), round, replica.weights_hash_hex());
  PublishReplicas();
  return Status::OK();
}

Status WorkerDaemon::ApplyCatchUpReply(JobReplica& replica, const v1::CatchUpReply& reply, uint64_t target,
                                       bool* progressed) {
  *progressed = false;
  const std::string& job = replica.job_id();
  if (!reply.snapshot_object_id().empty() && reply.snapshot_round() > replica.round() &&
      reply.snapshot_round() <= target) {
    transport::BufferSink sink(replica.state_bytes());
    transport::FetchOptions fetch;
    fetch.expected_checksum = reply.snapshot_checksum();
    fetch.sender = options_.worker_id;
    spdlog::info("worker '{}': job {}: fetching the snapshot of round {} ({} bytes) from {}", options_.worker_id, job,
                 reply.snapshot_round(), reply.snapshot_size(), peer_);
    TRIB_RETURN_IF_ERROR(
        transport::FetchObject(*work_, reply.snapshot_object_id(), &sink, fetch)
            .WithContext("job " + job + ": snapshot of round " + std::to_string(reply.snapshot_round())));
    TRIB_RETURN_IF_ERROR(replica.LoadSnapshot(reply.snapshot_round(), sink.data(), reply.snapshot_weights_hash()));
    spdlog::info("job {} round {} applied (weights hash {}) from a snapshot", job, replica.round(),
                 replica.weights_hash_hex());
    PublishReplicas();
    *progressed = true;
  }
  for (const v1::CommittedAggregate& round : reply.rounds()) {
    if (round.round() <= replica.round()) continue;
    if (round.round() > target) break;
    if (round.round() != replica.round() + 1)
      return Status::InvalidArgument(peer_ + ": CatchUpReply for job " + job + " skips from round " +
                                     std::to_string(replica.round()) + " to " + std::to_string(round.round()));
    std::string fetched;
    const std::string* aggregate = &round.aggregate();
    if (round.aggregate().empty() && !round.aggregate_object_id().empty()) {
      TRIB_ASSIGN_OR_RETURN(fetched, FetchAggregate(job, round.round(), round.aggregate_object_id(),
                                                    round.aggregate_size(), round.aggregate_checksum()));
      aggregate = &fetched;
    }
    const auto* bytes = reinterpret_cast<const uint8_t*>(aggregate->data());
    TRIB_RETURN_IF_ERROR(ApplyRound(replica, round.round(), {bytes, aggregate->size()}, round.weights_hash()));
    *progressed = true;
  }
  return Status::OK();
}

Status WorkerDaemon::CatchUp(JobReplica& replica, uint64_t target) {
  while (replica.round() < target && !Stopping()) {
    TRIB_ASSIGN_OR_RETURN(v1::CatchUpReply reply, RequestCatchUp(replica.job_id(), replica.round(), target));
    bool progressed = false;
    TRIB_RETURN_IF_ERROR(ApplyCatchUpReply(replica, reply, target, &progressed));
    if (!progressed)
      return Status::FailedPrecondition(peer_ + ": CatchUpReply for job " + replica.job_id() + " from round " +
                                        std::to_string(replica.round()) + " brought no round (last committed " +
                                        std::to_string(reply.last_committed_round()) + ", wanted " +
                                        std::to_string(target) + ")");
  }
  if (replica.round() < target) return Status::Unavailable("job " + replica.job_id() + ": the worker is stopping");
  return Status::OK();
}

Result<JobReplica*> WorkerDaemon::EnsureReplica(const std::string& job_id, const JobSpec& spec) {
  auto it = replicas_.find(job_id);
  if (it != replicas_.end()) return it->second.get();
  const DatasetInfo* dataset = nullptr;
  for (const DatasetInfo& d : options_.datasets)
    if (d.name == spec.dataset) dataset = &d;
  if (dataset == nullptr)
    return Status::NotFound("job " + job_id + ": field 'data.dataset': this worker holds no dataset '" + spec.dataset +
                            "'");
  spdlog::info("worker '{}': job {}: loading base model {} and dataset '{}' ({})", options_.worker_id, job_id,
               spec.base_model, dataset->name, dataset->path);
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<JobReplica> replica, JobReplica::Create(job_id, spec, dataset->path));
  spdlog::info("worker '{}': job {}: replica ready ({} training rows, weights hash {})", options_.worker_id, job_id,
               replica->rows().size(), replica->weights_hash_hex());
  JobReplica* raw = replica.get();
  replicas_[job_id] = std::move(replica);
  PublishReplicas();
  return raw;
}

void WorkerDaemon::HandleRoundStart(const v1::RoundStart& start) {
  const std::string& job = start.job_id();
  const uint64_t round = start.round();
  const std::string where = "worker '" + options_.worker_id + "': " + JobRound(job, round);
  if (round == 0 || start.committed_round() + 1 != round) {
    spdlog::error("{}: RoundStart from {} has committed_round {} (must be round - 1); ignored", where, peer_,
                  start.committed_round());
    return;
  }
  auto previous = uploads_.find(job);
  if (previous != uploads_.end() && previous->second.round() == round) {
    spdlog::info("{}: repeated RoundStart: sending the same upload again", where);
    SetActivity("uploading", job, round);
    SendUpload(previous->second);
    return;
  }
  auto spec = ParseJobSpec(start.job_spec_yaml(), "job " + job + " spec");
  if (!spec.ok()) {
    spdlog::error("{}: {}", where, spec.status().message());
    return;
  }
  SetActivity("syncing", job, round);
  auto replica = EnsureReplica(job, *spec);
  if (!replica.ok()) {
    spdlog::error("{}: {}", where, replica.status().message());
    return;
  }
  if ((*replica)->round() > start.committed_round()) {
    spdlog::warn("{}: stale RoundStart: the replica already reflects round {}; ignored", where, (*replica)->round());
    return;
  }
  // Sync; a replica whose hash disagrees is rebuilt once from the base model by catch-up.
  for (int attempt = 0;; ++attempt) {
    Status synced = CatchUp(**replica, start.committed_round());
    if (synced.ok() && (start.weights_hash().empty() || (*replica)->weights_hash_hex() == start.weights_hash())) break;
    if (synced.ok()) {
      spdlog::error("{}: weights hash mismatch at round {}: replica {}, coordinator {}; rebuilding the replica", where,
                    start.committed_round(), (*replica)->weights_hash_hex(), start.weights_hash());
    } else {
      spdlog::error("{}: catching up: {}", where, synced.message());
    }
    DropReplica(job);
    if (attempt > 0 || Stopping() || !synced.ok()) return;
    replica = EnsureReplica(job, *spec);
    if (!replica.ok()) {
      spdlog::error("{}: {}", where, replica.status().message());
      return;
    }
  }
  JobReplica& r = **replica;
  if (r.method_info().dense_payload && r.state_bytes() > options_.max_dense_payload_bytes) {
    spdlog::error(
        "{}: refusing the tasklet: the {} payload would be {} bytes, above this worker's {} byte limit "
        "(use mode ferret or fewer trainable parameters)",
        where, spec->mode, r.state_bytes(), options_.max_dense_payload_bytes);
    return;
  }

  SetActivity("training", job, round);
  const auto started = Clock::now();
  auto result = r.RunRound(round, options_.worker_id);
  if (!result.ok()) {
    spdlog::error("{}: tasklet failed: {}", where, result.status().message());
    return;
  }
  const double train_seconds = std::chrono::duration<double>(Clock::now() - started).count();
  spdlog::info("{}: trained {} steps on {} rows in {:.2f} s (loss {:.4f}, payload {} bytes)", where,
               result->local_steps, result->num_samples, train_seconds, result->train_loss, result->payload.size());

  v1::UploadUpdate upload;
  upload.set_job_id(job);
  upload.set_round(round);
  upload.set_worker_id(options_.worker_id);
  upload.set_num_samples(result->num_samples);
  upload.set_loss(result->train_loss);
  upload.set_payload_kind(r.method_info().payload_kind);
  upload.set_payload_size(result->payload.size());
  upload.set_payload_checksum(transport::ObjectChecksum(result->payload.data(), result->payload.size()));
  upload.set_train_seconds(train_seconds);
  auto previous_upload = uploads_.find(job);
  if (previous_upload != uploads_.end() && !previous_upload->second.payload_object_id().empty())
    upload_objects_->RemoveObject(previous_upload->second.payload_object_id());
  if (result->payload.size() > options_.inline_payload_bytes) {
    // Too large for the envelope: the coordinator pulls it from this worker (served in WorkRequest).
    const std::string object_id = "upload/" + job + "/" + std::to_string(round) + "/" + options_.worker_id;
    auto bytes = std::make_shared<const std::string>(reinterpret_cast<const char*>(result->payload.data()),
                                                     result->payload.size());
    Status added = upload_objects_->AddObject(object_id, std::make_shared<transport::MemorySource>(std::move(bytes)));
    if (!added.ok()) {
      spdlog::error("{}: registering the upload as bulk object '{}': {}", where, object_id, added.message());
      return;
    }
    upload.set_payload_object_id(object_id);
  } else {
    upload.set_payload(std::string(reinterpret_cast<const char*>(result->payload.data()), result->payload.size()));
  }
  uploads_[job] = upload;
  SetActivity("uploading", job, round);
  SendUpload(upload);
}

void WorkerDaemon::SendUpload(const v1::UploadUpdate& upload) {
  const std::string& job = upload.job_id();
  const uint64_t round = upload.round();
  const std::string where = "worker '" + options_.worker_id + "': " + JobRound(job, round);
  auto committed = [this, &job, round] { return CommittedSeen(job) >= round; };
  bool said_retry = false;
  while (!Stopping()) {
    Envelope request = transport::NewEnvelope(options_.worker_id);
    *request.mutable_upload_update() = upload;
    auto reply = WorkRequest(request, JobRound(job, round) + ": UploadUpdate", committed);
    if (!reply.ok()) {
      if (committed()) {
        spdlog::info("{}: the round was committed before the upload was accepted", where);
      } else if (!Stopping()) {
        spdlog::error("{}: upload failed: {}", where, reply.status().message());
        if (!upload.payload_object_id().empty()) upload_objects_->RemoveObject(upload.payload_object_id());
        uploads_.erase(job);
      }
      return;
    }
    if (reply->envelope.body_case() != Envelope::kUploadAck) {
      spdlog::error("{}: {} answered the upload with '{}'", where, peer_,
                    transport::BodyName(reply->envelope.body_case()));
      return;
    }
    const v1::UploadAck& ack = reply->envelope.upload_ack();
    if (ack.accepted()) {
      spdlog::info("{}: upload of {} bytes accepted by {}{}{}", where, upload.payload_size(), peer_,
                   ack.duplicate() ? " (duplicate)" : "", ack.late() ? " (late)" : "");
      return;
    }
    if (!ack.retry()) {
      spdlog::error("{}: upload refused by {}: {}", where, peer_, ack.reason());
      if (!upload.payload_object_id().empty()) upload_objects_->RemoveObject(upload.payload_object_id());
      uploads_.erase(job);
      return;
    }
    if (!said_retry)
      spdlog::info("{}: {} cannot take the upload yet ({}); sending it again every second", where, peer_, ack.reason());
    said_retry = true;
    SleepUnlessStopping(kRetryPauseMs);
    if (committed()) {
      spdlog::info("{}: the round was committed before the upload was accepted", where);
      return;
    }
  }
}

void WorkerDaemon::HandleRoundCommitted(const v1::RoundCommitted& committed) {
  const std::string& job = committed.job_id();
  const uint64_t round = committed.round();
  const std::string where = "worker '" + options_.worker_id + "': " + JobRound(job, round);
  std::string aggregate = committed.aggregate();
  bool aggregate_ok = true;
  const bool aggregate_bulk = aggregate.empty() && !committed.aggregate_object_id().empty();
  if (aggregate_bulk) {
    // Fetched below, once the replica is at round - 1.
  } else if (!committed.aggregate_checksum().empty() &&
             transport::ObjectChecksum(aggregate.data(), aggregate.size()) != committed.aggregate_checksum()) {
    spdlog::error("{}: the aggregate's checksum does not match; getting the round by catch-up", where);
    aggregate_ok = false;
  }

  auto it = replicas_.find(job);
  if (it == replicas_.end()) {
    // No replica: load one when this worker holds the job's dataset, so it is warm when selected. The
    // CatchUpReply carries the spec that says which dataset that is.
    if (committed.job_finished() || foreign_jobs_.count(job) != 0) return;
    SetActivity("syncing", job, round);
    auto reply = RequestCatchUp(job, 0, round);
    if (!reply.ok()) {
      spdlog::error("{}: {}", where, reply.status().message());
      return;
    }
    auto spec = ParseJobSpec(reply->spec_yaml(), "job " + job + " spec");
    if (!spec.ok()) {
      spdlog::error("{}: {}", where, spec.status().message());
      return;
    }
    const bool holds = std::any_of(options_.datasets.begin(), options_.datasets.end(),
                                   [&](const DatasetInfo& d) { return d.name == spec->dataset; });
    if (!holds || reply->state().rfind("FINISHED", 0) == 0) {
      foreign_jobs_.insert(job);
      return;
    }
    auto replica = EnsureReplica(job, *spec);
    if (!replica.ok()) {
      spdlog::error("{}: {}", where, replica.status().message());
      foreign_jobs_.insert(job);  // its dataset cannot be used: do not retry on every round
      return;
    }
    bool progressed = false;
    Status synced = ApplyCatchUpReply(**replica, *reply, round, &progressed);
    if (synced.ok()) synced = CatchUp(**replica, round);
    if (!synced.ok()) {
      spdlog::error("{}: catching up: {}; dropping the replica", where, synced.message());
      DropReplica(job);
    }
    return;
  }

  JobReplica& replica = *it->second;
  Status status = Status::OK();
  if (replica.round() < round) {
    SetActivity("syncing", job, round);
    status = CatchUp(replica, aggregate_ok ? round - 1 : round);
    if (status.ok() && replica.round() + 1 == round && aggregate_bulk) {
      auto fetched = FetchAggregate(job, round, committed.aggregate_object_id(), committed.aggregate_size(),
                                    committed.aggregate_checksum());
      if (fetched.ok()) {
        aggregate = std::move(*fetched);
      } else {
        status = fetched.status();
      }
    }
    if (status.ok() && replica.round() + 1 == round) {
      const auto* bytes = reinterpret_cast<const uint8_t*>(aggregate.data());
      status = ApplyRound(replica, round, {bytes, aggregate.size()}, committed.weights_hash());
    }
    if (!status.ok()) {
      spdlog::error("worker '{}': {}; dropping the replica", options_.worker_id, status.message());
      DropReplica(job);
    }
  }
  auto upload = uploads_.find(job);
  if (upload != uploads_.end() && upload->second.round() <= round) {
    if (!upload->second.payload_object_id().empty()) upload_objects_->RemoveObject(upload->second.payload_object_id());
    uploads_.erase(upload);
  }
  if (committed.job_finished()) {
    auto live = replicas_.find(job);
    if (live != replicas_.end()) {
      finished_.push_back({job, live->second->round(), live->second->weights_hash_hex()});
      while (finished_.size() > kFinishedReplicasKept) finished_.pop_front();
      spdlog::info("worker '{}': job {} finished at round {}: replica freed", options_.worker_id, job,
                   live->second->round());
    }
    replicas_.erase(job);
    PublishReplicas();
  }
}

}  // namespace tributary
