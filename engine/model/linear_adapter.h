// The hook through which a parameter-efficient adapter (LoRA, peft/lora.h) adds a term to the model's
// projections. LlamaModel calls it from LinearForward / LinearBackward, the one place every projection
// (q, k, v, o, gate, up, down, lm_head) goes through; the adapter decides per (kind, layer) whether it
// touches that linear and returns at once otherwise.
//
// Backward is split in two phases because LinearBackward writes dx = dx_beta * dx + dy W and dx may
// alias x (the MLP down projection reuses its input buffer for the input gradient):
//   1. BackwardParams runs BEFORE the base input gradient, while x is intact: it accumulates the
//      adapter's own parameter gradients and keeps what phase 2 needs (e.g. dy B for LoRA).
//   2. BackwardInput runs AFTER the base dx was written: dx += the adapter's input gradient.
// Both phases of one linear run back to back, so an adapter may keep phase-1 state for phase 2 only.
//
// Pointers are fp32 (row-major, one token per row) in the memory of the model's backend
// (LlamaModel::backend(), engine/backend.h); an adapter computes through that backend (or one with the
// same buffer type), never by dereferencing them on the host.
#pragma once

#include <cstdint>

namespace tributary {

struct Linear;  // engine/model/llama_model.h

class LinearAdapter {
 public:
  virtual ~LinearAdapter() = default;
  // y[rows, lin.out] += the adapter's term for x[rows, lin.in]; called after the base y = x W^T + b.
  virtual void Forward(const Linear& lin, const float* x, int64_t rows, float* y) = 0;
  // Adapter parameter gradients += from (x, dy); x[rows, in] is still the forward input here.
  virtual void BackwardParams(const Linear& lin, const float* x, const float* dy, int64_t rows) = 0;
  // dx[rows, lin.in] += the adapter's input gradient of the preceding BackwardParams (same lin, rows).
  virtual void BackwardInput(const Linear& lin, int64_t rows, float* dx) = 0;
};

}  // namespace tributary
