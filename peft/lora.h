// LoRA adapters for LlamaModel (FedIT: clients train and FedAvg only the adapters).
//
// For every targeted projection W [out, in] of every layer the adapter holds A [r, in] and B [out, r]
// and adds scaling * B A x to the projection's output, scaling = alpha / r (HF PEFT, use_rslora off):
//   forward   y  += scaling * (drop(x) A^T) B^T
//   backward  dB += scaling * dy^T (drop(x) A^T),  dA += scaling * (dy B)^T drop(x),
//             dx += scaling * drop'((dy B) A)
// The [rows, r] intermediate is recomputed in backward (it costs as much as the dA product) so the
// adapter keeps no per-forward state and generation may run through the same hook.
//
// Parameters and gradients are two Arenas over the adapter's own TensorTable with HF PEFT names
// ("base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight", "...mlp.up_proj.lora_B.weight"),
// in layer order, then q, k, v, o, gate, up, down, A before B. So an optimizer (CreateOptimizer over
// table_ptr()), a FedAvg of adapters (params().data(), params().size(): padding stays zero) and a
// checkpoint each handle one flat buffer, and the base model stays untouched.
//
// Dropout (PEFT lora_dropout, applied to the adapter's input only): with dropout p > 0 and training
// mode on, element (row, col) of x is kept with probability 1 - p and scaled by 1 / (1 - p); the mask
// is a counter-based hash of (seed, dropout step, layer, projection, row, col), so forward and backward
// of one step agree without storing it. The caller advances the step (NextDropoutStep) once per
// forward/backward pair. The mask is NOT torch's random stream (bitwise PEFT parity holds only for
// p = 0). In eval mode (the default) dropout is the identity.
//
// Backend: the adapters hold a Backend (engine/backend.h; the CPU backend unless Create/Load get one)
// and run every GEMM, the dropout mask and the input-gradient add through it; params, grads and the
// scratch buffers are memory of its buffer type. Attach checks that the model computes on the same
// memory. Host-only paths (Save, Load's reads, InitRandom) stage through the host when the memory is
// not host memory. Not thread-safe: one model's passes run one at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/arena.h"
#include "engine/backend.h"
#include "engine/buffer.h"
#include "engine/model/linear_adapter.h"
#include "engine/model/llama_config.h"
#include "engine/model/llama_model.h"

namespace tributary {

struct LoraOptions {
  int64_t rank = 8;
  double alpha = 16.0;
  double dropout = 0.0;  // in [0, 1)
  // Subset of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj (no duplicates).
  std::vector<std::string> target_modules = {"q_proj", "v_proj"};
  // "kaiming": A ~ U(-1/sqrt(in), 1/sqrt(in)), PEFT's default (kaiming_uniform_ with a = sqrt(5));
  // "gaussian": A ~ N(0, 1/r) (PEFT init_lora_weights="gaussian"). B = 0 either way.
  std::string init = "kaiming";
  uint64_t seed = 0;  // A's init and the dropout mask

  // InvalidArgument naming the field ("lora.rank: must be >= 1, got 0").
  Status Validate() const;
  double Scaling() const { return alpha / static_cast<double>(rank); }
};

// "q_proj" etc. for the seven adaptable kinds; "" for lm_head.
const char* LoraModuleName(ProjKind kind);
// HF PEFT key of a module's A (or B) weight.
std::string LoraTensorName(int64_t layer, ProjKind kind, bool lora_a);

class LoraAdapters : public LinearAdapter {
 public:
  // Builds the table for `config` (validated) and initialises A randomly from options.seed, B = 0,
  // so the adapted model equals the base exactly. backend: where the adapters live and compute (null:
  // the CPU backend); it must share its buffer type with the model they attach to.
  static Result<std::unique_ptr<LoraAdapters>> Create(const LlamaConfig& config, const LoraOptions& options,
                                                      std::shared_ptr<Backend> backend = nullptr);

  const LlamaConfig& config() const { return config_; }
  const LoraOptions& options() const { return options_; }
  float scaling() const { return scaling_; }
  Arena& params() { return params_; }
  const Arena& params() const { return params_; }
  Arena& grads() { return grads_; }
  const Arena& grads() const { return grads_; }
  std::shared_ptr<const TensorTable> table_ptr() const { return table_; }
  // The backend the adapters compute on (create their optimizer with it).
  const std::shared_ptr<Backend>& backend() const { return backend_; }
  void ZeroGrad() { grads_.Zero(); }

  // Re-draws A (B = 0) from `seed`.
  void InitRandom(uint64_t seed);

  // Dropout control (see the file comment). Training mode is off after Create.
  void SetTraining(bool training) { training_ = training; }
  bool training() const { return training_; }
  void NextDropoutStep() { ++dropout_step_; }
  void SetDropoutStep(uint64_t step) { dropout_step_ = step; }

  // Attaches to / detaches from a model built from the same config whose backend shares the adapters'
  // buffer type (checked); Attach also freezes the base projections (SetBaseTrainable(false)) unless
  // train_base.
  void Attach(LlamaModel& model, bool train_base = false);
  static void Detach(LlamaModel& model);

  // base W += scaling * B A for every targeted projection (Unmerge: -=). base_params has the
  // BuildLlamaTensorTable(config) layout in the adapters' backend memory (checked). Merge then Unmerge
  // restores W up to fp32 rounding.
  void MergeInto(Arena& base_params) const;
  void UnmergeFrom(Arena& base_params) const;

  // HF PEFT directory: adapter_config.json + adapter_model.safetensors (F32), each written atomically.
  Status Save(const std::string& dir, const std::string& base_model_name_or_path = "") const;
  // Reads a PEFT LoRA directory for a model with `config`: adapter_config.json fixes rank, alpha,
  // dropout and targets; every tensor must be present with the shape the config implies and no other
  // tensor may be there. Errors name the file and the field or tensor.
  static Result<std::unique_ptr<LoraAdapters>> Load(const std::string& dir, const LlamaConfig& config,
                                                    std::shared_ptr<Backend> backend = nullptr);
  // Parses adapter_config.json text into options (`source` names the file in errors).
  static Result<LoraOptions> ParseAdapterConfig(const std::string& text, const std::string& source);
  std::string AdapterConfigJson(const std::string& base_model_name_or_path) const;

  // LinearAdapter.
  void Forward(const Linear& lin, const float* x, int64_t rows, float* y) override;
  void BackwardParams(const Linear& lin, const float* x, const float* dy, int64_t rows) override;
  void BackwardInput(const Linear& lin, int64_t rows, float* dx) override;

  // One adapted projection.
  struct Module {
    ProjKind kind = ProjKind::kQ;
    int64_t layer = 0;
    int64_t in = 0, out = 0;
    size_t a_index = 0, b_index = 0;  // in the adapter table
    std::string base_weight;          // "model.layers.{i}.self_attn.q_proj.weight"
  };
  const std::vector<Module>& modules() const { return modules_; }
  // Index into modules() or -1 when (kind, layer) is not adapted.
  int64_t FindModule(ProjKind kind, int64_t layer) const;

 private:
  LoraAdapters(const LlamaConfig& config, const LoraOptions& options, std::shared_ptr<Backend> backend);
  // x itself, or x with the dropout mask applied (into drop_x_) in training mode.
  const float* AdapterInput(int64_t module, const float* x, int64_t rows, int64_t in);
  // out[rows * in] = x with the dropout mask of (seed, dropout step, module); out may alias x.
  void ApplyDropoutMask(int64_t module, int64_t rows, int64_t in, const float* x, float* out) const;
  // floats of scratch (grown on demand) in the backend's memory.
  float* Scratch(Buffer& buffer, int64_t floats);
  void AddMerged(Arena& base_params, float sign) const;

  LlamaConfig config_;
  LoraOptions options_;
  std::shared_ptr<Backend> backend_;
  float scaling_ = 1.0f;
  std::shared_ptr<TensorTable> table_;
  Arena params_;
  Arena grads_;
  std::vector<Module> modules_;
  std::vector<int64_t> module_of_;  // [layer * 7 + kind] -> module or -1

  bool training_ = false;
  uint64_t dropout_step_ = 0;
  // Scratch: dropped input [rows, in], x A^T [rows, r], dy B kept for BackwardInput [rows, r],
  // input-gradient product [rows, in] (dropout only).
  Buffer drop_x_, xa_, dyb_, dx_tmp_;
  int64_t pending_module_ = -1, pending_rows_ = 0;
};

}  // namespace tributary
