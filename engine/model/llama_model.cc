#include "engine/model/llama_model.h"

#include <cmath>
#include <numbers>
#include <random>
#include <string>

#include "engine/cpu/cpu_backend.h"

namespace tributary {
namespace {

int64_t Align16(int64_t n) {
  return (n + 15) / 16 * 16;
}

}  // namespace

std::vector<double> RopeInvFreq(const LlamaConfig& config) {
  const int64_t D = config.HeadDim();
  std::vector<double> inv(static_cast<size_t>(D / 2));
  for (int64_t i = 0; i < D / 2; ++i)
    inv[i] = 1.0 / std::pow(config.rope_theta, static_cast<double>(2 * i) / static_cast<double>(D));
  const RopeScaling& rs = config.rope_scaling;
  if (rs.type == "llama3") {
    // Llama 3.1: long wavelengths are divided by factor, short ones kept, the band between is blended.
    const double old_len = static_cast<double>(rs.original_max_position_embeddings);
    const double low_wavelen = old_len / rs.low_freq_factor;
    const double high_wavelen = old_len / rs.high_freq_factor;
    for (double& f : inv) {
      const double wavelen = 2.0 * std::numbers::pi / f;
      if (wavelen > low_wavelen) {
        f = f / rs.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (old_len / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
        f = (1.0 - smooth) * f / rs.factor + smooth * f;
      }
    }
  }
  return inv;
}

void BuildRopeTables(const LlamaConfig& config, int64_t num_positions, std::vector<float>* cos,
                     std::vector<float>* sin) {
  const std::vector<double> inv = RopeInvFreq(config);
  const int64_t half = static_cast<int64_t>(inv.size());
  cos->resize(static_cast<size_t>(num_positions * half));
  sin->resize(static_cast<size_t>(num_positions * half));
  for (int64_t p = 0; p < num_positions; ++p)
    for (int64_t j = 0; j < half; ++j) {
      const double angle = static_cast<double>(p) * inv[j];
      (*cos)[p * half + j] = static_cast<float>(std::cos(angle));
      (*sin)[p * half + j] = static_cast<float>(std::sin(angle));
    }
}

Result<std::unique_ptr<LlamaModel>> LlamaModel::Create(const LlamaConfig& config, std::shared_ptr<Backend> backend) {
  TRIB_RETURN_IF_ERROR(config.Validate());
  if (!backend) backend = std::make_shared<CpuBackend>();
  return std::unique_ptr<LlamaModel>(new LlamaModel(config, std::move(backend)));
}

LlamaModel::LlamaModel(const LlamaConfig& config, std::shared_ptr<Backend> backend)
    : config_(config),
      backend_(std::move(backend)),
      table_(BuildLlamaTensorTable(config)),
      params_(table_, backend_->buffer_type()),
      grads_(table_, backend_->buffer_type()) {
  const int64_t head = table_->IndexOf(config_.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight");
  const int64_t norm = table_->IndexOf("model.norm.weight");
  TRIB_CHECK(head >= 0 && norm >= 0);
  lm_head_index_ = static_cast<size_t>(head);
  norm_index_ = static_cast<size_t>(norm);
  auto offset = [&](const std::string& name) {
    const TensorEntry* e = table_->Find(name);
    return e ? e->offset : int64_t{-1};
  };
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    layer_offsets_.push_back({offset(p + "input_layernorm.weight"), offset(p + "self_attn.q_proj.weight"),
                              offset(p + "self_attn.q_proj.bias"), offset(p + "self_attn.k_proj.weight"),
                              offset(p + "self_attn.k_proj.bias"), offset(p + "self_attn.v_proj.weight"),
                              offset(p + "self_attn.v_proj.bias"), offset(p + "self_attn.o_proj.weight"),
                              offset(p + "post_attention_layernorm.weight"), offset(p + "mlp.gate_proj.weight"),
                              offset(p + "mlp.up_proj.weight"), offset(p + "mlp.down_proj.weight")});
  }
}

void LlamaModel::InitRandom(uint64_t seed, float stddev) {
  // Drawn on the host (in place for host memory, else staged and copied in).
  Arena staging;
  Arena& host = params_.is_host() ? params_ : (staging = Arena(table_));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  for (size_t i = 0; i < table_->size(); ++i) {
    const TensorEntry& e = (*table_)[i];
    float* p = host.tensor(i);
    const bool is_norm = e.name.find("norm.weight") != std::string::npos;
    const bool is_bias = e.name.size() > 5 && e.name.compare(e.name.size() - 5, 5, ".bias") == 0;
    for (int64_t j = 0; j < e.numel; ++j) p[j] = is_norm ? 1.0f : is_bias ? 0.0f : normal(rng);
  }
  if (&host != &params_) params_.CopyFrom(host);
}

LlamaLayerTensors LlamaModel::LayerTensors(Arena& arena, int64_t layer) const {
  TRIB_CHECK(arena.size() == table_->total_elems());
  const LayerOffsets& o = layer_offsets_[static_cast<size_t>(layer)];
  float* base = arena.data();
  auto at = [base](int64_t offset) { return offset >= 0 ? base + offset : nullptr; };
  LlamaLayerTensors t;
  t.input_norm = at(o.input_norm);
  t.q = at(o.q);
  t.q_bias = at(o.q_bias);
  t.k = at(o.k);
  t.k_bias = at(o.k_bias);
  t.v = at(o.v);
  t.v_bias = at(o.v_bias);
  t.o = at(o.o);
  t.post_norm = at(o.post_norm);
  t.gate = at(o.gate);
  t.up = at(o.up);
  t.down = at(o.down);
  return t;
}

Linear LlamaModel::MakeLinear(ProjKind kind, int64_t layer, bool with_grads) {
  const int64_t H = config_.hidden_size, I = config_.intermediate_size, D = config_.HeadDim();
  const int64_t Q = config_.num_attention_heads * D, K = config_.num_key_value_heads * D;
  with_grads = with_grads && base_trainable_;  // LoRA hook: frozen base projections get no gradient
  Linear lin;
  lin.kind = kind;
  lin.layer = layer;
  if (kind == ProjKind::kLmHead) {
    lin.in = H;
    lin.out = config_.vocab_size;
    lin.weight = params_.tensor(lm_head_index_);
    if (with_grads) lin.weight_grad = grads_.tensor(lm_head_index_);
    return lin;
  }
  const LlamaLayerTensors p = LayerTensors(params_, layer);
  LlamaLayerTensors g;
  if (with_grads) g = LayerTensors(grads_, layer);
  switch (kind) {
    case ProjKind::kQ: lin = {kind, layer, H, Q, p.q, p.q_bias, g.q, g.q_bias}; break;
    case ProjKind::kK: lin = {kind, layer, H, K, p.k, p.k_bias, g.k, g.k_bias}; break;
    case ProjKind::kV: lin = {kind, layer, H, K, p.v, p.v_bias, g.v, g.v_bias}; break;
    case ProjKind::kO: lin = {kind, layer, Q, H, p.o, nullptr, g.o, nullptr}; break;
    case ProjKind::kGate: lin = {kind, layer, H, I, p.gate, nullptr, g.gate, nullptr}; break;
    case ProjKind::kUp: lin = {kind, layer, H, I, p.up, nullptr, g.up, nullptr}; break;
    case ProjKind::kDown: lin = {kind, layer, I, H, p.down, nullptr, g.down, nullptr}; break;
    case ProjKind::kLmHead: break;
  }
  return lin;
}

void LlamaModel::LinearForward(const Linear& lin, const float* x, int64_t rows, float* y, float beta) {
  backend_->Gemm(false, true, rows, lin.out, lin.in, 1.0f, x, lin.in, lin.weight, lin.in, beta, y, lin.out);
  if (lin.bias) backend_->BiasForward(y, lin.bias, rows, lin.out);
  if (adapter_) adapter_->Forward(lin, x, rows, y);  // LoRA hook
}

void LlamaModel::LinearBackward(const Linear& lin, const float* x, const float* dy, int64_t rows, float* dx,
                                float dx_beta) {
  if (lin.weight_grad)
    backend_->Gemm(true, false, lin.out, lin.in, rows, 1.0f, dy, lin.out, x, lin.in, 1.0f, lin.weight_grad, lin.in);
  if (lin.bias_grad) backend_->BiasBackward(dy, rows, lin.out, lin.bias_grad);
  if (adapter_) adapter_->BackwardParams(lin, x, dy, rows);  // LoRA hook: reads x before dx may overwrite it
  if (dx)
    backend_->Gemm(false, false, rows, lin.in, lin.out, 1.0f, dy, lin.out, lin.weight, lin.in, dx_beta, dx, lin.in);
  if (dx && adapter_) adapter_->BackwardInput(lin, rows, dx);  // LoRA hook
}

void LlamaModel::EnsureRope(int64_t num_positions) {
  if (num_positions <= rope_positions_) return;
  std::vector<float> cos, sin;
  BuildRopeTables(config_, num_positions, &cos, &sin);
  const size_t table_bytes = cos.size() * sizeof(float);
  rope_ = Buffer();  // free first so the peak never holds both tables
  rope_ = Buffer(backend_->buffer_type(), 2 * table_bytes, BufferInit::kUninitialized);
  backend_->CopyHostToBackend(rope_.as<float>(), cos.data(), table_bytes);
  backend_->CopyHostToBackend(rope_.as<float>() + cos.size(), sin.data(), table_bytes);
  rope_positions_ = num_positions;
}

int64_t LlamaModel::ActivationFloats(const LlamaConfig& c, int64_t B, int64_t T) {
  const int64_t N = B * T, H = c.hidden_size, I = c.intermediate_size, D = c.HeadDim();
  const int64_t Q = c.num_attention_heads * D, K = c.num_key_value_heads * D, NH = c.num_attention_heads;
  const int64_t P = B * NH * T * T;
  const int64_t per_layer =
      Align16(N * H) * 4 + Align16(N * Q) * 2 + Align16(N * K) * 2 + Align16(N * I) * 2 + Align16(N) * 2 + Align16(P);
  const int64_t final = Align16(N * H) * 2 + Align16(N * c.vocab_size) + Align16(N) * 3;
  const int64_t scratch = Align16(N * H) * 2 + Align16(N * I) + Align16(N * Q) + Align16(N * K) * 2 + Align16(P);
  return per_layer * c.num_hidden_layers + final + scratch;
}

void LlamaModel::EnsureActivations(int64_t B, int64_t T) {
  const int64_t need = ActivationFloats(config_, B, T);
  if (need > act_capacity_) {
    act_ = Buffer();  // free first so the peak never holds both buffers
    act_ = Buffer(backend_->buffer_type(), static_cast<size_t>(need) * sizeof(float), BufferInit::kUninitialized);
    act_capacity_ = need;
  }
  B_ = B;
  T_ = T;
  const int64_t N = B * T, H = config_.hidden_size, I = config_.intermediate_size, D = config_.HeadDim();
  const int64_t Q = config_.num_attention_heads * D, K = config_.num_key_value_heads * D;
  const int64_t P = B * config_.num_attention_heads * T * T;
  float* cursor = act_.as<float>();
  auto take = [&](int64_t n) {
    float* p = cursor;
    cursor += Align16(n);
    return p;
  };
  layer_acts_.resize(static_cast<size_t>(config_.num_hidden_layers));
  for (LayerActs& a : layer_acts_) {
    a.x = take(N * H);
    a.rstd1 = take(N);
    a.ln1 = take(N * H);
    a.q = take(N * Q);
    a.k = take(N * K);
    a.v = take(N * K);
    a.probs = take(P);
    a.attn = take(N * Q);
    a.xmid = take(N * H);
    a.rstd2 = take(N);
    a.ln2 = take(N * H);
    a.gate = take(N * I);
    a.up = take(N * I);
  }
  x_final_ = take(N * H);
  rstd_final_ = take(N);
  ln_final_ = take(N * H);
  logits_ = take(N * config_.vocab_size);
  lse_ = take(N);
  row_loss_ = take(N);
  scratch_h_ = take(N * H);
  scratch_dln_ = take(N * H);
  scratch_mlp_ = take(N * I);
  scratch_dq_ = take(N * Q);
  scratch_dk_ = take(N * K);
  scratch_dv_ = take(N * K);
  scratch_dprobs_ = take(P);
  TRIB_CHECK(cursor - act_.as<float>() == need);
}

void LlamaModel::CopyInputs(const int32_t* tokens, const int32_t* targets, const uint8_t* loss_mask, int64_t B,
                            int64_t T) {
  const int64_t N = B * T;
  const size_t ids = static_cast<size_t>(Align16(N)) * sizeof(int32_t);
  const size_t need = 3 * ids + static_cast<size_t>(Align16(N));
  if (inputs_.data() == nullptr || inputs_.bytes() < need) {
    inputs_ = Buffer(backend_->buffer_type(), need, BufferInit::kUninitialized);
    positions_shape_[0] = positions_shape_[1] = 0;
  }
  char* base = inputs_.as<char>();
  tokens_ = reinterpret_cast<int32_t*>(base);
  positions_ = reinterpret_cast<int32_t*>(base + ids);
  targets_ = reinterpret_cast<int32_t*>(base + 2 * ids);
  mask_ = reinterpret_cast<uint8_t*>(base + 3 * ids);
  const size_t n = static_cast<size_t>(N);
  backend_->CopyHostToBackend(tokens_, tokens, n * sizeof(int32_t));
  if (positions_shape_[0] != B || positions_shape_[1] != T) {
    std::vector<int32_t> positions(n);
    for (int64_t i = 0; i < N; ++i) positions[i] = static_cast<int32_t>(i % T);
    backend_->CopyHostToBackend(positions_, positions.data(), n * sizeof(int32_t));
    positions_shape_[0] = B;
    positions_shape_[1] = T;
  }
  has_mask_ = loss_mask != nullptr;
  if (!targets) return;
  // Masked targets may hold anything (e.g. -100); give the kernel a valid index.
  host_targets_.assign(targets, targets + N);
  for (int64_t i = 0; i < N; ++i)
    if (has_mask_ && loss_mask[i] == 0) host_targets_[i] = 0;
  backend_->CopyHostToBackend(targets_, host_targets_.data(), n * sizeof(int32_t));
  if (has_mask_) backend_->CopyHostToBackend(mask_, loss_mask, n);
}

void LlamaModel::ReadLogits(int64_t first_row, int64_t rows, float* host_dst) const {
  TRIB_CHECK(first_row >= 0 && rows >= 0 && first_row + rows <= B_ * T_);
  const int64_t V = config_.vocab_size;
  backend_->CopyBackendToHost(host_dst, logits_ + first_row * V, static_cast<size_t>(rows * V) * sizeof(float));
}

Status LlamaModel::ValidateTokens(const int32_t* tokens, int64_t n, const char* what) const {
  for (int64_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= config_.vocab_size)
      return Status::InvalidArgument(std::string(what) + "[" + std::to_string(i) + "] = " + std::to_string(tokens[i]) +
                                     " is out of range for vocab_size " + std::to_string(config_.vocab_size));
  return Status::OK();
}

Status LlamaModel::Forward(const int32_t* tokens, const uint8_t* loss_mask, const int32_t* targets, int64_t B,
                           int64_t T, float* loss_out) {
  backward_ready_ = false;
  if (B < 1 || T < 1)
    return Status::InvalidArgument("batch shape [" + std::to_string(B) + ", " + std::to_string(T) +
                                   "]: batch size and sequence length must be >= 1");
  if (T > config_.max_position_embeddings)
    return Status::InvalidArgument("sequence length " + std::to_string(T) + " exceeds max_position_embeddings " +
                                   std::to_string(config_.max_position_embeddings));
  const int64_t N = B * T;
  TRIB_RETURN_IF_ERROR(ValidateTokens(tokens, N, "tokens"));
  if (targets) {
    for (int64_t i = 0; i < N; ++i)
      if ((loss_mask == nullptr || loss_mask[i] != 0) && (targets[i] < 0 || targets[i] >= config_.vocab_size))
        return Status::InvalidArgument("targets[" + std::to_string(i) + "] = " + std::to_string(targets[i]) +
                                       " is out of range for vocab_size " + std::to_string(config_.vocab_size));
  }
  EnsureActivations(B, T);
  EnsureRope(T);
  CopyInputs(tokens, targets, loss_mask, B, T);

  Backend& be = *backend_;
  const LlamaConfig& c = config_;
  const int64_t H = c.hidden_size, I = c.intermediate_size, D = c.HeadDim();
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads;
  const float eps = static_cast<float>(c.rms_norm_eps);
  AttentionShape shape{B, T, T, NH, NKV, D, NH * D, NKV * D, T * NKV * D};

  be.EmbeddingForward(tokens_, N, params_.tensor(size_t{0}), H, layer_acts_[0].x);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    LayerActs& a = layer_acts_[l];
    const LlamaLayerTensors p = LayerTensors(params_, l);
    float* x_next = l + 1 < c.num_hidden_layers ? layer_acts_[l + 1].x : x_final_;
    be.RmsNormForward(a.x, p.input_norm, N, H, eps, a.ln1, a.rstd1);
    LinearForward(MakeLinear(ProjKind::kQ, l, false), a.ln1, N, a.q);
    LinearForward(MakeLinear(ProjKind::kK, l, false), a.ln1, N, a.k);
    LinearForward(MakeLinear(ProjKind::kV, l, false), a.ln1, N, a.v);
    be.RopeForward(a.q, N, NH * D, NH, D, positions_, rope_cos(), rope_sin());
    be.RopeForward(a.k, N, NKV * D, NKV, D, positions_, rope_cos(), rope_sin());
    be.AttentionForward(shape, a.q, a.k, a.v, a.probs, a.attn);
    LinearForward(MakeLinear(ProjKind::kO, l, false), a.attn, N, scratch_h_);
    be.Add(a.x, scratch_h_, N * H, a.xmid);
    be.RmsNormForward(a.xmid, p.post_norm, N, H, eps, a.ln2, a.rstd2);
    LinearForward(MakeLinear(ProjKind::kGate, l, false), a.ln2, N, a.gate);
    LinearForward(MakeLinear(ProjKind::kUp, l, false), a.ln2, N, a.up);
    be.SwiGluForward(a.gate, a.up, N * I, scratch_mlp_);
    LinearForward(MakeLinear(ProjKind::kDown, l, false), scratch_mlp_, N, scratch_h_);
    be.Add(a.xmid, scratch_h_, N * H, x_next);
  }
  be.RmsNormForward(x_final_, params_.tensor(norm_index_), N, H, eps, ln_final_, rstd_final_);
  LinearForward(MakeLinear(ProjKind::kLmHead, -1, false), ln_final_, N, logits_);

  loss_tokens_ = 0;
  if (!targets) {
    if (loss_out) *loss_out = 0.0f;
    return Status::OK();
  }
  for (int64_t i = 0; i < N; ++i) loss_tokens_ += (!has_mask_ || loss_mask[i] != 0) ? 1 : 0;
  const double total =
      be.CrossEntropyForward(logits_, targets_, has_mask_ ? mask_ : nullptr, N, c.vocab_size, lse_, row_loss_);
  if (loss_out) *loss_out = loss_tokens_ > 0 ? static_cast<float>(total / static_cast<double>(loss_tokens_)) : 0.0f;
  backward_ready_ = true;
  return Status::OK();
}

Status LlamaModel::Backward(float loss_scale) {
  if (!backward_ready_)
    return Status::FailedPrecondition(
        "LlamaModel::Backward: needs a preceding Forward with targets (once per Forward)");
  backward_ready_ = false;
  if (loss_tokens_ == 0) return Status::OK();  // nothing counted: zero gradient

  Backend& be = *backend_;
  const LlamaConfig& c = config_;
  const int64_t B = B_, T = T_, N = B * T, H = c.hidden_size, I = c.intermediate_size, D = c.HeadDim();
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads;
  AttentionShape shape{B, T, T, NH, NKV, D, NH * D, NKV * D, T * NKV * D};
  const uint8_t* mask = has_mask_ ? mask_ : nullptr;
  float* dres = scratch_h_;
  float* dln = scratch_dln_;

  const float scale = static_cast<float>(static_cast<double>(loss_scale) / static_cast<double>(loss_tokens_));
  be.CrossEntropyBackward(logits_, lse_, targets_, mask, N, c.vocab_size, scale, logits_);
  LinearBackward(MakeLinear(ProjKind::kLmHead, -1, true), ln_final_, logits_, N, dln);
  be.Memset(dres, 0, sizeof(float) * static_cast<size_t>(N * H));
  be.RmsNormBackward(dln, x_final_, params_.tensor(norm_index_), rstd_final_, N, H, dres, grads_.tensor(norm_index_));

  for (int64_t l = c.num_hidden_layers - 1; l >= 0; --l) {
    LayerActs& a = layer_acts_[l];
    const LlamaLayerTensors p = LayerTensors(params_, l);
    const LlamaLayerTensors g = LayerTensors(grads_, l);
    // MLP: x_next = xmid + down(silu(gate) * up)
    be.SwiGluForward(a.gate, a.up, N * I, scratch_mlp_);
    LinearBackward(MakeLinear(ProjKind::kDown, l, true), scratch_mlp_, dres, N, scratch_mlp_);
    be.SwiGluBackward(scratch_mlp_, a.gate, a.up, N * I, a.gate, a.up);
    LinearBackward(MakeLinear(ProjKind::kGate, l, true), a.ln2, a.gate, N, dln, 0.0f);
    LinearBackward(MakeLinear(ProjKind::kUp, l, true), a.ln2, a.up, N, dln, 1.0f);
    be.RmsNormBackward(dln, a.xmid, p.post_norm, a.rstd2, N, H, dres, g.post_norm);
    // Attention: xmid = x + o(attn(rope(q), rope(k), v))
    LinearBackward(MakeLinear(ProjKind::kO, l, true), a.attn, dres, N, scratch_dq_);
    be.AttentionBackward(shape, a.q, a.k, a.v, a.probs, scratch_dq_, scratch_dprobs_, scratch_dq_, scratch_dk_,
                         scratch_dv_);
    be.RopeBackward(scratch_dq_, N, NH * D, NH, D, positions_, rope_cos(), rope_sin());
    be.RopeBackward(scratch_dk_, N, NKV * D, NKV, D, positions_, rope_cos(), rope_sin());
    LinearBackward(MakeLinear(ProjKind::kQ, l, true), a.ln1, scratch_dq_, N, dln, 0.0f);
    LinearBackward(MakeLinear(ProjKind::kK, l, true), a.ln1, scratch_dk_, N, dln, 1.0f);
    LinearBackward(MakeLinear(ProjKind::kV, l, true), a.ln1, scratch_dv_, N, dln, 1.0f);
    be.RmsNormBackward(dln, a.x, p.input_norm, a.rstd1, N, H, dres, g.input_norm);
  }
  be.EmbeddingBackward(tokens_, N, dres, H, grads_.tensor(size_t{0}));
  return Status::OK();
}

}  // namespace tributary
