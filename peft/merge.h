// Model merging (`tributary merge CONFIG.yaml -o DIR`), with mergekit's YAML layout:
//
//   merge_method: linear | task_arithmetic | ties | dare_linear | dare_ties | slerp
//   base_model: DIR            # task_arithmetic, ties: the model the task vectors are taken from;
//                              # slerp: the t = 0 end
//   models:
//     - model: DIR             # an HF model directory, or BASE+ADAPTER: a PEFT LoRA adapter merged
//       parameters:            #   into its base first (W += scale * B A)
//         weight: 0.5          # linear, task_arithmetic, ties
//         density: 0.5         # ties: the share of each task vector kept (largest magnitudes);
//                              # dare_*: the probability each element is kept
//   seed: 0                    # dare_*: the random drops
//   parameters:
//     t: 0.5                   # slerp
//     normalize: true          # linear, ties: divide by the sum of the weights
//   dtype: float32 | bfloat16 | float16   # output storage (default: the first input's)
//
// Per tensor, in fp64, in the order the models are listed:
//   linear           sum_i w_i θ_i  (/ sum_i w_i when normalize)
//   task_arithmetic  θ_base + sum_i w_i (θ_i - θ_base)
//   ties             τ_i = θ_i - θ_base trimmed to its top `density` by magnitude; the elected sign of
//                    each coordinate is that of sum_i w_i τ_i; θ_base + sum over agreeing i of w_i τ_i,
//                    divided by the sum of those w_i when normalize (Yadav et al. 2023, as mergekit)
//   dare_linear      task_arithmetic on task vectors whose elements are each kept with probability
//                    `density` and rescaled by 1 / density (Yu et al. 2023), the drops seeded by
//                    (seed, model index, tensor index)
//   dare_ties        ties' sign election on the same DARE task vectors
//   slerp            spherical interpolation of the flattened tensors at t (linear when they are
//                    nearly colinear), as mergekit's slerp
// Every input must have the base's architecture and tensor shapes; errors name both models and the
// tensor. Inputs are read whole (one fp32 copy per input model in memory).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/io/safetensors.h"

namespace tributary {

enum class MergeMethod { kLinear, kTaskArithmetic, kTies, kDareLinear, kDareTies, kSlerp };

struct MergeInput {
  std::string model;    // HF directory
  std::string adapter;  // PEFT LoRA directory merged into `model` first ("" = none)
  double weight = 1.0;
  double density = 1.0;
};

struct MergeConfig {
  MergeMethod method = MergeMethod::kLinear;
  std::string base_model;  // "" when the method needs none
  std::vector<MergeInput> models;
  double t = 0.5;
  bool normalize = true;
  uint64_t seed = 0;  // dare_*
  bool dtype_set = false;
  SafetensorsDType dtype = SafetensorsDType::kF32;
};

// Parses the YAML text; InvalidArgument naming `source`, and the key or list item, for anything unknown,
// missing or out of range.
Result<MergeConfig> ParseMergeConfig(const std::string& yaml, const std::string& source);

// Merges and writes an HF model directory to `out_dir` (config and tokenizer files from the base, else the
// first model; generation_config.json too).
Status MergeModels(const MergeConfig& config, const std::string& out_dir);

}  // namespace tributary
