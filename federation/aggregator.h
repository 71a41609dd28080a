// The aggregator seam: how the coordinator turns a round's accepted uploads into one aggregate.
//
// Every federated method decodes its payloads into client vectors of one dimension (Ferret: the
// coefficients of every block, zero-padded to the round's support; FedAvg: the dense delta; LoRA: the
// adapter arena) and encodes the combined vector back into its wire format. What happens in between is
// an Aggregation (the job spec's `aggregation` section), in this order:
//
//   1. weigh    client weights from federation.aggregation_weights (equal: 1/n; samples: n_i / sum n),
//               normalised, in ascending worker id (ClientWeights)
//   2. clip     with aggregation.clip_norm > 0, each client vector's distance to the reference (zero for
//               delta payloads, the round's global state for state payloads such as LoRA adapters) is
//               scaled down to at most clip_norm in L2 (differential privacy clips here too)
//   3. prepare  a pass over whole (clipped) client vectors the rule needs: Krum's pairwise distances and
//               its selection (Aggregator::Prepare)
//   4. combine  coordinate by coordinate in fp64, clients in ascending worker id: the weighted mean, the
//               coordinate-wise median or trimmed mean, or the weighted mean of Krum's selection
//               (Aggregator::CombineRange)
//   5. noise    central DP (federation/privacy.h): N(0, (sigma max_i w_i)^2) added to every combined
//               coordinate, sigma = z C the noise on the sum; scores (step 7) use the value before noise
//   6. encode   the method rounds the fp64 result once to its wire dtype
//   7. score    every client's distance to the combined vector, relative to the median distance: the
//               anomaly scores a round records (1 = typical; an attacker's scaled update stands out)
// Secure aggregation replaces steps 2-4 by an unmasked sum of quantized client vectors.
//
// Determinism: the combined value of a coordinate depends only on the client vectors, their weights
// and the fixed client order, never on chunking or threads, so a re-run of a round's aggregation (a
// resumed coordinator) reproduces its bytes. With the mean and no clipping the arithmetic is exactly
// sum_i w_i x_i in fp64.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "federation/privacy.h"

namespace tributary {

enum class AggregationWeights {
  kEqual,    // w_i = 1/n
  kSamples,  // w_i = samples_i / sum_j samples_j
};
const char* AggregationWeightsName(AggregationWeights weights);  // "equal" | "samples"
Result<AggregationWeights> ParseAggregationWeights(std::string_view name);

enum class AggregationRule {
  kMean,         // the weighted mean (FedAvg)
  kMedian,       // coordinate-wise median (unweighted; the mean of the two middle values for even n)
  kTrimmedMean,  // coordinate-wise mean after cutting floor(trim_fraction n) values at each end (unweighted)
  kKrum,         // the one client whose n - f - 2 nearest neighbours are closest (Blanchard et al. 2017)
  kMultiKrum,    // the weighted mean of the `select` clients with the best Krum scores
};
const char* AggregationRuleName(AggregationRule rule);  // "mean" | "median" | "trimmed_mean" | "krum" | "multi_krum"
Result<AggregationRule> ParseAggregationRule(std::string_view name);

// The job spec's aggregation section.
struct AggregationOptions {
  AggregationRule rule = AggregationRule::kMean;
  double trim_fraction = 0.1;  // trimmed_mean: share of the clients cut at each end, in [0, 0.5)
  int64_t byzantine = 1;       // krum, multi_krum: f, the Byzantine clients tolerated (needs n > 2f + 2)
  int64_t select = 0;          // multi_krum: m, the clients averaged (0: n - f)
  double clip_norm = 0.0;      // > 0: step 2 clips every client vector to this L2 distance from the reference
};
// InvalidArgument naming the field ("aggregation.trim_fraction: ...").
Status ValidateAggregationOptions(const AggregationOptions& options);

// One accepted upload of a round.
struct ClientPayload {
  std::string worker_id;
  uint64_t num_samples = 0;
  std::span<const uint8_t> payload;  // not owned
};

// Step 1: the normalised weight of every client from its sample count, in the given order (callers
// pass ascending worker id). InvalidArgument for no clients, or a zero count under samples weighting
// (naming the client's position; callers refuse such uploads earlier, naming the worker).
Result<std::vector<double>> ClientWeights(const std::vector<uint64_t>& num_samples, AggregationWeights weights);

// The clients' decoded updates: count() vectors of dim() fp32 values, read by coordinate range so a
// dense model never needs all of them in fp64 at once, and the reference point they are updates of.
class ClientVectors {
 public:
  virtual ~ClientVectors() = default;
  virtual size_t count() const = 0;
  virtual int64_t dim() const = 0;
  // out[j] = value of coordinate begin + j of client `client`, for j < n (begin + n <= dim()).
  virtual void Read(size_t client, int64_t begin, int64_t n, float* out) const = 0;
  // out[j] = coordinate begin + j of the reference: zero for delta payloads (the default), the round's
  // global state for payloads that are states.
  virtual void ReadReference(int64_t begin, int64_t n, float* out) const;
  // sum[j] += weight * value of coordinate begin + j (fp64 product and sum), for j < n. The default reads
  // the range; vectors that know where their zeros are (padded coefficient prefixes) skip them, which is
  // bit-identical because adding +0.0 to a sum that started at +0.0 changes nothing.
  virtual void AddWeighted(size_t client, int64_t begin, int64_t n, double weight, double* sum) const;
  // *squared += sum_j (value of coordinate begin + j - center[j])^2 in fp64, for j < n.
  virtual void AddSquaredDistance(size_t client, int64_t begin, int64_t n, const double* center, double* squared) const;
};

// A combination rule (steps 3-4).
class Aggregator {
 public:
  virtual ~Aggregator() = default;
  virtual const char* name() const = 0;
  // Step 3, once per round before any CombineRange; weights has one entry per client.
  virtual Status Prepare(const ClientVectors& clients, const std::vector<double>& weights);
  // Step 4: out[j] = the combined coordinate begin + j, j < n.
  virtual void CombineRange(const ClientVectors& clients, const std::vector<double>& weights, int64_t begin, int64_t n,
                            double* out) = 0;
  // After Prepare: which clients the rule leaves out of the combination (empty: none).
  virtual std::vector<bool> Excluded() const { return {}; }
};

// The weighted mean: out = sum_i w_i x_i in fp64, clients in the given order.
std::unique_ptr<Aggregator> CreateWeightedMean();
// The rule of `options` (options must be valid).
std::unique_ptr<Aggregator> CreateAggregator(const AggregationOptions& options);

// What an aggregation learned about the clients, in client order.
struct AggregationReport {
  std::vector<double> clip_scales;     // step 2's factor (1: not clipped)
  std::vector<bool> excluded;          // left out by the rule (Krum)
  std::vector<double> anomaly_scores;  // step 7 (NaN when every client sits on the aggregate)
  double noise_stddev = 0;             // step 5's stddev per coordinate (0: no noise)
};

// Coordinates per CombineRange call (a dense model is combined in chunks of this).
inline constexpr int64_t kAggregateChunkElems = int64_t{1} << 16;

// Steps 2-4 and 7 with a job's options: a job's aggregation, made once and used every round.
class Aggregation {
 public:
  // InvalidArgument naming the field for invalid options.
  static Result<std::unique_ptr<Aggregation>> Create(const AggregationOptions& options);
  const AggregationOptions& options() const { return options_; }

  // Clips, prepares and combines every coordinate chunk by chunk, handing each chunk's fp64 values to
  // `sink(begin, values, n)` in ascending order, then scores the clients against the combination.
  // InvalidArgument when the rule cannot run on these clients (Krum with n <= 2f + 2).
  Result<AggregationReport> Run(const ClientVectors& clients, const std::vector<double>& weights,
                                const std::function<void(int64_t begin, const double* values, int64_t n)>& sink);

  // Step 5 for the next Run only: noise with stddev sum_stddev * max_i w_i on every combined coordinate,
  // drawn from `key` (a fresh key per round: federation/privacy.h). Only for the mean.
  void SetNoise(double sum_stddev, const NoiseKey& key) {
    noise_sum_stddev_ = sum_stddev;
    noise_key_ = key;
  }

 private:
  Aggregation(const AggregationOptions& options, std::unique_ptr<Aggregator> rule)
      : options_(options), rule_(std::move(rule)) {}
  AggregationOptions options_;
  std::unique_ptr<Aggregator> rule_;
  double noise_sum_stddev_ = 0;
  NoiseKey noise_key_{};
};

// Steps 3-4 only, with a given rule (tests, and the pieces Aggregation::Run is made of).
Status RunAggregator(Aggregator& aggregator, const ClientVectors& clients, const std::vector<double>& weights,
                     const std::function<void(int64_t begin, const double* values, int64_t n)>& sink);

}  // namespace tributary
