// The messages of secure aggregation (federation/secagg.h), as plain structs that serialize to bytes so
// the daemons can carry them as `bytes` in the protobuf envelope. The four stages:
//
//   1. advertise keys   client -> server  AdvertiseKeysMsg       its two X25519 public keys
//                       server -> client  KeyDirectoryMsg        who advertised, its neighbours' keys
//   2. share keys       client -> server  ShareKeysMsg           one encrypted box of shares per neighbour
//                       server -> client  ForwardedSharesMsg     the boxes its neighbours sealed for it
//   3. masked input     client -> server  MaskedInputMsg         the masked vector
//                       server -> client  UnmaskRequestMsg       who survived, who dropped
//   4. unmasking        client -> server  UnmaskResponseMsg      the shares the server needs
//
// Wire format: "SA", version 1, the message type (1 byte), the session (u64), then the fields in order;
// integers little-endian, a list as a u32 count then its items. Parse refuses a wrong header, type or
// version, a truncated message, trailing bytes and counts that cannot fit in the bytes given
// (InvalidArgument "<Type>: ..."; the server names the sending client in front).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"
#include "federation/secagg_crypto.h"
#include "federation/shamir.h"

namespace tributary {

struct AdvertiseKeysMsg {
  uint64_t session = 0;
  uint32_t client_id = 0;
  SecAggKey mask_public_key{};        // pairwise masks (X25519 key agreement)
  SecAggKey encryption_public_key{};  // boxes of shares

  std::vector<uint8_t> Serialize() const;
  static Result<AdvertiseKeysMsg> Parse(std::span<const uint8_t> bytes);
};

struct KeyDirectoryMsg {
  uint64_t session = 0;
  std::vector<uint32_t> participants;        // every client that advertised keys, ascending
  std::vector<AdvertiseKeysMsg> neighbours;  // the recipient's neighbours' keys, ascending id

  std::vector<uint8_t> Serialize() const;
  static Result<KeyDirectoryMsg> Parse(std::span<const uint8_t> bytes);
};

// A box of shares sealed by one client for another (SealSecAggBox). Its plaintext is the session (u64),
// the sender and recipient ids (u32 each), then the recipient's shares of the sender's self-mask seed
// and of its mask secret key (kShamirShareBytes each).
inline constexpr size_t kSecAggSharesPlainBytes = 8 + 4 + 4 + 2 * kShamirShareBytes;
inline constexpr size_t kSecAggSealedSharesBytes = kSecAggSharesPlainBytes + kSecAggBoxOverhead;
struct EncryptedShares {
  uint32_t peer_id = 0;  // the recipient in a ShareKeysMsg, the sender in a ForwardedSharesMsg
  std::vector<uint8_t> box;
};

struct ShareKeysMsg {
  uint64_t session = 0;
  uint32_t client_id = 0;
  SecAggKey seed_commitment{};         // CommitSecAggSeed of the client's self-mask seed
  std::vector<EncryptedShares> boxes;  // one per neighbour, ascending recipient id

  std::vector<uint8_t> Serialize() const;
  static Result<ShareKeysMsg> Parse(std::span<const uint8_t> bytes);
};

struct ForwardedSharesMsg {
  uint64_t session = 0;
  std::vector<EncryptedShares> boxes;  // from every neighbour that shared keys, ascending sender id

  std::vector<uint8_t> Serialize() const;
  static Result<ForwardedSharesMsg> Parse(std::span<const uint8_t> bytes);
};

struct MaskedInputMsg {
  uint64_t session = 0;
  uint32_t client_id = 0;
  std::vector<uint32_t> masked;  // the round's dim values modulo 2^32

  std::vector<uint8_t> Serialize() const;
  static Result<MaskedInputMsg> Parse(std::span<const uint8_t> bytes);
};

struct UnmaskRequestMsg {
  uint64_t session = 0;
  std::vector<uint32_t> survivors;  // clients whose masked input the server holds, ascending
  std::vector<uint32_t> dropped;    // clients that shared keys but sent no masked input, ascending

  std::vector<uint8_t> Serialize() const;
  static Result<UnmaskRequestMsg> Parse(std::span<const uint8_t> bytes);
};

enum class SecAggShareKind : uint8_t {
  kSelfSeed = 1,  // a share of a surviving client's self-mask seed b_u
  kMaskKey = 2,   // a share of a dropped client's mask secret key
};

struct RevealedShare {
  uint32_t owner_id = 0;  // whose secret it is a share of
  SecAggShareKind kind = SecAggShareKind::kSelfSeed;
  std::array<uint8_t, kShamirShareBytes> share{};  // the y of the responder's point (x = responder id)
};

struct UnmaskResponseMsg {
  uint64_t session = 0;
  uint32_t client_id = 0;
  std::vector<RevealedShare> shares;  // ascending owner id

  std::vector<uint8_t> Serialize() const;
  static Result<UnmaskResponseMsg> Parse(std::span<const uint8_t> bytes);
};

}  // namespace tributary
