#include "federation/privacy.h"

#include <endian.h>
#include <sodium.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace tributary {
namespace {

// RDP orders searched for the smallest epsilon: dp_accounting's default grid.
std::vector<double> RdpOrders() {
  std::vector<double> orders = {1.25, 1.5, 1.75, 2., 2.25, 2.5, 3., 3.5, 4., 4.5};
  for (int a = 5; a <= 64; ++a) orders.push_back(a);
  for (double a : {128., 256., 512., 1024.}) orders.push_back(a);
  return orders;
}

// Balle et al. 2020, Prop. 12: an (a, rdp)-RDP mechanism is (eps, delta)-DP with
// eps = rdp + log((a - 1) / a) - (log(delta) + log(a)) / (a - 1).
double RdpToEpsilon(double order, double rdp, double delta) {
  const double eps = rdp + std::log1p(-1.0 / order) - (std::log(delta) + std::log(order)) / (order - 1.0);
  return std::max(eps, 0.0);
}

double UnitUniform(uint64_t word) {  // (0, 1], 53 bits
  return (static_cast<double>(word >> 11) + 1.0) * 0x1.0p-53;
}

}  // namespace

const char* DpMechanismName(DpMechanism mechanism) {
  switch (mechanism) {
    case DpMechanism::kNone: return "none";
    case DpMechanism::kCentral: return "central";
    case DpMechanism::kLocal: return "local";
  }
  return "none";
}

Result<DpMechanism> ParseDpMechanism(std::string_view name) {
  for (DpMechanism m : {DpMechanism::kNone, DpMechanism::kCentral, DpMechanism::kLocal})
    if (name == DpMechanismName(m)) return m;
  return Status::InvalidArgument("privacy mechanism '" + std::string(name) + "': expected none, central or local");
}

DpGuarantee GaussianRdpGuarantee(double noise_multiplier, double sensitivity, int64_t compositions, double delta) {
  DpGuarantee best{compositions > 0 ? std::numeric_limits<double>::infinity() : 0.0, delta, 0};
  if (compositions <= 0) return best;
  const double ratio = sensitivity / noise_multiplier;
  for (double order : RdpOrders()) {
    const double rdp = static_cast<double>(compositions) * order * ratio * ratio / 2.0;
    const double eps = RdpToEpsilon(order, rdp, delta);
    if (eps < best.epsilon) best = {eps, delta, order};
  }
  return best;
}

DpGuarantee JobPrivacyGuarantee(const PrivacyOptions& options, int64_t rounds) {
  const double sensitivity = options.mechanism == DpMechanism::kLocal ? 2.0 : 1.0;
  return GaussianRdpGuarantee(options.noise_multiplier, sensitivity, rounds, options.delta);
}

NoiseKey FreshNoiseKey() {
  NoiseKey key;
  randombytes_buf(key.data(), key.size());
  return key;
}

void AddGaussianNoise(const NoiseKey& key, double stddev, int64_t begin, int64_t n, double* values) {
  if (n <= 0) return;
  // Coordinate i uses bytes [16 i, 16 i + 16) of the stream: four coordinates per 64-byte block.
  static constexpr unsigned char kNonce[crypto_stream_chacha20_NONCEBYTES] = {'d', 'p', 'n', 'o', 'i', 's', 'e', 0};
  const int64_t first_block = begin / 4;
  const int64_t skip = begin % 4;
  std::vector<uint64_t> words(static_cast<size_t>(2 * (n + skip)), 0);
  crypto_stream_chacha20_xor_ic(reinterpret_cast<unsigned char*>(words.data()),
                                reinterpret_cast<const unsigned char*>(words.data()), words.size() * sizeof(uint64_t),
                                kNonce, static_cast<uint64_t>(first_block), key.data());
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  for (int64_t j = 0; j < n; ++j) {
    const uint64_t w1 = le64toh(words[static_cast<size_t>(2 * (j + skip))]);
    const uint64_t w2 = le64toh(words[static_cast<size_t>(2 * (j + skip) + 1)]);
    values[j] += stddev * std::sqrt(-2.0 * std::log(UnitUniform(w1))) * std::cos(kTwoPi * UnitUniform(w2));
  }
}

}  // namespace tributary
