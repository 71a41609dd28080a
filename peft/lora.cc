#include "peft/lora.h"

#include <cmath>
#include <random>
#include <string>

#include "engine/cpu/cpu_backend.h"

namespace tributary {
namespace {

constexpr ProjKind kAdaptableKinds[] = {ProjKind::kQ,    ProjKind::kK,  ProjKind::kV,   ProjKind::kO,
                                        ProjKind::kGate, ProjKind::kUp, ProjKind::kDown};
constexpr int64_t kNumKinds = 7;

bool IsAttention(ProjKind kind) {
  return kind == ProjKind::kQ || kind == ProjKind::kK || kind == ProjKind::kV || kind == ProjKind::kO;
}

}  // namespace

const char* LoraModuleName(ProjKind kind) {
  switch (kind) {
    case ProjKind::kQ: return "q_proj";
    case ProjKind::kK: return "k_proj";
    case ProjKind::kV: return "v_proj";
    case ProjKind::kO: return "o_proj";
    case ProjKind::kGate: return "gate_proj";
    case ProjKind::kUp: return "up_proj";
    case ProjKind::kDown: return "down_proj";
    case ProjKind::kLmHead: return "";
  }
  return "";
}

std::string LoraTensorName(int64_t layer, ProjKind kind, bool lora_a) {
  return "base_model.model.model.layers." + std::to_string(layer) + (IsAttention(kind) ? ".self_attn." : ".mlp.") +
         LoraModuleName(kind) + (lora_a ? ".lora_A.weight" : ".lora_B.weight");
}

Status LoraOptions::Validate() const {
  if (rank < 1) return Status::InvalidArgument("lora.rank: must be >= 1, got " + std::to_string(rank));
  if (!std::isfinite(alpha) || alpha <= 0.0)
    return Status::InvalidArgument("lora.alpha: must be a finite number > 0, got " + std::to_string(alpha));
  if (!(dropout >= 0.0 && dropout < 1.0))
    return Status::InvalidArgument("lora.dropout: must be in [0, 1), got " + std::to_string(dropout));
  if (target_modules.empty()) return Status::InvalidArgument("lora.target_modules: must name at least one module");
  for (size_t i = 0; i < target_modules.size(); ++i) {
    bool known = false;
    for (ProjKind kind : kAdaptableKinds) known = known || target_modules[i] == LoraModuleName(kind);
    if (!known)
      return Status::InvalidArgument("lora.target_modules: unknown module '" + target_modules[i] +
                                     "' (expected q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj or down_proj)");
    for (size_t j = 0; j < i; ++j)
      if (target_modules[j] == target_modules[i])
        return Status::InvalidArgument("lora.target_modules: '" + target_modules[i] + "' is listed twice");
  }
  if (init != "kaiming" && init != "gaussian")
    return Status::InvalidArgument("lora.init: expected 'kaiming' or 'gaussian', got '" + init + "'");
  return Status::OK();
}

Result<std::unique_ptr<LoraAdapters>> LoraAdapters::Create(const LlamaConfig& config, const LoraOptions& options,
                                                           std::shared_ptr<Backend> backend) {
  TRIB_RETURN_IF_ERROR(config.Validate());
  TRIB_RETURN_IF_ERROR(options.Validate());
  if (!backend) backend = CpuBackend::Shared();
  std::unique_ptr<LoraAdapters> adapters(new LoraAdapters(config, options, std::move(backend)));
  adapters->InitRandom(options.seed);
  return adapters;
}

LoraAdapters::LoraAdapters(const LlamaConfig& config, const LoraOptions& options, std::shared_ptr<Backend> backend)
    : config_(config),
      options_(options),
      backend_(std::move(backend)),
      scaling_(static_cast<float>(options.Scaling())),
      table_(std::make_shared<TensorTable>()) {
  const int64_t H = config.hidden_size, I = config.intermediate_size, D = config.HeadDim();
  const int64_t Q = config.num_attention_heads * D, K = config.num_key_value_heads * D, r = options.rank;
  const int64_t L = config.num_hidden_layers;
  module_of_.assign(static_cast<size_t>(L * kNumKinds), -1);
  for (int64_t l = 0; l < L; ++l) {
    for (int64_t k = 0; k < kNumKinds; ++k) {
      const ProjKind kind = kAdaptableKinds[k];
      bool targeted = false;
      for (const std::string& name : options.target_modules) targeted = targeted || name == LoraModuleName(kind);
      if (!targeted) continue;
      Module m;
      m.kind = kind;
      m.layer = l;
      switch (kind) {
        case ProjKind::kQ: m.in = H, m.out = Q; break;
        case ProjKind::kK:
        case ProjKind::kV: m.in = H, m.out = K; break;
        case ProjKind::kO: m.in = Q, m.out = H; break;
        case ProjKind::kGate:
        case ProjKind::kUp: m.in = H, m.out = I; break;
        case ProjKind::kDown: m.in = I, m.out = H; break;
        case ProjKind::kLmHead: break;
      }
      m.a_index = table_->Add(LoraTensorName(l, kind, true), {r, m.in});
      m.b_index = table_->Add(LoraTensorName(l, kind, false), {m.out, r});
      m.base_weight = "model.layers." + std::to_string(l) + (IsAttention(kind) ? ".self_attn." : ".mlp.") +
                      LoraModuleName(kind) + ".weight";
      module_of_[l * kNumKinds + k] = static_cast<int64_t>(modules_.size());
      modules_.push_back(std::move(m));
    }
  }
  params_ = Arena(table_, backend_->buffer_type());
  grads_ = Arena(table_, backend_->buffer_type());
}

void LoraAdapters::InitRandom(uint64_t seed) {
  // Drawn on the host (in place for host memory, else staged and copied in).
  Arena staging;
  Arena& host = params_.is_host() ? params_ : (staging = Arena(table_));
  std::mt19937_64 rng(seed);
  for (const Module& m : modules_) {
    float* a = host.tensor(m.a_index);
    const int64_t n = options_.rank * m.in;
    if (options_.init == "gaussian") {
      std::normal_distribution<float> normal(0.0f, 1.0f / static_cast<float>(options_.rank));
      for (int64_t i = 0; i < n; ++i) a[i] = normal(rng);
    } else {
      const float bound = 1.0f / std::sqrt(static_cast<float>(m.in));
      std::uniform_real_distribution<float> uniform(-bound, bound);
      for (int64_t i = 0; i < n; ++i) a[i] = uniform(rng);
    }
    for (float& b : host.span(m.b_index)) b = 0.0f;
  }
  if (&host != &params_) params_.CopyFrom(host);
}

int64_t LoraAdapters::FindModule(ProjKind kind, int64_t layer) const {
  if (kind == ProjKind::kLmHead || layer < 0 || layer >= config_.num_hidden_layers) return -1;
  return module_of_[layer * kNumKinds + static_cast<int64_t>(kind)];
}

void LoraAdapters::Attach(LlamaModel& model, bool train_base) {
  TRIB_CHECK(&model.backend().buffer_type() == &backend_->buffer_type());  // one memory for model and adapters
  model.SetLinearAdapter(this);
  model.SetBaseTrainable(train_base);
}

void LoraAdapters::Detach(LlamaModel& model) {
  model.SetLinearAdapter(nullptr);
  model.SetBaseTrainable(true);
}

void LoraAdapters::ApplyDropoutMask(int64_t module, int64_t rows, int64_t in, const float* x, float* out) const {
  const uint64_t stream =
      SplitMix64(SplitMix64(SplitMix64(options_.seed ^ 0x4C6F5241ull) + dropout_step_) + static_cast<uint64_t>(module));
  backend_->Dropout(x, rows * in, stream, options_.dropout, out);
}

float* LoraAdapters::Scratch(Buffer& buffer, int64_t floats) {
  buffer.Reserve(backend_->buffer_type(), static_cast<size_t>(floats) * sizeof(float));
  return buffer.as<float>();
}

const float* LoraAdapters::AdapterInput(int64_t module, const float* x, int64_t rows, int64_t in) {
  if (!training_ || options_.dropout <= 0.0) return x;
  float* dropped = Scratch(drop_x_, rows * in);
  ApplyDropoutMask(module, rows, in, x, dropped);
  return dropped;
}

void LoraAdapters::Forward(const Linear& lin, const float* x, int64_t rows, float* y) {
  const int64_t mi = FindModule(lin.kind, lin.layer);
  if (mi < 0) return;
  const Module& m = modules_[mi];
  TRIB_CHECK(lin.in == m.in && lin.out == m.out);
  const int64_t r = options_.rank, in = m.in, out = m.out;
  const float* xin = AdapterInput(mi, x, rows, m.in);
  float* xa = Scratch(xa_, rows * r);
  // xa[rows, r] = xin A^T; y += scaling * xa B^T
  backend_->Gemm(false, true, rows, r, in, 1.0f, xin, in, params_.tensor(m.a_index), in, 0.0f, xa, r);
  backend_->Gemm(false, true, rows, out, r, scaling_, xa, r, params_.tensor(m.b_index), r, 1.0f, y, out);
}

void LoraAdapters::BackwardParams(const Linear& lin, const float* x, const float* dy, int64_t rows) {
  pending_module_ = -1;
  const int64_t mi = FindModule(lin.kind, lin.layer);
  if (mi < 0) return;
  const Module& m = modules_[mi];
  TRIB_CHECK(lin.in == m.in && lin.out == m.out);
  const int64_t r = options_.rank, in = m.in, out = m.out;
  const float* xin = AdapterInput(mi, x, rows, m.in);
  float* xa = Scratch(xa_, rows * r);
  float* dyb = Scratch(dyb_, rows * r);
  backend_->Gemm(false, true, rows, r, in, 1.0f, xin, in, params_.tensor(m.a_index), in, 0.0f, xa, r);
  // dB[out, r] += scaling * dy^T xa
  backend_->Gemm(true, false, out, r, rows, scaling_, dy, out, xa, r, 1.0f, grads_.tensor(m.b_index), r);
  // dyb[rows, r] = dy B; dA[r, in] += scaling * dyb^T xin
  backend_->Gemm(false, false, rows, r, out, 1.0f, dy, out, params_.tensor(m.b_index), r, 0.0f, dyb, r);
  backend_->Gemm(true, false, r, in, rows, scaling_, dyb, r, xin, in, 1.0f, grads_.tensor(m.a_index), in);
  pending_module_ = mi;
  pending_rows_ = rows;
}

void LoraAdapters::BackwardInput(const Linear& lin, int64_t rows, float* dx) {
  const int64_t mi = FindModule(lin.kind, lin.layer);
  if (mi < 0) return;
  TRIB_CHECK(mi == pending_module_ && rows == pending_rows_);  // BackwardParams of the same linear ran first
  pending_module_ = -1;
  const Module& m = modules_[mi];
  const int64_t r = options_.rank, in = m.in;
  const float* a = params_.tensor(m.a_index);
  const float* dyb = dyb_.as<float>();
  if (!training_ || options_.dropout <= 0.0) {
    // dx[rows, in] += scaling * dyb A
    backend_->Gemm(false, false, rows, in, r, scaling_, dyb, r, a, in, 1.0f, dx, in);
    return;
  }
  float* dx_tmp = Scratch(dx_tmp_, rows * in);
  backend_->Gemm(false, false, rows, in, r, scaling_, dyb, r, a, in, 0.0f, dx_tmp, in);
  ApplyDropoutMask(mi, rows, in, dx_tmp, dx_tmp);
  backend_->Add(dx, dx_tmp, rows * in, dx);
}

void LoraAdapters::AddMerged(Arena& base_params, float sign) const {
  TRIB_CHECK(&base_params.buffer_type() == &backend_->buffer_type());
  for (const Module& m : modules_) {
    float* w = base_params.tensor(m.base_weight);
    TRIB_CHECK(w != nullptr);  // base_params must have this model's layout
    const int64_t r = options_.rank, in = m.in, out = m.out;
    // W[out, in] += sign * scaling * B A
    backend_->Gemm(false, false, out, in, r, sign * scaling_, params_.tensor(m.b_index), r, params_.tensor(m.a_index),
                   in, 1.0f, w, in);
  }
}

void LoraAdapters::MergeInto(Arena& base_params) const {
  AddMerged(base_params, 1.0f);
}
void LoraAdapters::UnmergeFrom(Arena& base_params) const {
  AddMerged(base_params, -1.0f);
}

}  // namespace tributary
