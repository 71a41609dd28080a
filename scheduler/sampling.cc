// Client sampling and the first scheduling policy ("random").
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <utility>

#include "base/hash.h"
#include "scheduler/scheduler.h"

namespace tributary {
namespace {

// Uniform in [0, bound) without modulo bias: reject draws below 2^64 mod bound.
uint64_t UniformBelow(std::mt19937_64& rng, uint64_t bound) {
  const uint64_t threshold = (0 - bound) % bound;
  for (;;) {
    const uint64_t x = rng();
    if (x >= threshold) return x % bound;
  }
}

std::string FormatNumber(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

class RandomScheduler final : public Scheduler {
 public:
  const char* policy() const override { return "random"; }

  Result<RoundPlan> PlanRound(const std::vector<WorkerInventory>& workers, const RoundRequest& request) override {
    TRIB_RETURN_IF_ERROR(ValidateSampling(request.sampling));
    Eligibility eligibility = FilterWorkers(workers, request.requirements);
    const auto eligible = static_cast<int64_t>(eligibility.eligible.size());
    if (eligible < request.sampling.min_clients) {
      // Name why the first few were filtered out: that is what an operator has to fix.
      std::string why;
      for (size_t i = 0; i < eligibility.ineligible.size() && i < 3; ++i)
        why += (i == 0 ? " (" : "; ") + eligibility.ineligible[i].worker_id + ": " + eligibility.ineligible[i].reason;
      if (!why.empty()) why += eligibility.ineligible.size() > 3 ? "; ...)" : ")";
      return Status::FailedPrecondition("round " + std::to_string(request.round) + ": " + std::to_string(eligible) +
                                        " of " + std::to_string(workers.size()) +
                                        " workers are eligible, sampling.min_clients is " +
                                        std::to_string(request.sampling.min_clients) + why);
    }
    RoundPlan plan;
    plan.round = request.round;
    plan.eligible_count = eligible;
    plan.participants =
        SampleClients(eligibility.eligible, SampleSize(request.sampling, eligible), request.job_seed, request.round);
    plan.ineligible = std::move(eligibility.ineligible);
    return plan;
  }
};

}  // namespace

Status ValidateSampling(const SamplingOptions& o) {
  if (!(o.fraction > 0 && o.fraction <= 1)) {
    return Status::InvalidArgument("sampling.fraction: must be in (0, 1], got " + FormatNumber(o.fraction));
  }
  if (o.min_clients < 1) {
    return Status::InvalidArgument("sampling.min_clients: must be >= 1, got " + std::to_string(o.min_clients));
  }
  if (o.max_clients < 0) {
    return Status::InvalidArgument("sampling.max_clients: must be >= 0 (0 = no cap), got " +
                                   std::to_string(o.max_clients));
  }
  if (o.max_clients > 0 && o.max_clients < o.min_clients) {
    return Status::InvalidArgument("sampling.max_clients: " + std::to_string(o.max_clients) +
                                   " is below sampling.min_clients " + std::to_string(o.min_clients));
  }
  return Status::OK();
}

int64_t SampleSize(const SamplingOptions& o, int64_t eligible) {
  // The epsilon keeps products such as 0.07 · 100 = 7.000000000000001 or 6.9999999 at 7.
  auto count = static_cast<int64_t>(std::floor(o.fraction * static_cast<double>(eligible) + 1e-9));
  count = std::max(count, o.min_clients);
  if (o.max_clients > 0) count = std::min(count, o.max_clients);
  return std::clamp<int64_t>(count, 0, eligible);
}

uint64_t SamplingSeed(uint64_t job_seed, int64_t round) {
  return SplitMix64(job_seed ^ SplitMix64(static_cast<uint64_t>(round)));
}

std::vector<std::string> SampleClients(const std::vector<std::string>& eligible, int64_t count, uint64_t job_seed,
                                       int64_t round) {
  TRIB_CHECK(std::is_sorted(eligible.begin(), eligible.end()));
  TRIB_CHECK(std::adjacent_find(eligible.begin(), eligible.end()) == eligible.end());
  const auto n = static_cast<int64_t>(eligible.size());
  count = std::clamp<int64_t>(count, 0, n);
  std::vector<std::string> pool = eligible;
  std::mt19937_64 rng(SamplingSeed(job_seed, round));
  // Partial Fisher–Yates: position i receives a uniform pick among the not yet chosen [i, n).
  for (int64_t i = 0; i < count; ++i) {
    const auto j = i + static_cast<int64_t>(UniformBelow(rng, static_cast<uint64_t>(n - i)));
    std::swap(pool[static_cast<size_t>(i)], pool[static_cast<size_t>(j)]);
  }
  pool.resize(static_cast<size_t>(count));
  std::sort(pool.begin(), pool.end());
  return pool;
}

Result<std::unique_ptr<Scheduler>> CreateScheduler(const std::string& policy) {
  if (policy == "random") return std::unique_ptr<Scheduler>(std::make_unique<RandomScheduler>());
  return Status::InvalidArgument("scheduler.policy: unknown policy '" + policy + "' (expected random)");
}

}  // namespace tributary
