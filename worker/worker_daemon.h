// The worker daemon (`tributary worker`): the worker side of docs/protocol.md.
//
// Two threads, each owning one Client to the coordinator's endpoint (a ZeroMQ socket is used by one
// thread only):
//   main (Run)  control connection: Register, a Heartbeat every interval, and the pushed RoundStart /
//               RoundCommitted, which it queues for the compute thread. It never waits for model work,
//               so heartbeats keep flowing while a round trains, catches up or uploads.
//   compute     work connection: CatchUpRequest, snapshot fetches (transport::FetchObject) and
//               UploadUpdate, each a blocking request; all model work (worker/replica.h).
// The compute thread publishes what it is doing (state, job, round) and its replicas (job, round, hash)
// under a mutex for the heartbeats; replicas of finished jobs are freed but their final (round, hash)
// stays reported (the last kFinishedReplicasKept of them).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "transport/bulk.h"
#include "transport/channel.h"
#include "transport/message.h"
#include "transport/security.h"
#include "worker/capabilities.h"
#include "worker/replica.h"

namespace tributary {

struct WorkerOptions {
  std::string worker_id;                         // required
  std::string coordinator;                       // tcp://HOST:PORT
  bool insecure = false;                         // no CURVE (logs a warning at every start)
  transport::KeyPair keys;                       // worker key pair (required unless insecure)
  std::string coordinator_public_key;            // Z85 (required unless insecure)
  std::vector<DatasetInfo> datasets;             // name, path, samples (already counted by the caller)
  WorkerCapabilities capabilities;               // as detected (an empty datasets field is filled from `datasets`)
  int threads = 0;                               // compute threads (0 = all cores) -> SetNumThreads
  int64_t default_heartbeat_interval_ms = 5000;  // until the RegisterAck says otherwise
  std::string software_version;                  // reported in the capabilities
  int request_timeout_ms = 10000;  // one work-connection request; Timeout/Unavailable are retried until stop
  // Dense (fedavg, lora) payloads above this are refused (a memory sanity limit).
  uint64_t max_dense_payload_bytes = kMaxDensePayloadBytes;
  // Uploads above this go as a bulk object the coordinator pulls (transport/bulk.h bounds it).
  uint64_t inline_payload_bytes = transport::kDefaultInlinePayloadBytes;
};

class WorkerDaemon {
 public:
  static constexpr size_t kFinishedReplicasKept = 8;

  // Validates the options and opens both Clients (connections are made in the background).
  static Result<std::unique_ptr<WorkerDaemon>> Create(WorkerOptions options);
  ~WorkerDaemon();
  WorkerDaemon(const WorkerDaemon&) = delete;
  WorkerDaemon& operator=(const WorkerDaemon&) = delete;

  // Runs until *stop becomes true (SIGTERM/SIGINT handler sets it); returns OK on a clean stop, an error
  // when the coordinator refuses the registration (the worker id is held by another key, a bad field).
  Status Run(const std::atomic<bool>* stop);

 private:
  struct ReplicaReport {
    std::string job_id;
    uint64_t round = 0;
    std::string weights_hash;
  };
  // A pushed message waiting for the compute thread.
  struct WorkItem {
    bool is_start = false;
    v1::RoundStart start;
    v1::RoundCommitted committed;
  };

  explicit WorkerDaemon(WorkerOptions options) : options_(std::move(options)) {}
  bool Stopping() const { return stopping_.load() || (stop_ != nullptr && stop_->load()); }
  // Sleeps up to `ms`, returning early when stopping.
  void SleepUnlessStopping(int ms) const;

  // Main thread (control connection).
  Status ControlLoop();
  void SendRegister();
  void SendHeartbeat();
  // Queues a push for the compute thread (a RoundStart already queued or being worked on is dropped).
  void Enqueue(WorkItem item);

  // Compute thread (work connection).
  void ComputeLoop();
  void HandleRoundStart(const v1::RoundStart& start);
  void HandleRoundCommitted(const v1::RoundCommitted& committed);
  // Replica of a job for a RoundStart: the existing one, or a new one when this worker holds the dataset.
  Result<JobReplica*> EnsureReplica(const std::string& job_id, const JobSpec& spec);
  // Brings the replica to committed round `target` with CatchUpRequests (snapshot + rounds).
  Status CatchUp(JobReplica& replica, uint64_t target);
  Result<v1::CatchUpReply> RequestCatchUp(const std::string& job_id, uint64_t from_round, uint64_t to_round);
  // Applies what one CatchUpReply brings (up to `target`); *progressed tells whether the round advanced.
  Status ApplyCatchUpReply(JobReplica& replica, const v1::CatchUpReply& reply, uint64_t target, bool* progressed);
  Status ApplyRound(JobReplica& replica, uint64_t round, std::span<const uint8_t> aggregate,
                    const std::string& expected_hash);
  // Sends the upload until accepted, refused, the round is committed, or stop (UploadAck.retry: every second).
  void SendUpload(const v1::UploadUpdate& upload);
  // Fetches a bulk aggregate (RoundCommitted / CatchUpReply) on the work connection.
  Result<std::string> FetchAggregate(const std::string& job_id, uint64_t round, const std::string& object_id,
                                     uint64_t size, const std::string& checksum);
  // A request on the work connection, retried on Timeout / Unavailable until stop or `give_up` says so.
  // BulkRequests arriving meanwhile (the coordinator pulling an upload's payload) are served from
  // upload_objects_, and each one restarts the reply timeout.
  Result<transport::Message> WorkRequest(const transport::Envelope& request, const std::string& what,
                                         const std::function<bool()>& give_up = nullptr);
  void DropReplica(const std::string& job_id);
  // Publishes the replicas (live and finished) and the current activity for heartbeats.
  void PublishReplicas();
  void SetActivity(const std::string& state, const std::string& job_id, uint64_t round);
  uint64_t CommittedSeen(const std::string& job_id);

  WorkerOptions options_;
  std::string peer_;  // "coordinator tcp://..." for logs
  std::unique_ptr<transport::Client> control_;
  std::unique_ptr<transport::Client> work_;
  const std::atomic<bool>* stop_ = nullptr;
  std::atomic<bool> stopping_{false};
  std::thread compute_thread_;

  // Main thread only.
  bool registered_ = false;
  uint64_t register_message_id_ = 0;
  uint64_t heartbeat_sequence_ = 0;
  int64_t heartbeat_interval_ms_ = 5000;
  int64_t heartbeat_miss_limit_ = 3;

  // Compute thread only.
  std::map<std::string, std::unique_ptr<JobReplica>> replicas_;
  std::deque<ReplicaReport> finished_;               // newest last
  std::map<std::string, v1::UploadUpdate> uploads_;  // job -> last upload (re-sent on a repeat)
  // Payloads of uploads sent as bulk objects ("upload/<job>/<round>/<worker>"), served to the coordinator.
  std::unique_ptr<transport::BulkSender> upload_objects_;
  std::set<std::string> foreign_jobs_;  // jobs whose dataset this worker lacks

  // Shared, under mutex_.
  std::mutex mutex_;
  std::condition_variable queue_cv_;
  std::deque<WorkItem> queue_;
  std::string busy_job_;  // RoundStart being worked on
  uint64_t busy_round_ = 0;
  std::string activity_state_ = "idle";
  std::string activity_job_;
  uint64_t activity_round_ = 0;
  std::vector<ReplicaReport> reported_replicas_;
  std::map<std::string, uint64_t> committed_seen_;  // job -> newest RoundCommitted pushed
};

}  // namespace tributary
