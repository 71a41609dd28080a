// JobView: the one JSON rendering of a job's state and its committed rounds, shared by the
// coordinator's HTTP view (/api/jobs, /api/jobs/<id>) and the CLI's `--format json` (docs/cli.md lists
// the keys), and the one way a loss is printed in logs and tables. Numbers stay numbers; a loss that
// was not measured (NaN) is null. Built from the wire messages, so the CLI renders what the
// coordinator sent exactly as the coordinator renders its own state.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "checkpoint/store.h"
#include "coordinator/worker_registry.h"
#include "federation/job_spec.h"
#include "transport/message.h"

namespace tributary {

// "2.3456", or "-" for a loss that was not measured (NaN or infinite).
std::string FormatLoss(double loss);

// A job object: job_id, name, state, mode, round, total_rounds, participants, train_loss,
// heldout_loss, bytes_up, bytes_down, last_round_bytes_up, last_round_bytes_down, island_bytes,
// last_round_island_bytes (cluster mode: inside the islands; bytes_up/down cross them), dense_state_bytes,
// created_unix_ms, updated_unix_ms, error, submit_token, waiting, privacy, islands (cluster mode: islands
// training in the open round), island_reforms.
nlohmann::json JobStatusJson(const v1::JobStatus& job);

// A cluster-mode island of the open round: island_id, incarnation, members, leader, reported, reforms, reason.
nlohmann::json IslandStatusJson(const v1::IslandStatus& island);
// "island a  incarnation 17966  leader w1  members w1,w2  reported no  reforms 1", for `tributary status`.
std::string IslandStatusText(const v1::IslandStatus& island);

// The privacy section of a job status after `committed_rounds` rounds (mechanism not none).
v1::PrivacyStatus PrivacyStatusOf(const JobSpec& spec, uint64_t committed_rounds);
// "central: epsilon 1.23 at delta 1e-05 after 3 of 10 rounds (budget 8, 2.9 at the end)".
std::string PrivacyText(const v1::PrivacyStatus& privacy, uint64_t round, uint64_t total_rounds);

// A committed round: round, participants, train_loss, heldout_loss, bytes_up, bytes_down, island_bytes,
// committed_unix_ms, weights_hash, clients (worker_id, weight, anomaly_score, clip_scale, excluded).
nlohmann::json RoundSummaryJson(const v1::RoundSummary& round);

// The participants' aggregation reports of a committed round, as RoundSummary.clients.
void AddClientReports(const std::vector<checkpoint::RoundParticipant>& participants, v1::RoundSummary* summary);
// "w1 0.98, w2 1.03, w3 48.2 clipped x0.021 excluded": the clients of a round for logs and tables.
std::string ClientReportsText(const v1::RoundSummary& round);

// A job in detail: job (a job object), workers (the open round's participants), islands (the open
// round's, IslandStatusJson), rounds, replicas (worker_id, job_id, round, weights_hash), spec_yaml, in
// cluster mode plan (the last opened round's, ClusterPlanJson) or plan_error (why there is none),
// worker_problems (worker_id, round, reason, since_unix_ms: alive workers that report they cannot train it),
// and rounds_omitted / replicas_omitted when the reply was bounded (BoundJobDetail).
nlohmann::json JobDetailJson(const v1::GetJobReply& reply);

// What a GetJobReply may weigh (bytes): far below the transport's message limit, so `status` of a job with
// many rounds or replicas keeps working.
inline constexpr size_t kMaxJobDetailBytes = size_t{4} << 20;
// Bounds `reply` to max_bytes serialized: leaves out its oldest rounds, then (still too big) its last
// replicas, counting them in rounds_omitted and replicas_omitted.
void BoundJobDetail(size_t max_bytes, v1::GetJobReply* reply);

// A cluster-mode job's stored link matrix (/api/jobs/<id> "links", docs/placement.md "Measured links"):
// campaign, reason, updated_unix_ms, members, pairs (a, b, mbps, rtt_ms, measured_unix_ms) and uplinks
// (worker, mbps, rtt_ms, measured_unix_ms).
nlohmann::json JobLinksJson(const checkpoint::JobLinksRecord& links);

// The registered workers as the wire's ListWorkersReply (ascending worker id), as of now_ms: what
// `tributary workers` receives and what /api/workers renders, so both show the same thing.
v1::ListWorkersReply ListWorkersOf(const WorkerRegistry& registry, int64_t now_ms);

// A registered worker (/api/workers, `tributary workers --format json`): worker_id, hostname, state, job_id (null
// when idle) and round of its last heartbeat, liveness ("alive"; "late" once a heartbeat is missed, i.e. half an
// interval overdue; "dead" once declared dead), missed_heartbeats, last_seen_unix_ms, capabilities (cpu_cores,
// memory_bytes, software_version, modes, gpus: name/memory_bytes/compute_capability, nics:
// name/kind/speed_mbps/fabric_id, datasets: name/samples), calibrations (job_id, tokens_per_s, measured_unix_ms:
// the worker's calibrated compute per job, by job id).
nlohmann::json WorkerStatusJson(const v1::WorkerStatus& worker, int64_t now_ms, int64_t heartbeat_interval_ms);

// Every registered worker: now_unix_ms, heartbeat_interval_ms, heartbeat_misses and workers
// (WorkerStatusJson, ascending worker id).
nlohmann::json WorkersViewJson(const v1::ListWorkersReply& reply);
nlohmann::json WorkersViewJson(const WorkerRegistry& registry, int64_t now_ms);

}  // namespace tributary
