// The worker's replicas of its jobs and how they follow the committed rounds (compute thread only):
// a replica is built from the base model (worker/replica.h) when this worker holds the job's dataset,
// advanced by each pushed RoundCommitted (inline aggregate, or a bulk object fetched on the work
// connection, over parallel TCP streams when large: FetchServed, docs/multistream.md "In the daemons"),
// and brought up to date by catch-up when behind (CatchUpRequest: a snapshot and/or the
// committed aggregates; docs/protocol.md, "CatchUpRequest"). Every change is published to the
// StatusBoard for heartbeats; replicas of finished jobs are freed but their final (round, hash) stays
// reported (the last kFinishedReplicasKept of them). The first time a job's replica is built, its compute
// rate is calibrated (worker/calibration.h; once per job, not again when the replica is rebuilt) and
// published for heartbeats.
//
// A replica that fails to apply a round or disagrees with a committed weights hash is unusable: it is
// dropped (and rebuilt from the base model by catch-up when it is next needed).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>

#include "base/status.h"
#include "federation/job_spec.h"
#include "transport/message.h"
#include "transport/multistream_serve.h"
#include "transport/work_client.h"
#include "worker/replica.h"
#include "worker/status_board.h"
#include "worker/worker_options.h"

namespace tributary {

class ReplicaSync {
 public:
  static constexpr size_t kFinishedReplicasKept = 8;

  // None of the pointers is owned; all must outlive this. `work` is the compute thread's work connection.
  ReplicaSync(const WorkerOptions& options, transport::WorkClient* work, StatusBoard* board);

  // The replica of `job_id`: the existing one, or a new one (base model, round 0) when this worker holds
  // spec.dataset (NotFound naming the dataset otherwise; a load error names the file or field).
  Result<JobReplica*> Ensure(const std::string& job_id, const JobSpec& spec);
  // Brings the replica of `job_id` to committed round `target` by catch-up and, when `expected_hash` is
  // not empty, checks its weights hash. A replica whose hash disagrees is dropped and rebuilt once from
  // the base model; a second disagreement is Corruption. On any failure the replica is dropped.
  Result<JobReplica*> SyncTo(const std::string& job_id, const JobSpec& spec, uint64_t target,
                             const std::string& expected_hash);
  // Follows a pushed RoundCommitted: a replica behind it catches up to the round before and applies the
  // round's aggregate (catching up to the round itself when the inline aggregate's checksum is wrong);
  // without a replica, one is built and caught up when the job's dataset is here (the CatchUpReply
  // carries the spec that says which dataset that is), so it is warm when the job selects this worker.
  // On failure the replica is dropped and the error says so.
  Status OnRoundCommitted(const v1::RoundCommitted& committed);
  // Frees the replica of a finished job, keeping its final (round, hash) among the reported replicas.
  void FinishJob(const std::string& job_id);
  // Frees the replica of `job_id` (no report kept).
  void Drop(const std::string& job_id);

 private:
  // OnRoundCommitted without a replica.
  Status Warm(const v1::RoundCommitted& committed);
  // OnRoundCommitted with a replica behind the round; `aggregate_ok`: the inline aggregate can be used.
  Status Advance(JobReplica& replica, const v1::RoundCommitted& committed, bool aggregate_ok);
  // Brings the replica to committed round `target` with CatchUpRequests (snapshot + rounds).
  Status CatchUp(JobReplica& replica, uint64_t target);
  Result<v1::CatchUpReply> RequestCatchUp(const std::string& job_id, uint64_t from_round, uint64_t to_round);
  // Applies what one CatchUpReply brings (up to `target`); *progressed tells whether the round advanced.
  Status ApplyCatchUpReply(JobReplica& replica, const v1::CatchUpReply& reply, uint64_t target, bool* progressed);
  // Loads the reply's snapshot (fetched as a bulk object) into the replica.
  Status LoadSnapshot(JobReplica& replica, const v1::CatchUpReply& reply);
  Status ApplyRound(JobReplica& replica, uint64_t round, std::span<const uint8_t> aggregate,
                    const std::string& expected_hash);
  // Fetches a bulk aggregate (RoundCommitted / CatchUpReply) on the work connection.
  Result<std::string> FetchAggregate(const std::string& job_id, uint64_t round, const std::string& object_id,
                                     uint64_t size, const std::string& checksum);
  // Fetches a served object (aggregate, snapshot) of `size` bytes into memory: over parallel TCP streams when it
  // is at least options_.multistream_min_bytes, on the bulk path otherwise or when that fails (logged with why).
  // `what` names it ("job j1: aggregate of round 3").
  Result<std::string> FetchServed(const std::string& job_id, const std::string& object_id, uint64_t size,
                                  const std::string& checksum, const std::string& what);
  // The multistream attempt of FetchServed.
  Result<transport::MultistreamFetched> FetchOverStreams(const std::string& job_id, const std::string& object_id,
                                                         uint64_t size, const std::string& checksum);
  // Publishes the replicas (live and finished) to the StatusBoard.
  void Publish();
  // Publishes the compute rate of a new replica's job the first time: options_.calibration's override,
  // else a measurement. A failed measurement is logged and not retried (the planner then treats the
  // worker as unmeasured).
  void CalibrateOnce(JobReplica& replica);

  const WorkerOptions& options_;
  std::string name_;  // "worker 'w1'"
  std::string peer_;  // "coordinator tcp://..."
  transport::WorkClient* work_;
  StatusBoard* board_;
  std::map<std::string, std::unique_ptr<JobReplica>> replicas_;
  std::deque<ReplicaReport> finished_;  // newest last
  std::set<std::string> calibrated_;    // jobs whose compute rate was published (or failed)
  std::set<std::string> foreign_jobs_;  // jobs whose dataset this worker lacks (or cannot load)
  bool multistream_off_ = false;        // the coordinator does not offer multistream: ask no more
};

}  // namespace tributary
