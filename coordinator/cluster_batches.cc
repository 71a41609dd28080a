#include "coordinator/cluster_batches.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace tributary {

Result<std::vector<int64_t>> SplitIslandBatch(int64_t island_batch, const std::vector<double>& shares) {
  if (shares.empty()) return Status::InvalidArgument("island batch: no members");
  double total = 0;
  for (size_t i = 0; i < shares.size(); ++i) {
    if (!std::isfinite(shares[i]) || shares[i] <= 0)
      return Status::InvalidArgument("island batch: share " + std::to_string(shares[i]) + " of member " +
                                     std::to_string(i) + " (must be finite and > 0)");
    total += shares[i];
  }
  const size_t n = shares.size();
  const int64_t batch = std::max<int64_t>(island_batch, static_cast<int64_t>(n));
  std::vector<int64_t> out(n);
  std::vector<double> remainder(n);
  int64_t given = 0;
  for (size_t i = 0; i < n; ++i) {
    const double quota = static_cast<double>(batch) * shares[i] / total;
    out[i] = static_cast<int64_t>(std::floor(quota));
    remainder[i] = quota - static_cast<double>(out[i]);
    given += out[i];
  }
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return remainder[a] > remainder[b]; });
  for (size_t k = 0; given < batch; k = (k + 1) % n, ++given) ++out[order[k]];
  for (size_t i = 0; i < n; ++i) {
    if (out[i] > 0) continue;
    // batch >= n, so some member holds more than one.
    *std::max_element(out.begin(), out.end()) -= 1;
    out[i] = 1;
  }
  return out;
}

std::string ApplyPlanBatches(const ClusterPlan& plan, const JobSpec& spec, std::vector<RoundIsland>* islands) {
  for (RoundIsland& island : *islands) {
    island.batch = 0;
    island.shares.clear();
  }
  if (!spec.cluster.balance_batches) return "every member trains train.batch_size: cluster.balance_batches is false";
  const int64_t tokens_per_sequence = spec.seq_len * spec.grad_accum;
  if (tokens_per_sequence <= 0) return "every member trains train.batch_size: no tokens per sequence";
  for (const IslandPlan& planned : plan.islands)
    if (planned.tokens_per_s <= 0)
      return "every member trains train.batch_size: compute not measured on every member of island " + planned.name;
  bool differs = false;
  for (RoundIsland& island : *islands) {
    const IslandPlan* planned = nullptr;
    for (const IslandPlan& p : plan.islands)
      if (p.name == island.name) planned = &p;
    if (planned == nullptr) continue;  // not planned (cannot happen: the plan is made for these islands)
    island.batch = std::max<int64_t>(
        static_cast<int64_t>(island.members.size()),
        std::llround(static_cast<double>(planned->batch_tokens) / static_cast<double>(tokens_per_sequence)));
    island.shares = planned->shares;
    auto batches = MemberBatches(island);
    if (!batches.ok()) {
      for (RoundIsland& i : *islands) i.batch = 0, i.shares.clear();
      return "every member trains train.batch_size: island " + island.name + ": " + batches.status().message();
    }
    for (int64_t b : *batches) differs = differs || b != spec.batch_size;
  }
  if (!differs) {
    for (RoundIsland& island : *islands) island.batch = 0, island.shares.clear();
    return "every member trains train.batch_size: the plan's batches are the same";
  }
  return "member batches from the plan's shares and island batches";
}

Result<std::vector<int64_t>> MemberBatches(const RoundIsland& island) {
  if (island.batch <= 0) return std::vector<int64_t>();
  std::vector<double> shares;
  for (const std::string& m : island.members) {
    auto it = island.shares.find(m);
    if (it == island.shares.end()) return Status::InvalidArgument("member '" + m + "' has no planned share");
    shares.push_back(it->second);
  }
  return SplitIslandBatch(island.batch, shares);
}

std::string MemberBatchesText(const std::vector<RoundIsland>& islands) {
  std::string text;
  for (const RoundIsland& island : islands) {
    auto batches = MemberBatches(island);
    if (!batches.ok() || batches->empty()) continue;
    text += (text.empty() ? "island " : "; island ") + island.name + ":";
    for (size_t i = 0; i < batches->size(); ++i)
      text += (i == 0 ? " " : ", ") + island.members[i] + " " + std::to_string((*batches)[i]);
  }
  return text;
}

}  // namespace tributary
