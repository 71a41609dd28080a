// PeerRateLimiter: a token bucket per peer, so that one peer's flood of requests cannot take the loop from
// everyone else. A peer may send `burst` messages at once and `per_second` on average; what is beyond is
// refused (the coordinator drops it unanswered) and counted, and the count is reported at most once per
// `report_interval_ms` per peer, so a flood does not flood the log either.
//
// Bulk traffic (chunk requests and chunks) is not limited: its rate is set by the receiver's window
// (transport/bulk.h), and a transfer must not stall on it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace tributary {

struct RateLimitOptions {
  double per_second = 200;             // sustained messages per second per peer
  double burst = 2000;                 // messages a peer may send at once
  int64_t report_interval_ms = 30000;  // at most one report line per peer this often
  size_t max_peers = 100000;           // tracked peers; idle buckets are dropped beyond this
};

class PeerRateLimiter {
 public:
  explicit PeerRateLimiter(RateLimitOptions options = {}) : options_(options) {}

  // Whether the peer keyed `peer` may send one more message at now_ms (taking a token when it may).
  // `name` (for the reports) is asked once, at the peer's first message: not per message.
  bool Admit(const std::string& peer, const std::function<std::string()>& name, int64_t now_ms);

  // One line per peer whose refusals were not reported for report_interval_ms ("NAME: 5120 message(s)
  // refused over the rate limit (200/s, burst 2000) in the last 30 s"); resets their counts.
  std::vector<std::string> TakeReports(int64_t now_ms);
  uint64_t refused_total() const { return refused_total_; }

 private:
  struct Bucket {
    std::string name;
    double tokens = 0;
    int64_t updated_ms = 0;
    uint64_t refused = 0;     // since the last report
    int64_t reported_ms = 0;  // when the last report was taken
  };
  void DropIdle(int64_t now_ms);

  RateLimitOptions options_;
  std::map<std::string, Bucket> buckets_;
  uint64_t refused_total_ = 0;
};

}  // namespace tributary
