#include "coordinator/worker_logs.h"

#include <algorithm>

namespace tributary {

size_t WorkerLogs::Append(const std::string& job_id, const std::string& worker_id, uint64_t first_line,
                          const std::vector<std::string>& lines) {
  const auto key = std::make_pair(job_id, worker_id);
  if (streams_.count(key) == 0 && streams_.size() >= kMaxStreams) {
    auto oldest = std::min_element(streams_.begin(), streams_.end(),
                                   [](const auto& a, const auto& b) { return a.second.touched < b.second.touched; });
    streams_.erase(oldest);
  }
  Stream& stream = streams_[key];
  stream.touched = ++clock_;
  const uint64_t end = first_line + lines.size();
  if (end <= stream.worker_end) return 0;  // all seen already
  if (first_line > stream.worker_end) {
    stream.Push("[worker " + worker_id + ": " + std::to_string(first_line - stream.worker_end) +
                    " line(s) lost before they were sent]",
                kLimits);
  }
  const size_t skip = first_line < stream.worker_end ? static_cast<size_t>(stream.worker_end - first_line) : 0;
  for (size_t i = skip; i < lines.size(); ++i) stream.Push(lines[i], kLimits);
  stream.worker_end = end;
  return lines.size() - skip;
}

WorkerLogs::Page WorkerLogs::Read(const std::string& job_id, const std::string& worker_id, uint64_t from_line,
                                  uint32_t max_lines) const {
  Page page;
  page.next_line = from_line;
  auto it = streams_.find(std::make_pair(job_id, worker_id));
  if (it == streams_.end()) return page;
  const Stream& stream = it->second;
  const uint64_t end = stream.first_line + stream.lines.size();
  uint64_t at = std::max(from_line, stream.first_line);
  for (; at < end && page.lines.size() < max_lines; ++at) page.lines.push_back(stream.lines[at - stream.first_line]);
  page.next_line = std::max(at, from_line);
  return page;
}

bool WorkerLogs::Has(const std::string& job_id, const std::string& worker_id) const {
  return streams_.count(std::make_pair(job_id, worker_id)) > 0;
}

std::set<std::string> WorkersOfJob(const v1::GetJobReply& detail) {
  std::set<std::string> workers(detail.workers().begin(), detail.workers().end());
  for (const v1::IslandStatus& island : detail.islands())
    workers.insert(island.members().begin(), island.members().end());
  for (const v1::RoundSummary& round : detail.rounds()) {
    for (const v1::ClientReport& client : round.clients()) workers.insert(client.worker_id());
  }
  for (const v1::ReplicaState& replica : detail.replicas()) workers.insert(replica.worker_id());
  return workers;
}

}  // namespace tributary
