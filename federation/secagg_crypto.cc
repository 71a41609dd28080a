#include "federation/secagg_crypto.h"

#include <sodium.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <string>

namespace tributary {
namespace {

static_assert(std::endian::native == std::endian::little, "secure aggregation masks assume a little-endian host");
static_assert(crypto_box_PUBLICKEYBYTES == kSecAggKeyBytes && crypto_box_SECRETKEYBYTES == kSecAggKeyBytes);
static_assert(crypto_scalarmult_BYTES == kSecAggKeyBytes && crypto_stream_chacha20_KEYBYTES == kSecAggKeyBytes);
static_assert(kSecAggBoxOverhead == crypto_box_NONCEBYTES + crypto_box_MACBYTES);

void PutU32(uint8_t* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
}
void PutU64(uint8_t* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
}

// Keystream bytes per chunk of a mask (a multiple of ChaCha20's 64-byte block).
constexpr size_t kMaskChunkBytes = size_t{64} << 10;

}  // namespace

Status SecAggSodiumReady() {
  static const int init = sodium_init();  // 0 first time, 1 when already initialised, -1 on failure
  if (init < 0) return Status::Internal("secure aggregation: libsodium failed to initialise (sodium_init)");
  return Status::OK();
}

Result<SecAggKeyPair> GenerateSecAggKeyPair() {
  TRIB_RETURN_IF_ERROR(SecAggSodiumReady());
  SecAggKeyPair pair;
  if (crypto_box_keypair(pair.public_key.data(), pair.secret_key.data()) != 0)
    return Status::Internal("secure aggregation: crypto_box_keypair failed");
  return pair;
}

SecAggKey SecAggPublicKeyOf(const SecAggKey& secret_key) {
  SecAggKey pk{};
  if (crypto_scalarmult_base(pk.data(), secret_key.data()) != 0) pk.fill(0);
  return pk;
}

SecAggKey RandomSecAggSeed() {
  SecAggSodiumReady().IgnoreError();  // randombytes_buf initialises on its own when needed
  SecAggKey seed{};
  randombytes_buf(seed.data(), seed.size());
  return seed;
}

Result<SecAggKey> PairwiseMaskSeed(uint64_t session, uint32_t self_id, const SecAggKeyPair& self, uint32_t peer_id,
                                   const SecAggKey& peer_public_key) {
  TRIB_RETURN_IF_ERROR(SecAggSodiumReady());
  uint8_t shared[crypto_scalarmult_BYTES];
  if (crypto_scalarmult(shared, self.secret_key.data(), peer_public_key.data()) != 0)
    return Status::InvalidArgument("client " + std::to_string(peer_id) +
                                   ": mask public key is a low-order point (no shared secret)");
  const bool self_low = self_id < peer_id;
  const uint32_t lo = self_low ? self_id : peer_id;
  const uint32_t hi = self_low ? peer_id : self_id;
  const SecAggKey& pk_lo = self_low ? self.public_key : peer_public_key;
  const SecAggKey& pk_hi = self_low ? peer_public_key : self.public_key;
  static constexpr char kLabel[] = "tributary secagg pairwise mask v1";
  uint8_t header[sizeof(kLabel) + 16];
  std::memcpy(header, kLabel, sizeof(kLabel));
  PutU64(header + sizeof(kLabel), session);
  PutU32(header + sizeof(kLabel) + 8, lo);
  PutU32(header + sizeof(kLabel) + 12, hi);
  crypto_generichash_state state;
  crypto_generichash_init(&state, nullptr, 0, kSecAggKeyBytes);
  crypto_generichash_update(&state, header, sizeof(header));
  crypto_generichash_update(&state, pk_lo.data(), pk_lo.size());
  crypto_generichash_update(&state, pk_hi.data(), pk_hi.size());
  crypto_generichash_update(&state, shared, sizeof(shared));
  SecAggKey seed{};
  crypto_generichash_final(&state, seed.data(), seed.size());
  sodium_memzero(shared, sizeof(shared));
  sodium_memzero(&state, sizeof(state));
  return seed;
}

void ApplySecAggMask(const SecAggKey& seed, MaskKind kind, bool subtract, std::span<uint32_t> vec) {
  static constexpr unsigned char kPairNonce[crypto_stream_chacha20_NONCEBYTES] = {'p', 'a', 'i', 'r',
                                                                                  'm', 'a', 's', 'k'};
  static constexpr unsigned char kSelfNonce[crypto_stream_chacha20_NONCEBYTES] = {'s', 'e', 'l', 'f',
                                                                                  'm', 'a', 's', 'k'};
  const unsigned char* nonce = kind == MaskKind::kPairwise ? kPairNonce : kSelfNonce;
  static thread_local std::vector<uint8_t> zeros(kMaskChunkBytes, 0);
  static thread_local std::vector<uint32_t> stream(kMaskChunkBytes / sizeof(uint32_t));
  const size_t words_per_chunk = kMaskChunkBytes / sizeof(uint32_t);
  for (size_t begin = 0; begin < vec.size(); begin += words_per_chunk) {
    const size_t n = std::min(words_per_chunk, vec.size() - begin);
    const size_t bytes = (n * sizeof(uint32_t) + 63) / 64 * 64;
    // Block counter: the chunk's first 64-byte block, so chunking never changes the stream.
    const uint64_t block = begin * sizeof(uint32_t) / 64;
    crypto_stream_chacha20_xor_ic(reinterpret_cast<unsigned char*>(stream.data()), zeros.data(), bytes, nonce, block,
                                  seed.data());
    uint32_t* out = vec.data() + begin;
    if (subtract) {
      for (size_t i = 0; i < n; ++i) out[i] -= stream[i];
    } else {
      for (size_t i = 0; i < n; ++i) out[i] += stream[i];
    }
  }
}

Result<std::vector<uint8_t>> SealSecAggBox(std::span<const uint8_t> plaintext, const SecAggKey& recipient_public_key,
                                           const SecAggKey& sender_secret_key) {
  TRIB_RETURN_IF_ERROR(SecAggSodiumReady());
  std::vector<uint8_t> box(crypto_box_NONCEBYTES + crypto_box_MACBYTES + plaintext.size());
  randombytes_buf(box.data(), crypto_box_NONCEBYTES);
  if (crypto_box_easy(box.data() + crypto_box_NONCEBYTES, plaintext.data(), plaintext.size(), box.data(),
                      recipient_public_key.data(), sender_secret_key.data()) != 0)
    return Status::InvalidArgument("recipient's encryption public key is a low-order point");
  return box;
}

Result<std::vector<uint8_t>> OpenSecAggBox(std::span<const uint8_t> box, const SecAggKey& sender_public_key,
                                           const SecAggKey& recipient_secret_key) {
  TRIB_RETURN_IF_ERROR(SecAggSodiumReady());
  if (box.size() < kSecAggBoxOverhead)
    return Status::InvalidArgument("encrypted shares of " + std::to_string(box.size()) + " bytes, at least " +
                                   std::to_string(kSecAggBoxOverhead) + " expected");
  std::vector<uint8_t> plaintext(box.size() - kSecAggBoxOverhead);
  if (crypto_box_open_easy(plaintext.data(), box.data() + crypto_box_NONCEBYTES, box.size() - crypto_box_NONCEBYTES,
                           box.data(), sender_public_key.data(), recipient_secret_key.data()) != 0)
    return Status::InvalidArgument("encrypted shares do not decrypt (tampered, or sealed with other keys)");
  return plaintext;
}

SecAggKey CommitSecAggSeed(uint64_t session, uint32_t client_id, const SecAggKey& seed) {
  static constexpr char kLabel[] = "tributary secagg seed commitment v1";
  uint8_t message[sizeof(kLabel) + 12 + kSecAggKeyBytes];
  std::memcpy(message, kLabel, sizeof(kLabel));
  PutU64(message + sizeof(kLabel), session);
  PutU32(message + sizeof(kLabel) + 8, client_id);
  std::memcpy(message + sizeof(kLabel) + 12, seed.data(), seed.size());
  SecAggKey commitment{};
  crypto_generichash(commitment.data(), commitment.size(), message, sizeof(message), nullptr, 0);
  sodium_memzero(message, sizeof(message));
  return commitment;
}

bool SecAggKeysEqual(const SecAggKey& a, const SecAggKey& b) {
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace tributary
