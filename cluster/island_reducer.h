// The training loop's seam for cluster mode: an IslandReducer replaces each optimizer step's gradients
// by their mean over the island (engine/train/trainer.h, GradientReducer), so every member clips and
// steps bit-identical gradients and the replicas stay identical.
#pragma once

#include <cstdint>
#include <vector>

#include "cluster/island.h"
#include "engine/arena.h"
#include "engine/train/trainer.h"

namespace tributary {

class IslandReducer final : public GradientReducer {
 public:
  // `group` is not owned and must outlive the reducer.
  explicit IslandReducer(IslandGroup* group) : group_(group) {}

  // All-reduces the whole flat gradient buffer (alignment padding included: it is zero everywhere and
  // stays zero) to the island mean. A host arena is reduced in place; a device arena is staged through
  // host memory (gloo's TCP transport reads host memory only). A failure names the step and leaves the
  // group unusable (cluster/island.h); the caller re-forms the island and redoes the step.
  Status Reduce(Arena& grads, int64_t step) override;

 private:
  IslandGroup* group_;
  std::vector<float> staging_;  // device arenas only; kept between steps
};

}  // namespace tributary
