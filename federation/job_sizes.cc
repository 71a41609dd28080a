#include "federation/job_sizes.h"

#include <algorithm>
#include <initializer_list>
#include <optional>

namespace tributary {
namespace {

// One factor of a derived size: the field and its value.
struct Factor {
  const char* field;
  int64_t value;
};

// The product of `factors` when it is at most `limit`; nullopt when it is larger (or would overflow int64).
std::optional<int64_t> BoundedProduct(std::initializer_list<Factor> factors, int64_t limit) {
  int64_t product = 1;
  for (const Factor& f : factors)
    if (__builtin_mul_overflow(product, f.value, &product) || product > limit) return std::nullopt;
  return product;
}

// a + b, or INT64_MAX when that overflows (a factor that large fails any bound).
int64_t SaturatedSum(int64_t a, int64_t b) {
  int64_t sum = 0;
  return __builtin_add_overflow(a, b, &sum) ? INT64_MAX : sum;
}

// "data.seq_len=4096 x train.batch_size=8": the factors of a derived size for an error message.
std::string FactorsText(std::initializer_list<Factor> factors) {
  std::string out;
  for (const Factor& f : factors)
    out += (out.empty() ? "" : " x ") + std::string(f.field) + "=" + std::to_string(f.value);
  return out;
}

}  // namespace

// Each field has its own range, but their products (what a worker allocates, what the planner multiplies)
// can still overflow: each size is computed with overflow checks and bounded, naming its last factor.
Status CheckDerivedSizes(const JobSpec& spec, const std::string& source,
                         const std::function<std::string(const char* field, int64_t value)>& describe) {
  // "data.seq_len=65536 (job.yaml:6) x train.batch_size=65536 (default)": the factors and where each was set.
  auto described = [&](std::initializer_list<Factor> factors) {
    std::string out;
    for (const Factor& f : factors) out += (out.empty() ? "" : " x ") + describe(f.field, f.value);
    return out;
  };
  auto field_error = [&](const char* field, const std::string& reason) {
    return Status::InvalidArgument(source + ": field '" + field + "': " + reason);
  };
  const auto micro = {Factor{"data.seq_len", spec.seq_len}, Factor{"train.batch_size", spec.batch_size}};
  if (!BoundedProduct(micro, kMaxMicroBatchTokens))
    return field_error("train.batch_size", described(micro) + " is more than " + std::to_string(kMaxMicroBatchTokens) +
                                               " tokens per micro-batch");
  const int64_t steps = std::max<int64_t>(spec.local_steps, 1);  // auto (0): the plan's H, at least 1
  const auto round = {Factor{"data.seq_len", spec.seq_len}, Factor{"train.batch_size", spec.batch_size},
                      Factor{"train.grad_accum", spec.grad_accum}, Factor{"train.local_steps", steps}};
  if (!BoundedProduct(round, kMaxRoundTokens))
    return field_error("train.local_steps",
                       described(round) + " is more than " + std::to_string(kMaxRoundTokens) + " tokens per round");
  return Status::OK();
}

Status CheckJobSizesForModel(const JobSpec& spec, const LlamaConfig& config, const std::string& source) {
  auto error = [&](const char* field, const std::string& factors, const char* what, int64_t limit) {
    return Status::InvalidArgument(source + ": field '" + field + "': " + factors + " is more than " +
                                   std::to_string(limit) + " " + what + " with the base model " + spec.base_model);
  };
  // The attention scores of one micro-batch: batch x heads x seq_len x seq_len.
  const auto scores = {Factor{"train.batch_size", spec.batch_size},
                       Factor{"num_attention_heads", config.num_attention_heads}, Factor{"data.seq_len", spec.seq_len},
                       Factor{"data.seq_len", spec.seq_len}};
  if (!BoundedProduct(scores, kMaxRoundTokens))
    return error("data.seq_len", FactorsText(scores), "attention scores per micro-batch", kMaxRoundTokens);
  if (spec.mode == "lora") {
    // Each targeted projection gets rank x (in + out) parameters per layer; hidden and intermediate sizes
    // bound in and out.
    const auto lora = {
        Factor{"lora.rank", spec.lora.rank},
        Factor{"hidden_size + intermediate_size", SaturatedSum(config.hidden_size, config.intermediate_size)},
        Factor{"num_hidden_layers", config.num_hidden_layers},
        Factor{"lora.targets", static_cast<int64_t>(spec.lora.target_modules.size())}};
    if (!BoundedProduct(lora, kMaxRoundTokens))
      return error("lora.rank", FactorsText(lora), "LoRA parameters", kMaxRoundTokens);
  }
  if (spec.mode == "ferret") {
    // At most one block per tensor, K coefficients each (the embeddings, final norm and head are left out).
    const int64_t per_layer = config.attention_bias ? 12 : 9;
    const auto coefficients = {Factor{"ferret.k", spec.ferret.K}, Factor{"num_hidden_layers", config.num_hidden_layers},
                               Factor{"tensors per layer", per_layer}};
    if (!BoundedProduct(coefficients, kMaxMicroBatchTokens))
      return error("ferret.k", FactorsText(coefficients), "coefficients per round", kMaxMicroBatchTokens);
  }
  return Status::OK();
}

}  // namespace tributary
