// WorkerRegistry: the workers the coordinator knows (docs/protocol.md, "Worker <-> coordinator"):
// registration (a worker id belongs to the CURVE key that first registered it, kept in the store),
// the inventory each worker's capabilities make (scheduler/nic.h's NIC vocabulary, fabric_id kept),
// heartbeats, liveness, the replicas each worker reports, and each worker's latest measured compute rate
// per job (worker/calibration.h; the cluster planner's tokens/s). Not thread-safe: the coordinator's loop
// thread owns it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/status.h"
#include "checkpoint/store.h"
#include "scheduler/scheduler.h"
#include "transport/channel.h"

namespace tributary {

struct WorkerEntry {
  std::string worker_id;
  std::string routing_id;  // of the control connection (pushes go there)
  std::string public_key;  // CURVE key it registered with ("" when insecure)
  std::string hostname;
  std::string peer;  // PeerInfo::Describe, for logs
  WorkerInventory inventory;
  v1::Capabilities capabilities;  // as registered (the dashboard shows them; inventory keeps the placeable part)
  std::string state;              // from the last heartbeat
  std::string job_id;             // the tasklet of the last heartbeat ("" when idle) and its round
  uint64_t round = 0;
  std::vector<v1::ReplicaState> replicas;
  std::vector<v1::JobProblem> problems;  // jobs it reports it cannot train (last heartbeat)
  // Latest accepted compute calibration per job (job id -> it); forgotten when the worker registers
  // again (a new process measures afresh and its heartbeats resend what it holds).
  std::map<std::string, v1::JobCalibration> calibrations;
  std::map<std::string, int64_t> refused_calibrations;  // job -> measured_unix_ms last refused (logged once)
  bool declared_dead = false;
};

struct WorkerRegistryOptions {
  bool insecure = false;  // any key may use any worker id
  int64_t heartbeat_interval_ms = 5000;
  int heartbeat_misses = 3;  // dead after this many missed heartbeats
  // A worker that is not alive is forgotten this long after its last heartbeat (its id stays bound to its
  // key in the store); 0: never. Ids that registered once and never came back do not pile up.
  int64_t forget_after_ms = 3600 * 1000;
};

// The scheduler's inventory of a worker from its reported capabilities: NICs of an unknown fabric or
// speed (down, virtual) are left out, the others keep their fabric_id; datasets by name.
WorkerInventory InventoryFromCapabilities(const std::string& worker_id, const v1::Capabilities& caps);

class WorkerRegistry {
 public:
  // `store` (not owned) keeps each worker id's key across restarts.
  WorkerRegistry(checkpoint::CheckpointStore* store, WorkerRegistryOptions options);
  WorkerRegistry(const WorkerRegistry&) = delete;
  WorkerRegistry& operator=(const WorkerRegistry&) = delete;

  // Registers, or re-registers, the worker of a Register message sent by `peer`: its id must be
  // 1..kMaxIdBytes bytes without NUL and (unless insecure) belong to peer's key or to no key yet, and
  // its capabilities must make a valid inventory. The worker is alive from now_ms and pushes go to
  // peer's routing id. The error message is the RegisterAck's reason: InvalidArgument,
  // PermissionDenied (another key), or the store's error.
  Result<const WorkerEntry*> Register(const v1::Register& reg, const transport::PeerInfo& peer, int64_t now_ms);

  // Register in two steps, so the store's synced write can happen off the caller's thread (the coordinator
  // writes many registrations in one batch: coordinator/registration_writer.h). BeginRegister makes Register's
  // checks and returns the record to write; until FinishRegister or AbandonRegister the id is claimed by peer's
  // key, and a registration of that id by another key is refused (PermissionDenied). FinishRegister, once the
  // record is durable, makes the worker registered exactly as Register does; AbandonRegister, when the write
  // failed, drops the claim and changes nothing else. Each BeginRegister that returned OK needs exactly one of them.
  Result<checkpoint::WorkerRecord> BeginRegister(const v1::Register& reg, const transport::PeerInfo& peer,
                                                 int64_t now_ms);
  const WorkerEntry* FinishRegister(const v1::Register& reg, const transport::PeerInfo& peer, int64_t now_ms);
  void AbandonRegister(const std::string& worker_id);

  // A Heartbeat of an authorized worker (errors as Authorize): alive again as of now_ms, its state and
  // the replicas it reports; pushes go to the heartbeat's connection from now on. InvalidArgument naming
  // the worker for more than kMaxHeartbeatReplicas replicas or an oversized field: a heartbeat stays
  // small, and what `status` shows of it stays bounded. State "leaving" (a worker's last heartbeat
  // before it exits) makes the worker not alive at once, its replicas forgotten.
  Result<const WorkerEntry*> Heartbeat(const v1::Heartbeat& heartbeat, const transport::PeerInfo& peer, int64_t now_ms);
  static constexpr int kMaxHeartbeatReplicas = 64;
  // Calibrations: a heartbeat carries at most this many; a worker keeps the newest this many jobs' rates.
  static constexpr int kMaxCalibrations = 64;
  // A rate above this is refused as absurd (no worker trains a billion tokens per second).
  static constexpr double kMaxTokensPerSecond = 1e9;
  // Problems (jobs it cannot train) a heartbeat may carry, and the longest reason kept (longer ones are cut).
  static constexpr int kMaxProblems = 16;
  static constexpr size_t kMaxProblemReasonBytes = 512;

  // The registered worker a request claims to come from, checked against the sender's key: NotFound
  // when it is not registered (it should register again), PermissionDenied when it registered with
  // another key (unless insecure).
  Result<const WorkerEntry*> Authorize(const std::string& worker_id, const transport::PeerInfo& peer) const;

  // Declares the alive workers without a heartbeat for heartbeat_misses intervals dead (logged once), and
  // forgets the workers not alive for forget_after_ms (logged). Returns how many workers are alive.
  int64_t MarkDead(int64_t now_ms);
  // The caller's loop could not read messages for `stall_ms` until now_ms (a slow step, a stopped process):
  // the alive workers' last heartbeats move that much later (at most to now_ms), so only heartbeats missed
  // while the loop read decide liveness.
  void ExcuseStall(int64_t stall_ms, int64_t now_ms);
  // The alive worker whose pushes go to `routing_id` stopped reading them (transport::Server::TakeSlowPeers):
  // it is declared dead at once, its replicas forgotten (its next heartbeat makes it alive again). Returns
  // its id, or "" when no alive worker uses that connection (a CLI client, a stranger).
  std::string MarkNotReading(const std::string& routing_id);

  // nullptr when the worker is not registered.
  const WorkerEntry* Find(const std::string& worker_id) const;
  // The inventories of the alive workers (ascending worker id), for round planning.
  std::vector<WorkerInventory> AliveInventory() const;
  // The alive workers (ascending worker id), for broadcasts.
  std::vector<const WorkerEntry*> Alive() const;
  // Every registered worker, dead ones included (ascending worker id), for the dashboard.
  std::vector<const WorkerEntry*> All() const;
  // The replicas of `job_id` the workers reported in their last heartbeats (worker_id set).
  std::vector<v1::ReplicaState> ReplicasOf(const std::string& job_id) const;
  // The problems alive workers reported for `job_id` in their last heartbeats (worker_id set).
  std::vector<v1::JobProblem> ProblemsOf(const std::string& job_id) const;
  // worker -> tokens/s of `job_id` as the workers last calibrated it (alive or not).
  std::map<std::string, double> TokensPerSecondOf(const std::string& job_id) const;
  const WorkerRegistryOptions& options() const { return options_; }

  // Grows whenever what ReplicasOf returns may have changed (a registration, a heartbeat with other
  // replicas), so a view of it is rebuilt only then.
  uint64_t version() const { return version_; }
  // Grows on every registration, heartbeat and death, so the workers view follows liveness.
  uint64_t liveness_version() const { return liveness_version_; }

 private:
  checkpoint::CheckpointStore* store_;
  WorkerRegistryOptions options_;
  // Keeps the heartbeat's calibrations that are newer than the kept ones; a rate that is not finite,
  // not positive or above kMaxTokensPerSecond is refused with a log line naming the worker.
  void KeepCalibrations(WorkerEntry& worker, const v1::Heartbeat& heartbeat);

  // Drops one claim of BeginRegister.
  void ReleaseClaim(const std::string& worker_id);

  std::map<std::string, WorkerEntry> workers_;
  struct Claim {
    std::string public_key;
    int registrations = 0;  // begun and not finished or abandoned
  };
  std::map<std::string, Claim> claims_;  // worker id -> the key registering it
  uint64_t version_ = 0;
  uint64_t liveness_version_ = 0;
};

}  // namespace tributary
