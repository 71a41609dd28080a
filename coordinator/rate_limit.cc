#include "coordinator/rate_limit.h"

#include <algorithm>

namespace tributary {

bool PeerRateLimiter::Admit(const std::string& peer, const std::function<std::string()>& name, int64_t now_ms) {
  auto it = buckets_.find(peer);
  if (it == buckets_.end()) {
    if (buckets_.size() >= options_.max_peers) DropIdle(now_ms);
    it = buckets_.emplace(peer, Bucket{name(), options_.burst, now_ms, 0, now_ms}).first;
  }
  Bucket& b = it->second;
  const double elapsed_s = static_cast<double>(std::max<int64_t>(0, now_ms - b.updated_ms)) / 1000.0;
  b.tokens = std::min(options_.burst, b.tokens + elapsed_s * options_.per_second);
  b.updated_ms = now_ms;
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return true;
  }
  ++b.refused;
  ++refused_total_;
  return false;
}

std::vector<std::string> PeerRateLimiter::TakeReports(int64_t now_ms) {
  std::vector<std::string> lines;
  for (auto& [peer, b] : buckets_) {
    if (b.refused == 0 || now_ms - b.reported_ms < options_.report_interval_ms) continue;
    lines.push_back(b.name + ": " + std::to_string(b.refused) + " message(s) refused over the rate limit (" +
                    std::to_string(static_cast<int64_t>(options_.per_second)) + "/s, burst " +
                    std::to_string(static_cast<int64_t>(options_.burst)) + ") in the last " +
                    std::to_string((now_ms - b.reported_ms + 500) / 1000) + " s");
    b.refused = 0;
    b.reported_ms = now_ms;
  }
  return lines;
}

void PeerRateLimiter::DropIdle(int64_t now_ms) {
  // A bucket refilled to its burst and without unreported refusals holds nothing worth keeping.
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    const Bucket& b = it->second;
    const double idle_s = static_cast<double>(now_ms - b.updated_ms) / 1000.0;
    if (b.refused == 0 && b.tokens + idle_s * options_.per_second >= options_.burst) {
      it = buckets_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace tributary
