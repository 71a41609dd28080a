#include "peft/aggregate.h"

#include <algorithm>
#include <string>

namespace tributary {

const char* AggregationWeightsName(AggregationWeights weights) {
  return weights == AggregationWeights::kEqual ? "equal" : "samples";
}

Result<AggregationWeights> ParseAggregationWeights(std::string_view name) {
  if (name == "equal") return AggregationWeights::kEqual;
  if (name == "samples") return AggregationWeights::kSamples;
  return Status::InvalidArgument("ferret aggregation weights '" + std::string(name) + "': expected equal or samples");
}

const char* SeedModeName(SeedMode mode) {
  return mode == SeedMode::kPerRound ? "per_round" : "fixed_pool";
}

Result<SeedMode> ParseSeedMode(std::string_view name) {
  if (name == "per_round") return SeedMode::kPerRound;
  if (name == "fixed_pool") return SeedMode::kFixedPool;
  return Status::InvalidArgument("ferret seed mode '" + std::string(name) + "': expected per_round or fixed_pool");
}

Result<Payload> AggregateCoefficients(const std::vector<ClientCoefficients>& clients, AggregationWeights weights,
                                      uint32_t round, int num_blocks, WireDtype out_dtype) {
  if (clients.empty())
    return Status::InvalidArgument("ferret aggregation of round " + std::to_string(round) + ": no clients");
  std::vector<const ClientCoefficients*> order;
  order.reserve(clients.size());
  for (const auto& c : clients) order.push_back(&c);
  std::sort(order.begin(), order.end(),
            [](const ClientCoefficients* a, const ClientCoefficients* b) { return a->client_id < b->client_id; });

  double total_samples = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    const ClientCoefficients& c = *order[i];
    const std::string who = "ferret aggregation: client " + std::to_string(c.client_id);
    if (i > 0 && order[i - 1]->client_id == c.client_id) return Status::InvalidArgument(who + ": duplicate client id");
    if (c.payload == nullptr) return Status::InvalidArgument(who + ": no payload");
    if (c.payload->round != round) {
      return Status::InvalidArgument(who + ": payload of round " + std::to_string(c.payload->round) + ", expected " +
                                     std::to_string(round));
    }
    if (c.payload->gamma.size() != static_cast<size_t>(num_blocks)) {
      return Status::InvalidArgument(who + ": " + std::to_string(c.payload->gamma.size()) + " blocks, expected " +
                                     std::to_string(num_blocks));
    }
    if (weights == AggregationWeights::kSamples && c.num_samples <= 0) {
      return Status::InvalidArgument(who + ": num_samples " + std::to_string(c.num_samples) + " must be > 0");
    }
    total_samples += static_cast<double>(c.num_samples);
  }

  std::vector<std::vector<double>> sum(static_cast<size_t>(num_blocks));
  for (const ClientCoefficients* c : order) {  // ascending client id: a fixed fp64 summation order
    const double w = weights == AggregationWeights::kEqual ? 1.0 / static_cast<double>(order.size())
                                                           : static_cast<double>(c->num_samples) / total_samples;
    for (size_t l = 0; l < sum.size(); ++l) {
      const auto& g = c->payload->gamma[l];
      if (sum[l].size() < g.size()) sum[l].resize(g.size(), 0.0);
      for (size_t k = 0; k < g.size(); ++k) sum[l][k] += w * static_cast<double>(g[k]);
    }
  }

  Payload out;
  out.round = round;
  out.dtype = out_dtype;
  out.gamma.resize(sum.size());
  for (size_t l = 0; l < sum.size(); ++l) {
    out.gamma[l].resize(sum[l].size());
    for (size_t k = 0; k < sum[l].size(); ++k) {
      out.gamma[l][k] =
          out_dtype == WireDtype::kFp32 ? static_cast<float>(sum[l][k]) : FloatFromBf16(Bf16FromDouble(sum[l][k]));
    }
  }
  return out;
}

}  // namespace tributary
