#include "cluster/island_reducer.h"

#include <span>
#include <string>

namespace tributary {

Status IslandReducer::ReduceValues(std::span<float> values, const double* scale, const std::string& context) {
  if (scale == nullptr) return group_->AllReduceMean(values).WithContext(context);
  for (float& v : values) v = static_cast<float>(static_cast<double>(v) * *scale);
  return group_->AllReduceSum(values).WithContext(context);
}

Status IslandReducer::Reduce(Arena& grads, int64_t step) {
  return ReduceStep(grads, step, -1);
}

Status IslandReducer::ReduceStep(Arena& grads, int64_t step, int64_t target_tokens) {
  const std::string context = "island gradient reduce, step " + std::to_string(step);
  double scale = 0;
  const double* weight = nullptr;
  if (weighted_ && target_tokens >= 0) {
    // Each member's gradient is the mean over its own target tokens: weighting by count over the total
    // makes the sum the mean over the island's batch. A member with no targets has a zero gradient.
    auto total = group_->AllReduceSumU64(static_cast<uint64_t>(target_tokens));
    if (!total.ok()) return total.status().WithContext(context + ": summing the target tokens");
    scale = *total > 0 ? static_cast<double>(target_tokens) / static_cast<double>(*total) : 0.0;
    weight = &scale;
  }
  const size_t n = static_cast<size_t>(grads.size());
  if (grads.is_host()) return ReduceValues(std::span<float>(grads.data(), n), weight, context);
  staging_.resize(n);
  grads.CopyToHost(staging_.data());
  TRIB_RETURN_IF_ERROR(ReduceValues(std::span<float>(staging_), weight, context));
  grads.CopyFromHost(staging_.data());
  return Status::OK();
}

}  // namespace tributary
