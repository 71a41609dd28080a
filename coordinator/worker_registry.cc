#include "coordinator/worker_registry.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "base/utf8.h"
#include "scheduler/nic.h"

namespace tributary {

WorkerInventory InventoryFromCapabilities(const std::string& worker_id, const v1::Capabilities& caps) {
  WorkerInventory inv;
  inv.worker_id = worker_id;
  inv.cores = static_cast<int>(caps.cpu_cores());
  inv.memory_bytes = static_cast<int64_t>(caps.memory_bytes());
  inv.gpu_count = caps.gpus_size();
  for (const v1::Gpu& gpu : caps.gpus()) {
    const auto bytes = static_cast<int64_t>(gpu.memory_bytes());
    if (inv.gpu_memory_bytes == 0 || bytes < inv.gpu_memory_bytes) inv.gpu_memory_bytes = bytes;
  }
  for (const v1::Nic& nic : caps.nics()) {
    // Unknown fabrics and links of unknown speed (down, virtual) do not count for placement.
    auto fabric = ParseNicFabric(nic.kind());
    if (!fabric.ok()) continue;
    NicInfo info{nic.name(), *fabric, static_cast<int64_t>(std::min<uint64_t>(nic.speed_mbps(), INT64_MAX)), true,
                 nic.fabric_id()};
    if (IsPlaceable(info)) inv.nics.push_back(std::move(info));
  }
  for (const v1::DatasetInfo& d : caps.datasets()) inv.datasets[d.name()] = static_cast<int64_t>(d.samples());
  return inv;
}

namespace {

// "eth0 ethernet 10000 Mb/s fabric rack-1, ib0 ..." or "none", for the registration log line.
std::string DescribeNics(const std::vector<NicInfo>& nics) {
  std::string out;
  for (const NicInfo& nic : nics) {
    out += (out.empty() ? "" : ", ") + nic.name + " " + NicFabricName(nic.fabric) + " " +
           std::to_string(nic.speed_mbps) + " Mb/s";
    if (!nic.fabric_id.empty()) out += " fabric " + nic.fabric_id;
  }
  return out.empty() ? "none" : out;
}

bool SameReplicas(const std::vector<v1::ReplicaState>& a,
                  const google::protobuf::RepeatedPtrField<v1::ReplicaState>& b) {
  if (a.size() != static_cast<size_t>(b.size())) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].SerializeAsString() != b[static_cast<int>(i)].SerializeAsString()) return false;
  }
  return true;
}

}  // namespace

WorkerRegistry::WorkerRegistry(checkpoint::CheckpointStore* store, WorkerRegistryOptions options)
    : store_(store), options_(options) {}

Result<const WorkerEntry*> WorkerRegistry::Register(const v1::Register& reg, const transport::PeerInfo& peer,
                                                    int64_t now_ms) {
  TRIB_ASSIGN_OR_RETURN(checkpoint::WorkerRecord record, BeginRegister(reg, peer, now_ms));
  Status put = store_->PutWorker(record);
  if (!put.ok()) {
    AbandonRegister(record.worker_id);
    return Status(put.code(), "coordinator store: " + put.message());
  }
  return FinishRegister(reg, peer, now_ms);
}

Result<checkpoint::WorkerRecord> WorkerRegistry::BeginRegister(const v1::Register& reg, const transport::PeerInfo& peer,
                                                               int64_t now_ms) {
  const std::string& id = reg.worker_id();
  if (id.empty() || id.size() > checkpoint::kMaxIdBytes || id.find('\0') != std::string::npos)
    return Status::InvalidArgument("worker_id must be 1.." + std::to_string(checkpoint::kMaxIdBytes) +
                                   " bytes without NUL");
  // A worker id belongs to the key that first registered it (unless the coordinator is insecure); a
  // registration still being written claims it already.
  auto claim = claims_.find(id);
  if (!options_.insecure) {
    if (claim != claims_.end() && claim->second.public_key != peer.public_key)
      return Status::PermissionDenied("worker id '" + id + "' is being registered with another key");
    auto stored = store_->GetWorker(id);
    if (stored.ok() && !stored->public_key.empty() && stored->public_key != peer.public_key)
      return Status::PermissionDenied("worker id '" + id + "' is registered with another key");
  }
  TRIB_RETURN_IF_ERROR(ValidateInventory(InventoryFromCapabilities(id, reg.capabilities())));

  checkpoint::WorkerRecord record;
  record.worker_id = id;
  record.public_key = peer.public_key;
  record.capabilities = reg.capabilities().SerializeAsString();
  record.last_seen_unix_ms = now_ms;
  if (claim == claims_.end()) claim = claims_.emplace(id, Claim{peer.public_key, 0}).first;
  ++claim->second.registrations;
  return record;
}

void WorkerRegistry::ReleaseClaim(const std::string& worker_id) {
  auto claim = claims_.find(worker_id);
  if (claim != claims_.end() && --claim->second.registrations <= 0) claims_.erase(claim);
}

void WorkerRegistry::AbandonRegister(const std::string& worker_id) {
  ReleaseClaim(worker_id);
}

const WorkerEntry* WorkerRegistry::FinishRegister(const v1::Register& reg, const transport::PeerInfo& peer,
                                                  int64_t now_ms) {
  const std::string& id = reg.worker_id();
  ReleaseClaim(id);
  WorkerInventory inventory = InventoryFromCapabilities(id, reg.capabilities());
  WorkerEntry& worker = workers_[id];
  const bool known = !worker.worker_id.empty();
  worker.worker_id = id;
  worker.routing_id = peer.routing_id;
  worker.public_key = peer.public_key;
  worker.hostname = reg.hostname();
  worker.peer = peer.Describe();
  inventory.alive = true;
  inventory.last_heartbeat_ms = now_ms;
  worker.inventory = inventory;
  worker.capabilities = reg.capabilities();
  worker.calibrations.clear();
  worker.refused_calibrations.clear();
  worker.declared_dead = false;
  ++version_;
  ++liveness_version_;
  std::string datasets;
  for (const auto& [name, samples] : inventory.datasets)
    datasets += (datasets.empty() ? "" : ", ") + name + "=" + std::to_string(samples);
  spdlog::info("coordinator: worker '{}' {} from {} ({} cores, {:.1f} GiB, datasets: {}, NICs: {})", id,
               known ? "re-registered" : "registered", peer.Describe(), inventory.cores,
               static_cast<double>(inventory.memory_bytes) / (1 << 30), datasets.empty() ? "none" : datasets,
               DescribeNics(inventory.nics));
  return &worker;
}

namespace {

Status CheckHeartbeatSize(const v1::Heartbeat& heartbeat) {
  const std::string who = "heartbeat from worker '" + heartbeat.worker_id() + "': ";
  if (heartbeat.replicas_size() > WorkerRegistry::kMaxHeartbeatReplicas)
    return Status::InvalidArgument(who + std::to_string(heartbeat.replicas_size()) + " replicas, at most " +
                                   std::to_string(WorkerRegistry::kMaxHeartbeatReplicas));
  if (heartbeat.calibrations_size() > WorkerRegistry::kMaxCalibrations)
    return Status::InvalidArgument(who + std::to_string(heartbeat.calibrations_size()) + " calibrations, at most " +
                                   std::to_string(WorkerRegistry::kMaxCalibrations));
  for (const v1::JobCalibration& c : heartbeat.calibrations())
    if (c.job_id().empty() || c.job_id().size() > checkpoint::kMaxIdBytes)
      return Status::InvalidArgument(who + "a calibration has an empty or oversized job id");
  if (heartbeat.problems_size() > WorkerRegistry::kMaxProblems)
    return Status::InvalidArgument(who + std::to_string(heartbeat.problems_size()) + " problems, at most " +
                                   std::to_string(WorkerRegistry::kMaxProblems));
  for (const v1::JobProblem& p : heartbeat.problems())
    if (p.job_id().empty() || p.job_id().size() > checkpoint::kMaxIdBytes)
      return Status::InvalidArgument(who + "a problem has an empty or oversized job id");
  if (heartbeat.state().size() > 256) return Status::InvalidArgument(who + "state is longer than 256 bytes");
  if (heartbeat.job_id().size() > checkpoint::kMaxIdBytes) return Status::InvalidArgument(who + "oversized job id");
  for (const v1::ReplicaState& r : heartbeat.replicas())
    if (r.job_id().size() > checkpoint::kMaxIdBytes || r.weights_hash().size() > 64 ||
        r.worker_id().size() > checkpoint::kMaxIdBytes)
      return Status::InvalidArgument(who + "a replica has an oversized job id, weights hash or worker id");
  return Status::OK();
}

}  // namespace

Result<const WorkerEntry*> WorkerRegistry::Heartbeat(const v1::Heartbeat& heartbeat, const transport::PeerInfo& peer,
                                                     int64_t now_ms) {
  TRIB_RETURN_IF_ERROR(Authorize(heartbeat.worker_id(), peer).status());
  TRIB_RETURN_IF_ERROR(CheckHeartbeatSize(heartbeat));
  WorkerEntry& w = workers_.at(heartbeat.worker_id());
  if (heartbeat.state() == "leaving") {  // a stopping worker: plan without it now, not after missed heartbeats
    w.state = heartbeat.state();
    w.inventory.alive = false;
    w.declared_dead = true;
    w.replicas.clear();
    w.problems.clear();
    ++version_;
    spdlog::info("coordinator: worker '{}' is leaving (it is stopping)", w.worker_id);
    return &w;
  }
  if (w.declared_dead) spdlog::info("coordinator: worker '{}' is alive again", w.worker_id);
  w.declared_dead = false;
  w.inventory.alive = true;
  w.inventory.last_heartbeat_ms = now_ms;
  w.routing_id = peer.routing_id;
  w.state = heartbeat.state();
  w.job_id = heartbeat.job_id();
  w.round = heartbeat.round();
  ++liveness_version_;
  if (!SameReplicas(w.replicas, heartbeat.replicas())) {
    w.replicas.assign(heartbeat.replicas().begin(), heartbeat.replicas().end());
    ++version_;
  }
  KeepCalibrations(w, heartbeat);
  w.problems.assign(heartbeat.problems().begin(), heartbeat.problems().end());
  for (v1::JobProblem& p : w.problems) {
    p.set_worker_id(w.worker_id);
    if (p.reason().size() <= kMaxProblemReasonBytes) continue;
    std::string* reason = p.mutable_reason();
    reason->resize(kMaxProblemReasonBytes);
    if (size_t bad = FirstInvalidUtf8(*reason); bad != std::string::npos) reason->resize(bad);  // cut mid-character
  }
  return &w;
}

void WorkerRegistry::KeepCalibrations(WorkerEntry& worker, const v1::Heartbeat& heartbeat) {
  for (const v1::JobCalibration& c : heartbeat.calibrations()) {
    auto kept = worker.calibrations.find(c.job_id());
    if (kept != worker.calibrations.end() && kept->second.measured_unix_ms() >= c.measured_unix_ms()) continue;
    const double rate = c.tokens_per_s();
    if (!std::isfinite(rate) || rate <= 0 || rate > kMaxTokensPerSecond) {
      auto refused = worker.refused_calibrations.find(c.job_id());
      if (refused != worker.refused_calibrations.end() && refused->second == c.measured_unix_ms()) continue;
      worker.refused_calibrations[c.job_id()] = c.measured_unix_ms();
      spdlog::warn(
          "coordinator: worker '{}': job {}: refusing the calibrated compute rate {} tokens/s (must be "
          "finite, positive and at most {:g})",
          worker.worker_id, c.job_id(), rate, kMaxTokensPerSecond);
      continue;
    }
    worker.calibrations[c.job_id()] = c;
    ++liveness_version_;  // the workers view shows it
  }
  while (worker.calibrations.size() > static_cast<size_t>(kMaxCalibrations)) {
    auto oldest = worker.calibrations.begin();
    for (auto it = worker.calibrations.begin(); it != worker.calibrations.end(); ++it)
      if (it->second.measured_unix_ms() < oldest->second.measured_unix_ms()) oldest = it;
    worker.calibrations.erase(oldest);
  }
}

Result<const WorkerEntry*> WorkerRegistry::Authorize(const std::string& worker_id,
                                                     const transport::PeerInfo& peer) const {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return Status::NotFound("worker '" + worker_id + "' is not registered");
  if (!options_.insecure && it->second.public_key != peer.public_key)
    return Status::PermissionDenied("worker '" + worker_id + "' is registered with another key than " +
                                    peer.Describe());
  return &it->second;
}

int64_t WorkerRegistry::MarkDead(int64_t now_ms) {
  const int64_t timeout = options_.heartbeat_interval_ms * options_.heartbeat_misses;
  int64_t alive = 0;
  for (auto it = workers_.begin(); it != workers_.end();) {
    const int64_t silent_ms = now_ms - it->second.inventory.last_heartbeat_ms;
    if (!it->second.inventory.alive && options_.forget_after_ms > 0 && silent_ms > options_.forget_after_ms) {
      spdlog::info("coordinator: worker '{}' forgotten: no heartbeat for {} s", it->first, silent_ms / 1000);
      it = workers_.erase(it);
      ++version_;
      ++liveness_version_;
      continue;
    }
    auto& [id, w] = *it++;
    if (w.inventory.alive && now_ms - w.inventory.last_heartbeat_ms > timeout) {
      w.inventory.alive = false;
      w.declared_dead = true;
      ++liveness_version_;
      if (!w.replicas.empty()) {  // a dead worker's replicas are not state anyone can rely on
        w.replicas.clear();
        ++version_;
      }
      spdlog::warn("coordinator: worker '{}' declared dead: no heartbeat for {} ms ({} missed)", id,
                   now_ms - w.inventory.last_heartbeat_ms, options_.heartbeat_misses);
    }
    if (w.inventory.alive) ++alive;
  }
  return alive;
}

void WorkerRegistry::ExcuseStall(int64_t stall_ms, int64_t now_ms) {
  for (auto& [id, w] : workers_) {
    if (w.inventory.alive) w.inventory.last_heartbeat_ms = std::min(now_ms, w.inventory.last_heartbeat_ms + stall_ms);
  }
}

std::string WorkerRegistry::MarkNotReading(const std::string& routing_id) {
  for (auto& [id, w] : workers_) {
    if (!w.inventory.alive || w.routing_id != routing_id) continue;
    w.inventory.alive = false;
    w.declared_dead = true;
    w.replicas.clear();
    ++version_;
    ++liveness_version_;
    return id;
  }
  return "";
}

const WorkerEntry* WorkerRegistry::Find(const std::string& worker_id) const {
  auto it = workers_.find(worker_id);
  return it == workers_.end() ? nullptr : &it->second;
}

std::vector<WorkerInventory> WorkerRegistry::AliveInventory() const {
  std::vector<WorkerInventory> out;
  for (const auto& [id, w] : workers_) {
    if (w.inventory.alive) out.push_back(w.inventory);
  }
  return out;
}

std::vector<const WorkerEntry*> WorkerRegistry::Alive() const {
  std::vector<const WorkerEntry*> out;
  for (const auto& [id, w] : workers_) {
    if (w.inventory.alive) out.push_back(&w);
  }
  return out;
}

std::vector<const WorkerEntry*> WorkerRegistry::All() const {
  std::vector<const WorkerEntry*> out;
  for (const auto& [id, w] : workers_) out.push_back(&w);
  return out;
}

std::map<std::string, double> WorkerRegistry::TokensPerSecondOf(const std::string& job_id) const {
  std::map<std::string, double> out;
  for (const auto& [id, w] : workers_) {
    auto it = w.calibrations.find(job_id);
    if (it != w.calibrations.end()) out[id] = it->second.tokens_per_s();
  }
  return out;
}

std::vector<v1::ReplicaState> WorkerRegistry::ReplicasOf(const std::string& job_id) const {
  std::vector<v1::ReplicaState> out;
  for (const auto& [id, w] : workers_) {
    for (const v1::ReplicaState& replica : w.replicas) {
      if (replica.job_id() != job_id) continue;
      out.push_back(replica);
      out.back().set_worker_id(id);
    }
  }
  return out;
}

std::vector<v1::JobProblem> WorkerRegistry::ProblemsOf(const std::string& job_id) const {
  std::vector<v1::JobProblem> out;
  for (const auto& [id, w] : workers_) {
    if (!w.inventory.alive) continue;
    for (const v1::JobProblem& p : w.problems)
      if (p.job_id() == job_id) out.push_back(p);
  }
  return out;
}

}  // namespace tributary
