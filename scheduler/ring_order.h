// Ring order for a ring all-reduce: which member sends to which. In a ring all-reduce every link of the
// ring carries the same bytes in every step at the same time, so the step takes as long as the slowest
// link: the order should **maximise the minimum link bandwidth** (kMaxMin, the default). PRIME's code
// instead minimises the sum of inverse bandwidths (its report describes max-min); kMinSumInverse is
// that objective, kept so the two can be compared (docs/placement.md). Pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tributary {

enum class RingObjective { kMaxMin, kMinSumInverse };
const char* RingObjectiveName(RingObjective objective);  // "max_min" | "min_sum_inverse"

// Symmetric bandwidths between n members in Mbit/s: mbps[i][j] == mbps[j][i] > 0 for i != j (a
// direction-dependent measurement is passed as the smaller of the two). The diagonal is ignored.
using BandwidthMatrix = std::vector<std::vector<double>>;

struct RingOrder {
  std::vector<int> order;      // member indices; order[0] == 0, member order[k] sends to order[k+1]
  double bottleneck_mbps = 0;  // the slowest link of the ring (0 for fewer than 2 members)
  double sum_inverse = 0;      // sum over the ring's links of 1 / mbps
  bool exact = false;          // solved exactly (n <= kExactRingMembers) or by a heuristic
  std::string reason;          // one line: "max-min ring, bottleneck 500 Mbit/s (exact, 4 members)"
};

// Exact up to this many members (Held-Karp over subsets, O(2^n n^2)); above it, nearest neighbour
// from every start followed by 2-opt, which is not guaranteed optimal.
constexpr int kExactRingMembers = 13;

// The best ring for `objective`. kMaxMin breaks ties between rings of equal bottleneck by the smaller
// sum of inverses (exactly, when exact). Deterministic: equal rings are ordered by the smaller index
// sequence. For n == 2 the ring is {0, 1} (one link used both ways); n <= 1 gives {0} or {}.
RingOrder SolveRingOrder(const BandwidthMatrix& mbps, RingObjective objective);

// The bottleneck and sum of inverses of a given ring (e.g. index order), for comparisons.
RingOrder EvaluateRing(const BandwidthMatrix& mbps, const std::vector<int>& order);

}  // namespace tributary
