// The training loop's seam for cluster mode: an IslandReducer replaces each optimizer step's gradients
// by their mean over the island (engine/train/trainer.h, GradientReducer), so every member clips and
// steps bit-identical gradients and the replicas stay identical.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "cluster/island.h"
#include "engine/arena.h"
#include "engine/train/trainer.h"

namespace tributary {

class IslandReducer final : public GradientReducer {
 public:
  // `group` is not owned and must outlive the reducer. `weighted`: ReduceStep weights each member's gradient
  // by its step's target tokens over the island's (members training unequal batches), so the result is the
  // gradient of the island's whole batch; otherwise every member counts equally (equal batches).
  explicit IslandReducer(IslandGroup* group, bool weighted = false) : group_(group), weighted_(weighted) {}

  // Weighted: sums the members' target tokens, scales this member's gradient by its fraction, then sums the
  // gradients over the island (identical on every member). Unweighted: Reduce.
  Status ReduceStep(Arena& grads, int64_t step, int64_t target_tokens) override;

  // All-reduces the whole flat gradient buffer (alignment padding included: it is zero everywhere and
  // stays zero) to the island mean. A host arena is reduced in place; a device arena is staged through
  // host memory (gloo's TCP transport reads host memory only). A failure names the step and leaves the
  // group unusable (cluster/island.h); the caller re-forms the island and redoes the step.
  Status Reduce(Arena& grads, int64_t step) override;

 private:
  // Reduces `values` in place: AllReduceSum after scaling by `scale` (weighted) or AllReduceMean.
  Status ReduceValues(std::span<float> values, const double* scale, const std::string& context);

  IslandGroup* group_;
  bool weighted_ = false;
  std::vector<float> staging_;  // device arenas only; kept between steps
};

}  // namespace tributary
