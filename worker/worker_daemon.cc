#include "worker/worker_daemon.h"

#include <spdlog/spdlog.h>

#include <set>

#include "base/parallel.h"
#include "base/utf8.h"

namespace tributary {
namespace {

constexpr int kRetryPauseMs = 1000;  // between retries of a work-connection request
constexpr int kLeavingAckWaitMs = 500;
// After the drain timed out: how long the compute thread gets to notice the hard stop (its requests
// give up within a poll) before the tasklet counts as not interruptible.
constexpr int kHardStopGraceMs = 2000;

Status ValidateOptions(const WorkerOptions& options) {
  if (options.worker_id.empty()) return Status::InvalidArgument("worker: the worker id (worker.name) is empty");
  // Ids and names travel in protobuf string fields: a message with invalid UTF-8 cannot be encoded, and
  // the coordinator would never hear from this worker.
  TRIB_RETURN_IF_ERROR(CheckUtf8(options.worker_id, "worker: the worker id (worker.name)"));
  TRIB_RETURN_IF_ERROR(CheckUtf8(options.capabilities.hostname, "worker: the hostname"));
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
    TRIB_RETURN_IF_ERROR(CheckUtf8(dataset.name, "worker: dataset name"));
    if (!names.insert(dataset.name).second)
      return Status::InvalidArgument("worker: dataset '" + dataset.name + "' is given twice");
  }
  if (options.threads < 0)
    return Status::InvalidArgument("worker: threads must be >= 0, got " + std::to_string(options.threads));
  if (options.default_heartbeat_interval_ms <= 0)
    return Status::InvalidArgument("worker: heartbeat interval must be > 0 ms");
  if (options.request_timeout_ms <= 0) return Status::InvalidArgument("worker: request timeout must be > 0 ms");
  if (options.drain_timeout_ms < 0)
    return Status::InvalidArgument("worker: worker.drain_timeout_s must be >= 0, got " +
                                   std::to_string(options.drain_timeout_ms / 1000.0));
  if (options.inline_payload_bytes < transport::kMinInlinePayloadBytes ||
      options.inline_payload_bytes > transport::kMaxInlinePayloadBytes)
    return Status::InvalidArgument(
        "worker: worker.inline_payload_bytes must be " + std::to_string(transport::kMinInlinePayloadBytes) + ".." +
        std::to_string(transport::kMaxInlinePayloadBytes) + ", got " + std::to_string(options.inline_payload_bytes));
  return Status::OK();
}

}  // namespace

Result<std::unique_ptr<WorkerDaemon>> WorkerDaemon::Create(WorkerOptions options) {
  TRIB_RETURN_IF_ERROR(ValidateOptions(options));
  if (options.capabilities.datasets.empty()) options.capabilities.datasets = options.datasets;
  if (options.threads > 0) SetNumThreads(options.threads);

  std::unique_ptr<WorkerDaemon> daemon(new WorkerDaemon(std::move(options)));
  const WorkerOptions& o = daemon->options_;
  transport::ClientOptions client;
  client.insecure = o.insecure;
  client.keys = o.keys;
  client.server_public_key = o.coordinator_public_key;
  client.name = "worker '" + o.worker_id + "' control";
  TRIB_ASSIGN_OR_RETURN(daemon->control_, transport::Client::Connect(o.coordinator, client));
  client.name = "worker '" + o.worker_id + "' work";
  TRIB_ASSIGN_OR_RETURN(daemon->work_, transport::Client::Connect(o.coordinator, client));
  client.name = "worker '" + o.worker_id + "' logs";
  TRIB_ASSIGN_OR_RETURN(daemon->logs_, transport::Client::Connect(o.coordinator, client));
  daemon->Wire();
  return daemon;
}

void WorkerDaemon::Wire() {
  const WorkerOptions& o = options_;
  const std::string name = "worker '" + o.worker_id + "'";
  auto stopping = [this] { return Stopping(); };
  upload_objects_ = std::make_unique<transport::BulkSender>(name + " uploads");
  transport::WorkClientOptions work;
  work.name = name;
  work.peer = "coordinator " + o.coordinator;
  work.sender = o.worker_id;
  work.reply_timeout_ms = o.request_timeout_ms;
  work.retry_pause_ms = kRetryPauseMs;
  work.stopping = stopping;
  work_client_ = std::make_unique<transport::WorkClient>(work_.get(), upload_objects_.get(), std::move(work));
  queue_ = std::make_unique<WorkQueue>(name);
  board_ = std::make_unique<StatusBoard>();
  sync_ = std::make_unique<ReplicaSync>(o, work_client_.get(), board_.get());
  uploader_ = std::make_unique<Uploader>(o, work_client_.get(), upload_objects_.get(), queue_.get());
  secagg_ = std::make_unique<SecAggSession>(o, work_client_.get(), queue_.get());
  island_ = std::make_unique<IslandSession>(o, work_client_.get());
  // The compute loop takes no new item once a drain was requested; its requests retry until the hard stop.
  compute_ = std::make_unique<ComputeLoop>(o, queue_.get(), board_.get(), sync_.get(), uploader_.get(), secagg_.get(),
                                           island_.get(), [this] { return DrainRequested() || Stopping(); });
  control_loop_ = std::make_unique<ControlLoop>(
      o, control_.get(), queue_.get(), board_.get(), [this] { return ControlLoopDone(); },
      [this] { return DrainRequested(); });
  prober_ = std::make_unique<LinkProber>(o.worker_id, o.island_address, o.coordinator, board_.get());
  control_loop_->SetLinkProber(prober_.get());
  log_capture_ = std::make_unique<JobLogCapture>();
  log_shipper_ = std::make_unique<LogShipper>(o.worker_id, logs_.get(), log_capture_.get(), o.request_timeout_ms);
}

WorkerDaemon::~WorkerDaemon() {
  stopping_ = true;
  if (queue_) queue_->Close();
  if (compute_thread_.joinable()) compute_thread_.join();
  if (log_shipper_) log_shipper_->Stop();
}

Status WorkerDaemon::Run(const std::atomic<bool>* stop) {
  stop_ = stop;
  const std::string peer = "coordinator " + options_.coordinator;
  if (options_.insecure)
    spdlog::warn("worker '{}': INSECURE mode: CURVE is off, the traffic with {} is neither encrypted nor authenticated",
                 options_.worker_id, peer);
  spdlog::info("worker '{}' starting: {} dataset(s), {} compute thread(s), {}", options_.worker_id,
               options_.datasets.size(), NumThreads(), peer);
  log_shipper_->Start();
  compute_thread_ = std::thread([this] {
    {
      JobLogThread mark(log_capture_.get(), board_.get());
      compute_->Run();
    }
    compute_done_ = true;
  });
  Status result;
  {
    JobLogThread mark(log_capture_.get(), board_.get());
    result = control_loop_->Run();
  }
  if (result.ok()) control_loop_->SendLeaving(kLeavingAckWaitMs);
  stopping_ = true;
  queue_->Close();
  if (!WaitComputeDone(kHardStopGraceMs)) {
    spdlog::warn("worker '{}': the drain timed out inside a tasklet that cannot be interrupted: exiting without it",
                 options_.worker_id);
    return Status::Timeout("worker '" + options_.worker_id + "': drain timed out after " +
                           std::to_string(options_.drain_timeout_ms / 1000) + " s");
  }
  compute_thread_.join();
  log_shipper_->Stop();
  spdlog::info("worker '{}' stopped{}", options_.worker_id,
               drain_timed_out_ ? " (the drain timed out: the item in progress was given up)" : "");
  return result;
}

bool WorkerDaemon::ControlLoopDone() {
  if (Stopping() || compute_done_.load()) return true;
  if (!DrainRequested()) return false;
  if (options_.drain_timeout_ms > 0) {
    const auto now = std::chrono::steady_clock::now();
    if (drain_deadline_ == std::chrono::steady_clock::time_point{}) {
      drain_deadline_ = now + std::chrono::milliseconds(options_.drain_timeout_ms);
      spdlog::info("worker '{}': stop requested: draining (the item in progress may finish within {} s)",
                   options_.worker_id, options_.drain_timeout_ms / 1000);
    }
    if (now < drain_deadline_) return false;
    spdlog::warn("worker '{}': drain timeout ({} s): giving up the item in progress", options_.worker_id,
                 options_.drain_timeout_ms / 1000);
    drain_timed_out_ = true;
  }
  stopping_ = true;  // a hard stop: the compute thread's requests give up
  return true;
}

bool WorkerDaemon::WaitComputeDone(int ms) const {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (!compute_done_.load()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace tributary
