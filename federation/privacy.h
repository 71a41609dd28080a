// Differential privacy for federated jobs (the job spec's `privacy` section, docs/security.md).
//
// Both mechanisms are the Gaussian mechanism on clipped client updates (aggregation.clip_norm = C):
//   central  the coordinator adds N(0, (z C max_i w_i)^2) to every coordinate of the combined update
//            (step 5 of federation/aggregator.h); with equal weights that is z C / n on the mean, i.e.
//            N(0, (z C)^2) on the sum. Neighbouring jobs differ by one client's participation (add or
//            remove), so a round's sensitivity is C: RDP(a) = a / (2 z^2) per round.
//   local    every client clips its own update and adds N(0, (z C)^2) before uploading; the neighbouring
//            relation is replacing the client's data, sensitivity 2 C: RDP(a) = 2 a / z^2 per round.
// Rounds compose additively in RDP; no amplification by client sampling is claimed (the scheduler's
// selection is not Poisson sampling). (epsilon, delta) comes from the RDP curve with the conversion of
// Balle et al. 2020 (as Google's dp_accounting RdpAccountant does), minimised over a fixed set of orders.
//
// Noise comes from ChaCha20 keyed by a fresh random NoiseKey per use, indexed by coordinate so chunking
// never changes it; nobody can regenerate it without the key, which is never stored or sent.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace tributary {

enum class DpMechanism { kNone, kCentral, kLocal };
const char* DpMechanismName(DpMechanism mechanism);  // "none" | "central" | "local"
Result<DpMechanism> ParseDpMechanism(std::string_view name);

// The job spec's privacy section.
struct PrivacyOptions {
  DpMechanism mechanism = DpMechanism::kNone;
  double noise_multiplier = 0;  // z: noise stddev in units of the clip norm, > 0
  double delta = 0;             // the delta (epsilon, delta) is reported at, in (0, 1)
  double epsilon_budget = 0;    // > 0: a job whose rounds would spend more epsilon is refused; 0: no budget
};

struct DpGuarantee {
  double epsilon = 0;
  double delta = 0;
  double order = 0;  // the RDP order that gave the smallest epsilon
};

// (epsilon, delta) of `compositions` Gaussian mechanisms with noise multiplier z and sensitivity
// `sensitivity` (in clip norms). compositions 0 gives epsilon 0.
DpGuarantee GaussianRdpGuarantee(double noise_multiplier, double sensitivity, int64_t compositions, double delta);

// The guarantee of `rounds` committed rounds of a job with these options (mechanism not none).
DpGuarantee JobPrivacyGuarantee(const PrivacyOptions& options, int64_t rounds);

// The noise stddev one client's update or the round's sum gets, in the units of the update: z C.
inline double NoiseStddev(const PrivacyOptions& options, double clip_norm) {
  return options.noise_multiplier * clip_norm;
}

using NoiseKey = std::array<uint8_t, 32>;
// 32 bytes from the operating system's CSPRNG (libsodium randombytes).
NoiseKey FreshNoiseKey();

// values[j] += stddev * N_{begin + j}, j < n, where N_i is the i-th standard normal of the key's
// stream (Box-Muller on two 64-bit ChaCha20 words per coordinate): the same key and coordinate give the
// same draw whatever the chunking.
void AddGaussianNoise(const NoiseKey& key, double stddev, int64_t begin, int64_t n, double* values);

}  // namespace tributary
