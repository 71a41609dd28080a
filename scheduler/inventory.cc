// Worker inventory checks and the capability filter.
#include <algorithm>
#include <string>

#include "scheduler/scheduler.h"

namespace tributary {
namespace {

std::string WorkerPrefix(const WorkerInventory& w) {
  return "worker '" + w.worker_id + "': ";
}

// The first requirement `w` fails, or "" when it meets all of them.
std::string FirstUnmetRequirement(const WorkerInventory& w, const JobRequirements& req) {
  if (!w.alive) return "not alive";
  if (w.memory_bytes < req.min_memory_bytes) {
    return "memory_bytes " + std::to_string(w.memory_bytes) + " < required " + std::to_string(req.min_memory_bytes);
  }
  if (req.min_gpus > 0) {
    if (w.gpu_count < req.min_gpus) {
      return "gpu_count " + std::to_string(w.gpu_count) + " < required " + std::to_string(req.min_gpus);
    }
    if (w.gpu_memory_bytes < req.min_gpu_memory_bytes) {
      return "gpu_memory_bytes " + std::to_string(w.gpu_memory_bytes) + " < required " +
             std::to_string(req.min_gpu_memory_bytes);
    }
  }
  if (!req.dataset.empty()) {
    auto it = w.datasets.find(req.dataset);
    if (it == w.datasets.end()) return "dataset '" + req.dataset + "' not present";
    if (it->second < req.min_dataset_samples) {
      return "dataset '" + req.dataset + "' has " + std::to_string(it->second) + " samples < required " +
             std::to_string(req.min_dataset_samples);
    }
  }
  return "";
}

}  // namespace

Status ValidateInventory(const WorkerInventory& w) {
  if (w.worker_id.empty()) return Status::InvalidArgument("worker inventory: worker_id is empty");
  const std::string prefix = WorkerPrefix(w);
  if (w.cores < 0) return Status::InvalidArgument(prefix + "cores must be >= 0, got " + std::to_string(w.cores));
  if (w.memory_bytes < 0) {
    return Status::InvalidArgument(prefix + "memory_bytes must be >= 0, got " + std::to_string(w.memory_bytes));
  }
  if (w.gpu_count < 0) {
    return Status::InvalidArgument(prefix + "gpu_count must be >= 0, got " + std::to_string(w.gpu_count));
  }
  if (w.gpu_memory_bytes < 0 || (w.gpu_count == 0 && w.gpu_memory_bytes != 0)) {
    return Status::InvalidArgument(prefix + "gpu_memory_bytes must be >= 0 and 0 without GPUs, got " +
                                   std::to_string(w.gpu_memory_bytes));
  }
  for (size_t i = 0; i < w.nics.size(); ++i) {
    const NicInfo& nic = w.nics[i];
    if (nic.name.empty()) return Status::InvalidArgument(prefix + "nic #" + std::to_string(i) + ": name is empty");
    if (nic.speed_mbps <= 0) {
      return Status::InvalidArgument(prefix + "nic '" + nic.name + "': speed_mbps must be > 0, got " +
                                     std::to_string(nic.speed_mbps));
    }
  }
  for (const auto& [name, samples] : w.datasets) {
    if (name.empty()) return Status::InvalidArgument(prefix + "dataset with an empty name");
    if (samples < 0) {
      return Status::InvalidArgument(prefix + "dataset '" + name + "': sample count must be >= 0, got " +
                                     std::to_string(samples));
    }
  }
  return Status::OK();
}

int MarkStaleWorkersDead(std::vector<WorkerInventory>& workers, int64_t now_ms, int64_t timeout_ms) {
  int marked = 0;
  for (auto& w : workers) {
    if (w.alive && now_ms - w.last_heartbeat_ms > timeout_ms) {
      w.alive = false;
      ++marked;
    }
  }
  return marked;
}

Eligibility FilterWorkers(const std::vector<WorkerInventory>& workers, const JobRequirements& requirements) {
  std::vector<const WorkerInventory*> sorted;
  sorted.reserve(workers.size());
  for (const auto& w : workers) sorted.push_back(&w);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const WorkerInventory* a, const WorkerInventory* b) { return a->worker_id < b->worker_id; });
  Eligibility out;
  const WorkerInventory* previous = nullptr;
  for (const WorkerInventory* w : sorted) {
    // A registry bug could list a worker twice; it must not get two chances to be sampled.
    std::string reason = previous && previous->worker_id == w->worker_id ? "duplicate worker_id"
                                                                         : FirstUnmetRequirement(*w, requirements);
    previous = w;
    if (reason.empty()) {
      out.eligible.push_back(w->worker_id);
    } else {
      out.ineligible.push_back({w->worker_id, std::move(reason)});
    }
  }
  return out;
}

}  // namespace tributary
