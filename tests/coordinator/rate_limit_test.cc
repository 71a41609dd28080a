// PeerRateLimiter (coordinator/rate_limit.h): each peer has its own burst and rate, refusals are counted
// and reported at most once per interval per peer, and idle peers are dropped when too many are tracked.
#include "coordinator/rate_limit.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace tributary {
namespace {

std::function<std::string()> Name(const std::string& name) {
  return [name] { return name; };
}

TEST(PeerRateLimiterTest, EachPeerGetsItsBurstThenItsRateAndRefusalsAreReportedOncePerInterval) {
  PeerRateLimiter limiter({/*per_second=*/10, /*burst=*/5, /*report_interval_ms=*/1000, /*max_peers=*/100});
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limiter.Admit("flooder", Name("flooder (key f)"), 0));
  for (int i = 0; i < 95; ++i) EXPECT_FALSE(limiter.Admit("flooder", Name("flooder (key f)"), 0));
  EXPECT_TRUE(limiter.Admit("worker", Name("worker (key w)"), 0));  // another peer is not affected
  EXPECT_EQ(limiter.refused_total(), 95u);
  EXPECT_TRUE(limiter.TakeReports(500).empty());  // not before the interval
  // 100 ms refill one token (10/s).
  EXPECT_TRUE(limiter.Admit("flooder", Name("ignored"), 100));
  EXPECT_FALSE(limiter.Admit("flooder", Name("ignored"), 100));
  const std::vector<std::string> reports = limiter.TakeReports(1000);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0], "flooder (key f): 96 message(s) refused over the rate limit (10/s, burst 5) in the last 1 s");
  EXPECT_TRUE(limiter.TakeReports(5000).empty());  // nothing new refused
  // The burst refills to at most 5.
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limiter.Admit("flooder", Name(""), 100000));
  EXPECT_FALSE(limiter.Admit("flooder", Name(""), 100000));
}

TEST(PeerRateLimiterTest, TracksAtMostMaxPeersDroppingIdleOnes) {
  PeerRateLimiter limiter({/*per_second=*/10, /*burst=*/5, /*report_interval_ms=*/1000, /*max_peers=*/3});
  for (const char* p : {"a", "b", "c"}) EXPECT_TRUE(limiter.Admit(p, Name(p), 0));
  // At 1 s every bucket is full again: the three are dropped when a fourth peer comes; "a" starts afresh.
  EXPECT_TRUE(limiter.Admit("d", Name("d"), 1000));
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limiter.Admit("a", Name("a"), 1000));
  EXPECT_FALSE(limiter.Admit("a", Name("a"), 1000));
}

}  // namespace
}  // namespace tributary
