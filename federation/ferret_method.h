// The ferret method's coefficient-space aggregation, public for tests and the aggregation benchmark
// (the method itself is reached through federation/method.h).
//
// Client i's coefficients of block l are a prefix of K_l^(i) values; a round's support of block l is
// S_l = max_i K_l^(i), and each client vector is its blocks' coefficients zero-padded to the supports,
// laid end to end. Seeds never depend on the client, so the weighted mean of the coefficients
// reconstructs to the weighted mean of the clients' reconstructions and replicas reconstruct once.
#pragma once

#include <cstdint>
#include <vector>

#include "base/status.h"
#include "federation/aggregator.h"
#include "peft/ferret.h"
#include "peft/payload.h"

namespace tributary {

struct JobSpec;

// The job's Ferret options: its ferret section with the job seed and train.server_lr.
FerretOptions FerretOptionsOf(const JobSpec& spec);

struct ClientCoefficients {
  uint64_t client_id = 0;    // clients are combined in ascending id
  uint64_t num_samples = 0;  // used with samples weighting (must then be > 0)
  const Payload* payload = nullptr;
};

// The aggregate of `round`: the aggregation's combination of the clients' padded coefficient vectors
// (ascending client id), rounded once from fp64 to `out_dtype`; block l keeps the support S_l. All
// payloads must carry `round` and `num_blocks` blocks and client ids must be distinct: InvalidArgument
// naming the client otherwise (or when there is none). `report` (optional) receives what the
// aggregation learned about the clients, in ascending client id.
Result<Payload> AggregateCoefficients(const std::vector<ClientCoefficients>& clients, AggregationWeights weights,
                                      Aggregation& aggregation, uint32_t round, int num_blocks, WireDtype out_dtype,
                                      AggregationReport* report = nullptr);

}  // namespace tributary
