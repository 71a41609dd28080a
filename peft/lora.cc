#include "peft/lora.h"

#include <cblas.h>

#include <cmath>
#include <random>
#include <string>

namespace tributary {
namespace {

constexpr ProjKind kAdaptableKinds[] = {ProjKind::kQ,    ProjKind::kK,  ProjKind::kV,   ProjKind::kO,
                                        ProjKind::kGate, ProjKind::kUp, ProjKind::kDown};
constexpr int64_t kNumKinds = 7;

bool IsAttention(ProjKind kind) {
  return kind == ProjKind::kQ || kind == ProjKind::kK || kind == ProjKind::kV || kind == ProjKind::kO;
}

// splitmix64 finaliser: a well-mixed 64-bit hash of a counter.
uint64_t Mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
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

Result<std::unique_ptr<LoraAdapters>> LoraAdapters::Create(const LlamaConfig& config, const LoraOptions& options) {
  TRIB_RETURN_IF_ERROR(config.Validate());
  TRIB_RETURN_IF_ERROR(options.Validate());
  std::unique_ptr<LoraAdapters> adapters(new LoraAdapters(config, options));
  adapters->InitRandom(options.seed);
  return adapters;
}

LoraAdapters::LoraAdapters(const LlamaConfig& config, const LoraOptions& options)
    : config_(config),
      options_(options),
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
  params_ = Arena(table_);
  grads_ = Arena(table_);
}

void LoraAdapters::InitRandom(uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (const Module& m : modules_) {
    float* a = params_.tensor(m.a_index);
    const int64_t n = options_.rank * m.in;
    if (options_.init == "gaussian") {
      std::normal_distribution<float> normal(0.0f, 1.0f / static_cast<float>(options_.rank));
      for (int64_t i = 0; i < n; ++i) a[i] = normal(rng);
    } else {
      const float bound = 1.0f / std::sqrt(static_cast<float>(m.in));
      std::uniform_real_distribution<float> uniform(-bound, bound);
      for (int64_t i = 0; i < n; ++i) a[i] = uniform(rng);
    }
    for (float& b : params_.span(m.b_index)) b = 0.0f;
  }
}

int64_t LoraAdapters::FindModule(ProjKind kind, int64_t layer) const {
  if (kind == ProjKind::kLmHead || layer < 0 || layer >= config_.num_hidden_layers) return -1;
  return module_of_[layer * kNumKinds + static_cast<int64_t>(kind)];
}

void LoraAdapters::Attach(LlamaModel& model, bool train_base) {
  model.SetLinearAdapter(this);
  model.SetBaseTrainable(train_base);
}

void LoraAdapters::Detach(LlamaModel& model) {
  model.SetLinearAdapter(nullptr);
  model.SetBaseTrainable(true);
}

void LoraAdapters::ApplyDropoutMask(int64_t module, int64_t rows, int64_t in, float* v) const {
  const double p = options_.dropout;
  const float keep_scale = static_cast<float>(1.0 / (1.0 - p));
  // Keep when the top 53 bits of the hash, as a uniform in [0, 1), are >= p.
  const uint64_t stream = Mix(Mix(Mix(options_.seed ^ 0x4C6F5241ull) + dropout_step_) + static_cast<uint64_t>(module));
  for (int64_t i = 0; i < rows * in; ++i) {
    const double u = static_cast<double>(Mix(stream + static_cast<uint64_t>(i)) >> 11) * 0x1.0p-53;
    v[i] = u >= p ? v[i] * keep_scale : 0.0f;
  }
}

const float* LoraAdapters::AdapterInput(int64_t module, const float* x, int64_t rows, int64_t in) {
  if (!training_ || options_.dropout <= 0.0) return x;
  drop_x_.assign(x, x + rows * in);
  ApplyDropoutMask(module, rows, in, drop_x_.data());
  return drop_x_.data();
}

void LoraAdapters::Forward(const Linear& lin, const float* x, int64_t rows, float* y) {
  const int64_t mi = FindModule(lin.kind, lin.layer);
  if (mi < 0) return;
  const Module& m = modules_[mi];
  TRIB_CHECK(lin.in == m.in && lin.out == m.out);
  const int r = static_cast<int>(options_.rank), in = static_cast<int>(m.in), out = static_cast<int>(m.out);
  const int n = static_cast<int>(rows);
  const float* xin = AdapterInput(mi, x, rows, m.in);
  xa_.resize(static_cast<size_t>(rows * options_.rank));
  // xa[rows, r] = xin A^T; y += scaling * xa B^T
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, r, in, 1.0f, xin, in, params_.tensor(m.a_index), in, 0.0f,
              xa_.data(), r);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, r, scaling_, xa_.data(), r, params_.tensor(m.b_index), r,
              1.0f, y, out);
}

void LoraAdapters::BackwardParams(const Linear& lin, const float* x, const float* dy, int64_t rows) {
  pending_module_ = -1;
  const int64_t mi = FindModule(lin.kind, lin.layer);
  if (mi < 0) return;
  const Module& m = modules_[mi];
  TRIB_CHECK(lin.in == m.in && lin.out == m.out);
  const int r = static_cast<int>(options_.rank), in = static_cast<int>(m.in), out = static_cast<int>(m.out);
  const int n = static_cast<int>(rows);
  const float* xin = AdapterInput(mi, x, rows, m.in);
  xa_.resize(static_cast<size_t>(rows * options_.rank));
  dyb_.resize(static_cast<size_t>(rows * options_.rank));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, r, in, 1.0f, xin, in, params_.tensor(m.a_index), in, 0.0f,
              xa_.data(), r);
  // dB[out, r] += scaling * dy^T xa
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, r, n, scaling_, dy, out, xa_.data(), r, 1.0f,
              grads_.tensor(m.b_index), r);
  // dyb[rows, r] = dy B; dA[r, in] += scaling * dyb^T xin
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, r, out, 1.0f, dy, out, params_.tensor(m.b_index), r, 0.0f,
              dyb_.data(), r);
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, in, n, scaling_, dyb_.data(), r, xin, in, 1.0f,
              grads_.tensor(m.a_index), in);
  pending_module_ = mi;
  pending_rows_ = rows;
}

void LoraAdapters::BackwardInput(const Linear& lin, int64_t rows, float* dx) {
  const int64_t mi = FindModule(lin.kind, lin.layer);
  if (mi < 0) return;
  TRIB_CHECK(mi == pending_module_ && rows == pending_rows_);  // BackwardParams of the same linear ran first
  pending_module_ = -1;
  const Module& m = modules_[mi];
  const int r = static_cast<int>(options_.rank), in = static_cast<int>(m.in), n = static_cast<int>(rows);
  const float* a = params_.tensor(m.a_index);
  if (!training_ || options_.dropout <= 0.0) {
    // dx[rows, in] += scaling * dyb A
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, r, scaling_, dyb_.data(), r, a, in, 1.0f, dx, in);
    return;
  }
  dx_tmp_.resize(static_cast<size_t>(rows * m.in));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, r, scaling_, dyb_.data(), r, a, in, 0.0f,
              dx_tmp_.data(), in);
  ApplyDropoutMask(mi, rows, m.in, dx_tmp_.data());
  for (int64_t i = 0; i < rows * m.in; ++i) dx[i] += dx_tmp_[i];
}

void LoraAdapters::AddMerged(Arena& base_params, float sign) const {
  for (const Module& m : modules_) {
    float* w = base_params.tensor(m.base_weight);
    TRIB_CHECK(w != nullptr);  // base_params must have this model's layout
    const int r = static_cast<int>(options_.rank), in = static_cast<int>(m.in), out = static_cast<int>(m.out);
    // W[out, in] += sign * scaling * B A
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, in, r, sign * scaling_, params_.tensor(m.b_index), r,
                params_.tensor(m.a_index), in, 1.0f, w, in);
  }
}

void LoraAdapters::MergeInto(Arena& base_params) const {
  AddMerged(base_params, 1.0f);
}
void LoraAdapters::UnmergeFrom(Arena& base_params) const {
  AddMerged(base_params, -1.0f);
}

}  // namespace tributary
