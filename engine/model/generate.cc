#include "engine/model/generate.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>

namespace tributary {

Result<KvCache> CreateKvCache(const LlamaConfig& config, int64_t batch, int64_t capacity) {
  if (batch < 1 || capacity < 1) return Status::InvalidArgument("KV cache: batch and capacity must be >= 1");
  if (capacity > config.max_position_embeddings)
    return Status::InvalidArgument("KV cache capacity " + std::to_string(capacity) +
                                   " exceeds max_position_embeddings " +
                                   std::to_string(config.max_position_embeddings));
  KvCache cache;
  cache.batch = batch;
  cache.capacity = capacity;
  const size_t per_layer = static_cast<size_t>(batch * capacity * config.num_key_value_heads * config.HeadDim());
  cache.k.assign(static_cast<size_t>(config.num_hidden_layers), std::vector<float>(per_layer, 0.0f));
  cache.v.assign(static_cast<size_t>(config.num_hidden_layers), std::vector<float>(per_layer, 0.0f));
  return cache;
}

Status ForwardCached(LlamaModel& model, KvCache& cache, const int32_t* tokens, int64_t n, std::vector<float>* logits) {
  const LlamaConfig& c = model.config();
  const int64_t B = cache.batch, N = B * n, start = cache.length, total = start + n;
  if (n < 1) return Status::InvalidArgument("ForwardCached: needs at least one token");
  if (total > cache.capacity)
    return Status::InvalidArgument("KV cache: " + std::to_string(total) + " positions exceed its capacity " +
                                   std::to_string(cache.capacity));
  TRIB_RETURN_IF_ERROR(model.ValidateTokens(tokens, N, "tokens"));
  Backend& be = model.backend();
  const int64_t H = c.hidden_size, I = c.intermediate_size, D = c.HeadDim();
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads, Q = NH * D, K = NKV * D;
  const float eps = static_cast<float>(c.rms_norm_eps);
  model.EnsureRope(total);

  std::vector<int32_t> positions(static_cast<size_t>(N));
  for (int64_t r = 0; r < N; ++r) positions[r] = static_cast<int32_t>(start + r % n);
  std::vector<float> x(N * H), ln(N * H), proj(N * H), rstd(N), q(N * Q), k(N * K), v(N * K), attn(N * Q);
  std::vector<float> gate(N * I), up(N * I), probs(B * NH * n * total);
  AttentionShape shape{B, n, total, NH, NKV, D, Q, K, cache.capacity * K};

  be.EmbeddingForward(tokens, N, model.params().tensor(size_t{0}), H, x.data());
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LlamaLayerTensors p = model.LayerTensors(model.params(), l);
    be.RmsNormForward(x.data(), p.input_norm, N, H, eps, ln.data(), rstd.data());
    model.LinearForward(model.MakeLinear(ProjKind::kQ, l, false), ln.data(), N, q.data());
    model.LinearForward(model.MakeLinear(ProjKind::kK, l, false), ln.data(), N, k.data());
    model.LinearForward(model.MakeLinear(ProjKind::kV, l, false), ln.data(), N, v.data());
    be.RopeForward(q.data(), N, Q, NH, D, positions.data(), model.rope_cos(), model.rope_sin());
    be.RopeForward(k.data(), N, K, NKV, D, positions.data(), model.rope_cos(), model.rope_sin());
    for (int64_t b = 0; b < B; ++b) {
      const size_t dst = static_cast<size_t>((b * cache.capacity + start) * K);
      std::memcpy(cache.k[l].data() + dst, k.data() + b * n * K, sizeof(float) * n * K);
      std::memcpy(cache.v[l].data() + dst, v.data() + b * n * K, sizeof(float) * n * K);
    }
    be.AttentionForward(shape, q.data(), cache.k[l].data(), cache.v[l].data(), probs.data(), attn.data());
    model.LinearForward(model.MakeLinear(ProjKind::kO, l, false), attn.data(), N, proj.data());
    be.Add(x.data(), proj.data(), N * H, x.data());
    be.RmsNormForward(x.data(), p.post_norm, N, H, eps, ln.data(), rstd.data());
    model.LinearForward(model.MakeLinear(ProjKind::kGate, l, false), ln.data(), N, gate.data());
    model.LinearForward(model.MakeLinear(ProjKind::kUp, l, false), ln.data(), N, up.data());
    be.SwiGluForward(gate.data(), up.data(), N * I, gate.data());
    model.LinearForward(model.MakeLinear(ProjKind::kDown, l, false), gate.data(), N, proj.data());
    be.Add(x.data(), proj.data(), N * H, x.data());
  }
  be.RmsNormForward(x.data(), model.params().tensor("model.norm.weight"), N, H, eps, ln.data(), rstd.data());
  logits->resize(static_cast<size_t>(N * c.vocab_size));
  model.LinearForward(model.MakeLinear(ProjKind::kLmHead, -1, false), ln.data(), N, logits->data());
  cache.length = total;
  return Status::OK();
}

int32_t SampleToken(const float* logits, int64_t vocab, float temperature, float top_p, std::mt19937_64& rng) {
  if (temperature <= 0.0f) return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
  const float mx = *std::max_element(logits, logits + vocab);
  std::vector<double> prob(static_cast<size_t>(vocab));
  double sum = 0.0;
  for (int64_t i = 0; i < vocab; ++i) sum += prob[i] = std::exp((static_cast<double>(logits[i]) - mx) / temperature);
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  // Highest probability first; ties by index so the order is fully determined.
  std::sort(order.begin(), order.end(),
            [&](int32_t a, int32_t b) { return prob[a] != prob[b] ? prob[a] > prob[b] : a < b; });
  const double target = std::clamp(static_cast<double>(top_p), 0.0, 1.0) * sum;
  double kept = 0.0;
  size_t count = 0;
  while (count < order.size() && (count == 0 || kept < target)) kept += prob[order[count++]];
  const double u = std::uniform_real_distribution<double>(0.0, kept)(rng);
  double acc = 0.0;
  for (size_t i = 0; i < count; ++i) {
    acc += prob[order[i]];
    if (u < acc) return order[i];
  }
  return order[count - 1];
}

Result<std::vector<int32_t>> Generate(LlamaModel& model, const std::vector<int32_t>& prompt,
                                      const GenerateOptions& options) {
  const LlamaConfig& c = model.config();
  if (prompt.empty()) return Status::InvalidArgument("generate: the prompt is empty");
  if (options.max_new_tokens < 0) return Status::InvalidArgument("generate: max_new_tokens must be >= 0");
  if (!(options.top_p > 0.0f && options.top_p <= 1.0f))
    return Status::InvalidArgument("generate: top_p must be in (0, 1], got " + std::to_string(options.top_p));
  const int64_t capacity = static_cast<int64_t>(prompt.size()) + options.max_new_tokens;
  if (capacity > c.max_position_embeddings)
    return Status::InvalidArgument("generate: prompt (" + std::to_string(prompt.size()) + ") + max_new_tokens (" +
                                   std::to_string(options.max_new_tokens) + ") exceeds max_position_embeddings " +
                                   std::to_string(c.max_position_embeddings));
  const int64_t eos = options.eos_token_id == -2 ? c.eos_token_id : options.eos_token_id;
  TRIB_ASSIGN_OR_RETURN(KvCache cache, CreateKvCache(c, 1, capacity));
  std::mt19937_64 rng(options.seed);
  std::vector<float> logits;
  std::vector<int32_t> out;
  TRIB_RETURN_IF_ERROR(ForwardCached(model, cache, prompt.data(), static_cast<int64_t>(prompt.size()), &logits));
  const float* last = logits.data() + (prompt.size() - 1) * c.vocab_size;
  for (int64_t step = 0; step < options.max_new_tokens; ++step) {
    const int32_t next = SampleToken(last, c.vocab_size, options.temperature, options.top_p, rng);
    out.push_back(next);
    if (next == eos || step + 1 == options.max_new_tokens) break;
    TRIB_RETURN_IF_ERROR(ForwardCached(model, cache, &next, 1, &logits));
    last = logits.data();
  }
  return out;
}

}  // namespace tributary
