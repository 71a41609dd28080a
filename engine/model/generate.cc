#include "engine/model/generate.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>

namespace tributary {

Result<KvCache> CreateKvCache(const LlamaConfig& config, int64_t batch, int64_t capacity, const BufferType* type) {
  if (batch < 1 || capacity < 1) return Status::InvalidArgument("KV cache: batch and capacity must be >= 1");
  if (capacity > config.max_position_embeddings)
    return Status::InvalidArgument("KV cache capacity " + std::to_string(capacity) +
                                   " exceeds max_position_embeddings " +
                                   std::to_string(config.max_position_embeddings));
  const BufferType& memory = type != nullptr ? *type : HostBufferType();
  KvCache cache;
  cache.batch = batch;
  cache.capacity = capacity;
  const size_t per_layer = static_cast<size_t>(batch * capacity * config.num_key_value_heads * config.HeadDim());
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    cache.k.emplace_back(memory, per_layer * sizeof(float));
    cache.v.emplace_back(memory, per_layer * sizeof(float));
  }
  return cache;
}

namespace {

int64_t Align16(int64_t n) {
  return (n + 15) / 16 * 16;
}

// One ForwardCached call's activations, carved from cache.scratch (every buffer is written before it
// is read, so the scratch needs no clearing).
struct CachedActs {
  float *x, *ln, *proj, *rstd, *q, *k, *v, *attn, *gate, *up, *probs, *logits;
  int32_t *tokens, *positions;
};

CachedActs CarveScratch(const LlamaConfig& c, const BufferType& memory, KvCache& cache, int64_t n) {
  const int64_t N = cache.batch * n, H = c.hidden_size, I = c.intermediate_size, D = c.HeadDim();
  const int64_t Q = c.num_attention_heads * D, K = c.num_key_value_heads * D;
  // Probabilities sized for the full capacity, so decoding one token at a time never regrows.
  const int64_t P = cache.batch * c.num_attention_heads * n * cache.capacity;
  const int64_t floats = Align16(N * H) * 3 + Align16(N) * 3 + Align16(N * Q) * 2 + Align16(N * K) * 2 +
                         Align16(N * I) * 2 + Align16(P) + Align16(N * c.vocab_size);
  cache.scratch.Reserve(memory, static_cast<size_t>(floats) * sizeof(float));
  float* cursor = cache.scratch.as<float>();
  auto take = [&](int64_t count) {
    float* p = cursor;
    cursor += Align16(count);
    return p;
  };
  CachedActs a;
  a.x = take(N * H);
  a.ln = take(N * H);
  a.proj = take(N * H);
  a.rstd = take(N);
  a.q = take(N * Q);
  a.k = take(N * K);
  a.v = take(N * K);
  a.attn = take(N * Q);
  a.gate = take(N * I);
  a.up = take(N * I);
  a.probs = take(P);
  a.logits = take(N * c.vocab_size);
  a.tokens = reinterpret_cast<int32_t*>(take(N));  // int32 and float have the same size
  a.positions = reinterpret_cast<int32_t*>(take(N));
  return a;
}

}  // namespace

Status ForwardCached(LlamaModel& model, KvCache& cache, const int32_t* tokens, int64_t n, std::vector<float>* logits) {
  const LlamaConfig& c = model.config();
  const int64_t B = cache.batch, N = B * n, start = cache.length, total = start + n;
  if (n < 1) return Status::InvalidArgument("ForwardCached: needs at least one token");
  if (total > cache.capacity)
    return Status::InvalidArgument("KV cache: " + std::to_string(total) + " positions exceed its capacity " +
                                   std::to_string(cache.capacity));
  TRIB_RETURN_IF_ERROR(model.ValidateTokens(tokens, N, "tokens"));
  Backend& be = model.backend();
  TRIB_CHECK(cache.k.empty() || cache.k[0].type() == &be.buffer_type());  // the cache is the backend's memory
  const int64_t H = c.hidden_size, I = c.intermediate_size, D = c.HeadDim();
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads, Q = NH * D, K = NKV * D;
  const float eps = static_cast<float>(c.rms_norm_eps);
  model.EnsureRope(total);

  const CachedActs a = CarveScratch(c, be.buffer_type(), cache, n);
  std::vector<int32_t> positions(static_cast<size_t>(N));
  for (int64_t r = 0; r < N; ++r) positions[r] = static_cast<int32_t>(start + r % n);
  be.CopyHostToBackend(a.positions, positions.data(), positions.size() * sizeof(int32_t));
  be.CopyHostToBackend(a.tokens, tokens, static_cast<size_t>(N) * sizeof(int32_t));
  AttentionShape shape{B, n, total, NH, NKV, D, Q, K, cache.capacity * K};

  be.EmbeddingForward(a.tokens, N, model.params().tensor(size_t{0}), H, a.x);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LlamaLayerTensors p = model.LayerTensors(model.params(), l);
    float* cache_k = cache.k[l].as<float>();
    float* cache_v = cache.v[l].as<float>();
    be.RmsNormForward(a.x, p.input_norm, N, H, eps, a.ln, a.rstd);
    model.LinearForward(model.MakeLinear(ProjKind::kQ, l, false), a.ln, N, a.q);
    model.LinearForward(model.MakeLinear(ProjKind::kK, l, false), a.ln, N, a.k);
    model.LinearForward(model.MakeLinear(ProjKind::kV, l, false), a.ln, N, a.v);
    be.RopeForward(a.q, N, Q, NH, D, a.positions, model.rope_cos(), model.rope_sin());
    be.RopeForward(a.k, N, K, NKV, D, a.positions, model.rope_cos(), model.rope_sin());
    for (int64_t b = 0; b < B; ++b) {
      const int64_t dst = (b * cache.capacity + start) * K;
      const size_t bytes = sizeof(float) * static_cast<size_t>(n * K);
      be.CopyBackendToBackend(cache_k + dst, a.k + b * n * K, bytes);
      be.CopyBackendToBackend(cache_v + dst, a.v + b * n * K, bytes);
    }
    be.AttentionForward(shape, a.q, cache_k, cache_v, a.probs, a.attn);
    model.LinearForward(model.MakeLinear(ProjKind::kO, l, false), a.attn, N, a.proj);
    be.Add(a.x, a.proj, N * H, a.x);
    be.RmsNormForward(a.x, p.post_norm, N, H, eps, a.ln, a.rstd);
    model.LinearForward(model.MakeLinear(ProjKind::kGate, l, false), a.ln, N, a.gate);
    model.LinearForward(model.MakeLinear(ProjKind::kUp, l, false), a.ln, N, a.up);
    be.SwiGluForward(a.gate, a.up, N * I, a.gate);
    model.LinearForward(model.MakeLinear(ProjKind::kDown, l, false), a.gate, N, a.proj);
    be.Add(a.x, a.proj, N * H, a.x);
  }
  be.RmsNormForward(a.x, model.params().tensor("model.norm.weight"), N, H, eps, a.ln, a.rstd);
  model.LinearForward(model.MakeLinear(ProjKind::kLmHead, -1, false), a.ln, N, a.logits);
  logits->resize(static_cast<size_t>(N * c.vocab_size));
  be.CopyBackendToHost(logits->data(), a.logits, logits->size() * sizeof(float));
  cache.length = total;
  return Status::OK();
}

int32_t SampleToken(const float* logits, int64_t vocab, float temperature, float top_p, int64_t top_k,
                    std::mt19937_64& rng) {
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
  const size_t candidates = top_k > 0 ? std::min(order.size(), static_cast<size_t>(top_k)) : order.size();
  if (candidates < order.size()) {
    sum = 0.0;
    for (size_t i = 0; i < candidates; ++i) sum += prob[order[i]];
  }
  const double target = std::clamp(static_cast<double>(top_p), 0.0, 1.0) * sum;
  double kept = 0.0;
  size_t count = 0;
  while (count < candidates && (count == 0 || kept < target)) kept += prob[order[count++]];
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
  if (options.top_k < 0) return Status::InvalidArgument("generate: top_k must be >= 0");
  if (!(options.top_p > 0.0f && options.top_p <= 1.0f))
    return Status::InvalidArgument("generate: top_p must be in (0, 1], got " + std::to_string(options.top_p));
  const int64_t capacity = static_cast<int64_t>(prompt.size()) + options.max_new_tokens;
  if (capacity > c.max_position_embeddings)
    return Status::InvalidArgument("generate: prompt (" + std::to_string(prompt.size()) + ") + max_new_tokens (" +
                                   std::to_string(options.max_new_tokens) + ") exceeds max_position_embeddings " +
                                   std::to_string(c.max_position_embeddings));
  const int64_t eos = options.eos_token_id == -2 ? c.eos_token_id : options.eos_token_id;
  TRIB_ASSIGN_OR_RETURN(KvCache cache, CreateKvCache(c, 1, capacity, &model.backend().buffer_type()));
  std::mt19937_64 rng(options.seed);
  std::vector<float> logits;
  std::vector<int32_t> out;
  TRIB_RETURN_IF_ERROR(ForwardCached(model, cache, prompt.data(), static_cast<int64_t>(prompt.size()), &logits));
  const float* last = logits.data() + (prompt.size() - 1) * c.vocab_size;
  for (int64_t step = 0; step < options.max_new_tokens; ++step) {
    const int32_t next = SampleToken(last, c.vocab_size, options.temperature, options.top_p, options.top_k, rng);
    out.push_back(next);
    const bool go_on = !options.on_token || options.on_token(next);
    if (!go_on || next == eos || step + 1 == options.max_new_tokens) break;
    TRIB_RETURN_IF_ERROR(ForwardCached(model, cache, &next, 1, &logits));
    last = logits.data();
  }
  return out;
}

}  // namespace tributary
