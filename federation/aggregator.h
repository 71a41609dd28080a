// The aggregator seam: how the coordinator turns a round's accepted uploads into one aggregate.
//
// Every federated method decodes its payloads into client vectors of one dimension (Ferret: the
// coefficients of every block, zero-padded to the round's support; FedAvg: the dense delta; LoRA: the
// adapter arena) and encodes the combined vector back into its wire format. What happens in between is
// the aggregator's, in this order (later rules slot into the step named):
//
//   1. weigh    client weights from federation.aggregation_weights (equal: 1/n; samples: n_i / sum n),
//               normalised, in ascending worker id (ClientWeights)
//   2. prepare  a pass over whole client vectors: per-client norm clipping and DP clipping, the
//               distances of Krum / Multi-Krum, anomaly scores (Aggregator::Prepare; nothing today)
//   3. combine  coordinate by coordinate in fp64, clients in ascending worker id: the weighted mean
//               today; coordinate-wise median and trimmed mean later (Aggregator::CombineRange)
//   4. noise    central-DP Gaussian noise on the combined vector (later, after combine)
//   5. encode   the method rounds the fp64 result once to its wire dtype
// Secure aggregation replaces steps 2-3 by an unmasked sum of quantized client vectors.
//
// Determinism: the combined value of a coordinate depends only on the client vectors, their weights
// and the fixed client order, never on chunking or threads, so a re-run of a round's aggregation (a
// resumed coordinator) reproduces its bytes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace tributary {

enum class AggregationWeights {
  kEqual,    // w_i = 1/n
  kSamples,  // w_i = samples_i / sum_j samples_j
};
const char* AggregationWeightsName(AggregationWeights weights);  // "equal" | "samples"
Result<AggregationWeights> ParseAggregationWeights(std::string_view name);

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
// dense model never needs all of them in fp64 at once.
class ClientVectors {
 public:
  virtual ~ClientVectors() = default;
  virtual size_t count() const = 0;
  virtual int64_t dim() const = 0;
  // out[j] = value of coordinate begin + j of client `client`, for j < n (begin + n <= dim()).
  virtual void Read(size_t client, int64_t begin, int64_t n, float* out) const = 0;
  // sum[j] += weight * value of coordinate begin + j (fp64 product and sum), for j < n. The default reads
  // the range; vectors that know where their zeros are (padded coefficient prefixes) skip them, which is
  // bit-identical because adding +0.0 to a sum that started at +0.0 changes nothing.
  virtual void AddWeighted(size_t client, int64_t begin, int64_t n, double weight, double* sum) const;
};

class Aggregator {
 public:
  virtual ~Aggregator() = default;
  virtual const char* name() const = 0;
  // Step 2, once per round before any CombineRange; weights has one entry per client.
  virtual Status Prepare(const ClientVectors& clients, const std::vector<double>& weights);
  // Step 3: out[j] = the combined coordinate begin + j, j < n.
  virtual void CombineRange(const ClientVectors& clients, const std::vector<double>& weights, int64_t begin, int64_t n,
                            double* out) = 0;
};

// The weighted mean: out = sum_i w_i x_i in fp64, clients in the given order.
std::unique_ptr<Aggregator> CreateWeightedMean();

// Coordinates per CombineRange call of RunAggregator (a dense model is combined in chunks of this).
inline constexpr int64_t kAggregateChunkElems = int64_t{1} << 16;

// Steps 2-3 over every coordinate: Prepare, then CombineRange chunk by chunk, handing each chunk's
// fp64 values to `sink(begin, values, n)` in ascending order.
Status RunAggregator(Aggregator& aggregator, const ClientVectors& clients, const std::vector<double>& weights,
                     const std::function<void(int64_t begin, const double* values, int64_t n)>& sink);

}  // namespace tributary
