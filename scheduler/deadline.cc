// Round deadlines from measured durations (median + k·MAD) and the quorum rule.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "scheduler/scheduler.h"

namespace tributary {
namespace {

// 1 / Phi^-1(3/4): makes the MAD a consistent estimator of the standard deviation for normal data.
constexpr double kMadToSigma = 1.4826;

// Median of `values` (reordered); the mean of the two middle values for an even count.
double MedianOf(std::vector<double>& values) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

std::string FormatNumber(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

Status BadDeadlineField(const std::string& field, const std::string& expected, const std::string& got) {
  return Status::InvalidArgument("deadline." + field + ": must be " + expected + ", got " + got);
}

}  // namespace

Status ValidateDeadlineOptions(const DeadlineOptions& o) {
  if (!std::isfinite(o.k) || o.k < 0) return BadDeadlineField("k", "a finite number >= 0", FormatNumber(o.k));
  if (!std::isfinite(o.min_margin) || o.min_margin < 0) {
    return BadDeadlineField("min_margin", "a finite number >= 0", FormatNumber(o.min_margin));
  }
  if (!std::isfinite(o.floor_s) || o.floor_s <= 0) {
    return BadDeadlineField("floor_s", "a finite number > 0", FormatNumber(o.floor_s));
  }
  if (!std::isfinite(o.ceiling_s) || o.ceiling_s < o.floor_s) {
    return BadDeadlineField("ceiling_s", "finite and >= deadline.floor_s " + FormatNumber(o.floor_s),
                            FormatNumber(o.ceiling_s));
  }
  if (!(o.initial_s >= o.floor_s && o.initial_s <= o.ceiling_s)) {
    return BadDeadlineField("initial_s",
                            "within [deadline.floor_s, deadline.ceiling_s] = [" + FormatNumber(o.floor_s) + ", " +
                                FormatNumber(o.ceiling_s) + "]",
                            FormatNumber(o.initial_s));
  }
  if (o.min_observations < 1) {
    return BadDeadlineField("min_observations", ">= 1", std::to_string(o.min_observations));
  }
  if (o.window < o.min_observations) {
    return BadDeadlineField("window", ">= deadline.min_observations " + std::to_string(o.min_observations),
                            std::to_string(o.window));
  }
  return Status::OK();
}

RoundDeadline::RoundDeadline(DeadlineOptions options) : options_(options) {
  TRIB_CHECK(ValidateDeadlineOptions(options_).ok());
}

bool RoundDeadline::Observe(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return false;
  durations_.push_back(seconds);
  while (static_cast<int64_t>(durations_.size()) > options_.window) durations_.pop_front();
  return true;
}

double RoundDeadline::Median() const {
  std::vector<double> values(durations_.begin(), durations_.end());
  return MedianOf(values);
}

double RoundDeadline::Mad() const {
  const double median = Median();
  std::vector<double> deviations;
  deviations.reserve(durations_.size());
  for (double d : durations_) deviations.push_back(std::abs(d - median));
  const double mad = MedianOf(deviations);
  return options_.scale_mad ? kMadToSigma * mad : mad;
}

double RoundDeadline::DeadlineSeconds() const {
  if (observations() < options_.min_observations) return options_.initial_s;
  const double median = Median();
  const double deadline = std::max(median + options_.k * Mad(), median * (1.0 + options_.min_margin));
  return std::clamp(deadline, options_.floor_s, options_.ceiling_s);
}

const char* RoundCloseStateName(RoundCloseState state) {
  switch (state) {
    case RoundCloseState::kOpen: return "open";
    case RoundCloseState::kComplete: return "complete";
    case RoundCloseState::kQuorumReached: return "quorum_reached";
    case RoundCloseState::kQuorumMissed: return "quorum_missed";
  }
  return "unknown";
}

int64_t QuorumCount(int64_t participants, double quorum_fraction) {
  TRIB_CHECK(quorum_fraction > 0 && quorum_fraction <= 1);
  if (participants <= 0) return 0;
  const auto needed = static_cast<int64_t>(std::ceil(quorum_fraction * static_cast<double>(participants) - 1e-9));
  return std::clamp<int64_t>(needed, 1, participants);
}

RoundCloseState EvaluateRoundClose(int64_t participants, int64_t reported, bool deadline_passed,
                                   double quorum_fraction) {
  TRIB_CHECK(participants >= 0 && reported >= 0);
  if (reported >= participants) return RoundCloseState::kComplete;
  if (!deadline_passed) return RoundCloseState::kOpen;
  return reported >= QuorumCount(participants, quorum_fraction) ? RoundCloseState::kQuorumReached
                                                                : RoundCloseState::kQuorumMissed;
}

}  // namespace tributary
