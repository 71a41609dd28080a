#include "cluster/island_reducer.h"

#include <span>
#include <string>

namespace tributary {

Status IslandReducer::Reduce(Arena& grads, int64_t step) {
  const std::string context = "island gradient reduce, step " + std::to_string(step);
  const size_t n = static_cast<size_t>(grads.size());
  if (grads.is_host()) return group_->AllReduceMean(std::span<float>(grads.data(), n)).WithContext(context);
  staging_.resize(n);
  grads.CopyToHost(staging_.data());
  TRIB_RETURN_IF_ERROR(group_->AllReduceMean(std::span<float>(staging_)).WithContext(context));
  grads.CopyFromHost(staging_.data());
  return Status::OK();
}

}  // namespace tributary
