// The cryptographic primitives of secure aggregation (docs/security.md), all from libsodium:
//   key pairs    X25519 (crypto_box_keypair): one pair for pairwise masks, one to encrypt shares
//   mask seeds   the pairwise seed of clients u and v is BLAKE2b-256 over their X25519 shared secret,
//                both public keys in ascending id order, both ids and the session; both ends derive it
//   masks        a seed expands to the vector length with the ChaCha20 keystream (little-endian words,
//                nonce "pairmask" or "selfmask"), added or subtracted modulo 2^32
//   share boxes  crypto_box_easy (X25519 + XSalsa20-Poly1305) with a random 24-byte nonce in front
//   commitments  BLAKE2b-256 of a self-mask seed, so the server can check a reconstructed seed
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"

namespace tributary {

inline constexpr size_t kSecAggKeyBytes = 32;
using SecAggKey = std::array<uint8_t, kSecAggKeyBytes>;

// InternalError when libsodium cannot initialise (no entropy source); cheap after the first call.
Status SecAggSodiumReady();

struct SecAggKeyPair {
  SecAggKey public_key{};
  SecAggKey secret_key{};
};

// A fresh X25519 key pair from libsodium's randomness.
Result<SecAggKeyPair> GenerateSecAggKeyPair();

// The X25519 public key of a secret key (crypto_scalarmult_base).
SecAggKey SecAggPublicKeyOf(const SecAggKey& secret_key);

// 32 bytes of libsodium randomness (a self-mask seed).
SecAggKey RandomSecAggSeed();

// The seed of the pairwise mask between `self` and `peer` in `session`: the same on both ends.
// InvalidArgument "client <peer>: ..." when the peer's public key is a low-order point (no shared secret).
Result<SecAggKey> PairwiseMaskSeed(uint64_t session, uint32_t self_id, const SecAggKeyPair& self, uint32_t peer_id,
                                   const SecAggKey& peer_public_key);

enum class MaskKind : uint8_t {
  kPairwise,  // between two clients: added by the lower id, subtracted by the higher
  kSelf,      // a client's own mask from its seed b_u, removed by the server once b_u is reconstructed
};

// vec[i] += PRG(seed, kind)[i] (or -= when `subtract`) modulo 2^32 for every i. The mask depends only on
// the seed, the kind and i, not on vec's length (a prefix of a longer mask is the shorter mask).
void ApplySecAggMask(const SecAggKey& seed, MaskKind kind, bool subtract, std::span<uint32_t> vec);

// Authenticated encryption of shares from a sender to a recipient (crypto_box_easy, random nonce):
// the result is nonce || box, kSecAggBoxOverhead bytes longer than the plaintext.
inline constexpr size_t kSecAggBoxOverhead = 24 + 16;
Result<std::vector<uint8_t>> SealSecAggBox(std::span<const uint8_t> plaintext, const SecAggKey& recipient_public_key,
                                           const SecAggKey& sender_secret_key);
// The plaintext of a box from `sender_public_key`; InvalidArgument when it is too short or does not
// authenticate (tampered, or sealed with other keys). The caller names the peer.
Result<std::vector<uint8_t>> OpenSecAggBox(std::span<const uint8_t> box, const SecAggKey& sender_public_key,
                                           const SecAggKey& recipient_secret_key);

// The commitment to a client's self-mask seed: BLAKE2b-256(session, client id, seed).
SecAggKey CommitSecAggSeed(uint64_t session, uint32_t client_id, const SecAggKey& seed);

// Constant-time equality of two keys (sodium_memcmp).
bool SecAggKeysEqual(const SecAggKey& a, const SecAggKey& b);

}  // namespace tributary
