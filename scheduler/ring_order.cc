#include "scheduler/ring_order.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace tributary {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

double Link(const BandwidthMatrix& mbps, int a, int b) {
  return mbps[static_cast<size_t>(a)][static_cast<size_t>(b)];
}

// A ring and its reverse are the same ring: keep the direction whose second member is the smaller.
void Canonicalize(std::vector<int>* order) {
  if (order->size() > 2 && (*order)[1] > order->back()) std::reverse(order->begin() + 1, order->end());
}

// Held-Karp over paths from member 0: the ring of least sum of 1/mbps using only links >= min_mbps.
// Returns an empty order when no such ring exists.
std::vector<int> MinSumRingExact(const BandwidthMatrix& mbps, double min_mbps) {
  const int n = static_cast<int>(mbps.size());
  const size_t masks = size_t{1} << n;
  std::vector<double> cost(masks * static_cast<size_t>(n), kInf);
  std::vector<int> parent(masks * static_cast<size_t>(n), -1);
  auto at = [n](size_t mask, int j) { return mask * static_cast<size_t>(n) + static_cast<size_t>(j); };
  cost[at(1, 0)] = 0;
  for (size_t mask = 1; mask < masks; mask += 2) {  // every path contains member 0
    for (int j = 0; j < n; ++j) {
      const double c = cost[at(mask, j)];
      if (c == kInf) continue;
      for (int k = 1; k < n; ++k) {
        if ((mask >> k) & 1U) continue;
        const double w = Link(mbps, j, k);
        if (!(w >= min_mbps)) continue;
        const size_t next = mask | (size_t{1} << k);
        const double nc = c + 1.0 / w;
        if (nc < cost[at(next, k)]) {
          cost[at(next, k)] = nc;
          parent[at(next, k)] = j;
        }
      }
    }
  }
  const size_t full = masks - 1;
  int last = -1;
  double best = kInf;
  for (int j = 1; j < n; ++j) {
    const double w = Link(mbps, j, 0);
    if (cost[at(full, j)] == kInf || !(w >= min_mbps)) continue;
    const double c = cost[at(full, j)] + 1.0 / w;
    if (c < best) best = c, last = j;
  }
  if (last < 0) return {};
  std::vector<int> order;
  size_t mask = full;
  for (int j = last; j >= 0;) {
    order.push_back(j);
    const int p = parent[at(mask, j)];
    mask &= ~(size_t{1} << j);
    j = p;
  }
  std::reverse(order.begin(), order.end());
  return order;
}

// Held-Karp for the largest bottleneck of any ring.
double MaxBottleneckExact(const BandwidthMatrix& mbps) {
  const int n = static_cast<int>(mbps.size());
  const size_t masks = size_t{1} << n;
  std::vector<double> best(masks * static_cast<size_t>(n), -1);
  auto at = [n](size_t mask, int j) { return mask * static_cast<size_t>(n) + static_cast<size_t>(j); };
  best[at(1, 0)] = kInf;
  for (size_t mask = 1; mask < masks; mask += 2) {
    for (int j = 0; j < n; ++j) {
      const double b = best[at(mask, j)];
      if (b < 0) continue;
      for (int k = 1; k < n; ++k) {
        if ((mask >> k) & 1U) continue;
        const size_t next = mask | (size_t{1} << k);
        best[at(next, k)] = std::max(best[at(next, k)], std::min(b, Link(mbps, j, k)));
      }
    }
  }
  double result = 0;
  for (int j = 1; j < n; ++j) result = std::max(result, std::min(best[at(masks - 1, j)], Link(mbps, j, 0)));
  return result;
}

// Additive link cost for the heuristics: 1/w, or (1/w)^8 to approximate max-min (the slowest link
// dominates the sum) while keeping 2-opt's O(1) move evaluation.
double HeuristicCost(double w, RingObjective objective) {
  const double inv = 1.0 / w;
  return objective == RingObjective::kMinSumInverse ? inv : std::pow(inv * 1e3, 8);
}

std::vector<int> NearestNeighbourRing(const BandwidthMatrix& mbps, int start) {
  const int n = static_cast<int>(mbps.size());
  std::vector<bool> used(static_cast<size_t>(n), false);
  std::vector<int> order{start};
  used[static_cast<size_t>(start)] = true;
  for (int step = 1; step < n; ++step) {
    int best = -1;
    for (int k = 0; k < n; ++k)
      if (!used[static_cast<size_t>(k)] && (best < 0 || Link(mbps, order.back(), k) > Link(mbps, order.back(), best)))
        best = k;
    used[static_cast<size_t>(best)] = true;
    order.push_back(best);
  }
  std::rotate(order.begin(), std::find(order.begin(), order.end(), 0), order.end());
  return order;
}

// 2-opt: reverse order[i..j] while that lowers the total heuristic cost; bounded passes.
void TwoOpt(const BandwidthMatrix& mbps, RingObjective objective, std::vector<int>* order) {
  const int n = static_cast<int>(order->size());
  auto cost = [&](int a, int b) { return HeuristicCost(Link(mbps, (*order)[a], (*order)[b]), objective); };
  for (int pass = 0; pass < 50; ++pass) {
    bool improved = false;
    for (int i = 1; i + 1 < n; ++i) {
      for (int j = i + 1; j < n; ++j) {
        const int next = (j + 1) % n;
        const double before = cost(i - 1, i) + cost(j, next);
        const double after = cost(i - 1, j) + cost(i, next);
        if (after < before * (1 - 1e-12)) {
          std::reverse(order->begin() + i, order->begin() + j + 1);
          improved = true;
        }
      }
    }
    if (!improved) break;
  }
}

double TotalHeuristicCost(const BandwidthMatrix& mbps, RingObjective objective, const std::vector<int>& order) {
  double total = 0;
  for (size_t k = 0; k < order.size(); ++k)
    total += HeuristicCost(Link(mbps, order[k], order[(k + 1) % order.size()]), objective);
  return total;
}

std::vector<int> HeuristicRing(const BandwidthMatrix& mbps, RingObjective objective) {
  const int n = static_cast<int>(mbps.size());
  std::vector<int> best;
  double best_cost = kInf;
  for (int start = 0; start < std::min(n, 8); ++start) {
    std::vector<int> order = NearestNeighbourRing(mbps, start);
    TwoOpt(mbps, objective, &order);
    const double c = TotalHeuristicCost(mbps, objective, order);
    if (c < best_cost) best_cost = c, best = std::move(order);
  }
  return best;
}

std::string FormatMbps(double mbps) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", mbps);
  return buf;
}

}  // namespace

const char* RingObjectiveName(RingObjective objective) {
  return objective == RingObjective::kMaxMin ? "max_min" : "min_sum_inverse";
}

RingOrder EvaluateRing(const BandwidthMatrix& mbps, const std::vector<int>& order) {
  RingOrder ring;
  ring.order = order;
  if (order.size() < 2) return ring;
  ring.bottleneck_mbps = kInf;
  for (size_t k = 0; k < order.size(); ++k) {
    const double w = Link(mbps, order[k], order[(k + 1) % order.size()]);
    ring.bottleneck_mbps = std::min(ring.bottleneck_mbps, w);
    ring.sum_inverse += 1.0 / w;
  }
  return ring;
}

RingOrder SolveRingOrder(const BandwidthMatrix& mbps, RingObjective objective) {
  const int n = static_cast<int>(mbps.size());
  std::vector<int> order;
  bool exact = true;
  if (n <= 2) {
    for (int i = 0; i < n; ++i) order.push_back(i);
  } else if (n <= kExactRingMembers) {
    const double floor = objective == RingObjective::kMaxMin ? MaxBottleneckExact(mbps) : 0;
    order = MinSumRingExact(mbps, floor);
  } else {
    order = HeuristicRing(mbps, objective);
    exact = false;
  }
  Canonicalize(&order);
  RingOrder ring = EvaluateRing(mbps, order);
  ring.exact = exact;
  if (n < 2) {
    ring.reason = "one member: no all-reduce";
    return ring;
  }
  ring.reason = std::string(objective == RingObjective::kMaxMin ? "max-min" : "min-sum-inverse") + " ring";
  ring.reason += ", bottleneck " + FormatMbps(ring.bottleneck_mbps) + " Mbit/s";
  ring.reason += std::string(" (") + (exact ? "exact" : "2-opt heuristic") + ", " + std::to_string(n) + " members)";
  return ring;
}

}  // namespace tributary
