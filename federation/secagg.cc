// The round's configuration and communication graph, and the client's side of secure aggregation.
#include "federation/secagg.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

namespace tributary {
namespace {

std::string Client(uint32_t id) {
  return "client " + std::to_string(id);
}

// The position key of a client on the ring of a k-regular graph.
uint64_t RingKey(uint64_t session, uint32_t id) {
  static constexpr char kLabel[] = "tributary secagg graph v1";
  uint8_t message[sizeof(kLabel) + 12];
  std::memcpy(message, kLabel, sizeof(kLabel));
  for (int i = 0; i < 8; ++i)
    message[sizeof(kLabel) + static_cast<size_t>(i)] = static_cast<uint8_t>(session >> (8 * i));
  for (int i = 0; i < 4; ++i)
    message[sizeof(kLabel) + 8 + static_cast<size_t>(i)] = static_cast<uint8_t>(id >> (8 * i));
  uint8_t hash[crypto_generichash_BYTES_MIN];
  crypto_generichash(hash, sizeof(hash), message, sizeof(message), nullptr, 0);
  uint64_t key = 0;
  for (int i = 0; i < 8; ++i) key |= uint64_t{hash[i]} << (8 * i);
  return key;
}

void PutU32(uint8_t* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
}
void PutU64(uint8_t* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t GetU32(const uint8_t* in) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{in[i]} << (8 * i);
  return v;
}
uint64_t GetU64(const uint8_t* in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{in[i]} << (8 * i);
  return v;
}

Status CheckAscending(const std::vector<uint32_t>& ids, const char* what) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] == 0) return Status::InvalidArgument(std::string(what) + " lists client id 0");
    if (i > 0 && ids[i] <= ids[i - 1])
      return Status::InvalidArgument(std::string(what) + " is not strictly ascending at " + Client(ids[i]));
  }
  return Status::OK();
}

}  // namespace

std::string SecAggIdList(const std::vector<uint32_t>& ids) {
  std::string out;
  for (uint32_t id : ids) out += (out.empty() ? "" : ", ") + std::to_string(id);
  return out.empty() ? "none" : out;
}

uint32_t SecAggDegree(uint32_t neighbours, size_t num_clients) {
  if (num_clients < 2) return 0;
  const uint32_t all = static_cast<uint32_t>(num_clients - 1);
  if (neighbours == 0 || neighbours >= all) return all;
  if (neighbours % 2 == 1 && num_clients % 2 == 1) return neighbours + 1;  // no odd-degree regular graph
  return neighbours;
}

Status ValidateSecAggConfig(const SecAggConfig& config, size_t num_clients) {
  if (config.dim < 1) return Status::InvalidArgument("secagg: dim " + std::to_string(config.dim) + " (at least 1)");
  if (num_clients < 2)
    return Status::InvalidArgument("secagg: " + std::to_string(num_clients) + " clients (at least 2)");
  const uint32_t degree = SecAggDegree(config.neighbours, num_clients);
  const uint32_t shares = degree + 1;
  if (config.threshold > shares || 2 * config.threshold <= shares)
    return Status::InvalidArgument(
        "secagg: threshold " + std::to_string(config.threshold) + " for " + std::to_string(shares) +
        " shares per client (" + std::to_string(degree) + " neighbours + itself among " + std::to_string(num_clients) +
        " clients): expected " + std::to_string(shares / 2 + 1) + " to " + std::to_string(shares));
  return Status::OK();
}

const std::vector<uint32_t>& SecAggGraph::Of(uint32_t id) const {
  static const std::vector<uint32_t> kNone;
  auto it = neighbours.find(id);
  return it == neighbours.end() ? kNone : it->second;
}

bool SecAggGraph::Adjacent(uint32_t a, uint32_t b) const {
  const std::vector<uint32_t>& of = Of(a);
  return std::binary_search(of.begin(), of.end(), b);
}

Result<SecAggGraph> BuildSecAggGraph(const SecAggConfig& config, std::span<const uint32_t> ids) {
  TRIB_RETURN_IF_ERROR(SecAggSodiumReady());
  TRIB_RETURN_IF_ERROR(CheckAscending(std::vector<uint32_t>(ids.begin(), ids.end()), "secagg participants"));
  TRIB_RETURN_IF_ERROR(ValidateSecAggConfig(config, ids.size()));
  const size_t n = ids.size();
  SecAggGraph graph;
  graph.degree = SecAggDegree(config.neighbours, n);
  if (graph.degree == n - 1) {
    for (uint32_t id : ids) {
      std::vector<uint32_t>& of = graph.neighbours[id];
      for (uint32_t other : ids) {
        if (other != id) of.push_back(other);
      }
    }
    return graph;
  }
  std::vector<std::pair<uint64_t, uint32_t>> ring;
  ring.reserve(n);
  for (uint32_t id : ids) ring.emplace_back(RingKey(config.session, id), id);
  std::sort(ring.begin(), ring.end());
  const size_t half = graph.degree / 2;
  for (size_t p = 0; p < n; ++p) {
    std::vector<uint32_t>& of = graph.neighbours[ring[p].second];
    for (size_t d = 1; d <= half; ++d) {
      of.push_back(ring[(p + d) % n].second);
      of.push_back(ring[(p + n - d) % n].second);
    }
    if (graph.degree % 2 == 1) of.push_back(ring[(p + n / 2) % n].second);  // n even here
    std::sort(of.begin(), of.end());
  }
  return graph;
}

// ---------------------------------------------------------------------------------------------------
// SecAggClient

Result<SecAggClient> SecAggClient::Create(const SecAggConfig& config, uint32_t id) {
  if (id == 0) return Status::InvalidArgument("secagg: client id 0 (ids start at 1)");
  if (config.dim < 1) return Status::InvalidArgument("secagg: dim " + std::to_string(config.dim) + " (at least 1)");
  if (config.threshold < 2)
    return Status::InvalidArgument("secagg: threshold " + std::to_string(config.threshold) + " (at least 2)");
  SecAggClient client;
  client.config_ = config;
  client.id_ = id;
  TRIB_ASSIGN_OR_RETURN(client.mask_keys_, GenerateSecAggKeyPair());
  TRIB_ASSIGN_OR_RETURN(client.box_keys_, GenerateSecAggKeyPair());
  client.seed_ = RandomSecAggSeed();
  return client;
}

SecAggClient::~SecAggClient() {
  sodium_memzero(mask_keys_.secret_key.data(), mask_keys_.secret_key.size());
  sodium_memzero(box_keys_.secret_key.data(), box_keys_.secret_key.size());
  sodium_memzero(seed_.data(), seed_.size());
  sodium_memzero(own_seed_share_.data(), own_seed_share_.size());
  for (auto& [peer, seed] : pair_seeds_) sodium_memzero(seed.data(), seed.size());
  for (auto& [peer, held] : held_) {
    sodium_memzero(held.seed.data(), held.seed.size());
    sodium_memzero(held.mask_key.data(), held.mask_key.size());
  }
}

AdvertiseKeysMsg SecAggClient::AdvertiseKeys() const {
  AdvertiseKeysMsg msg;
  msg.session = config_.session;
  msg.client_id = id_;
  msg.mask_public_key = mask_keys_.public_key;
  msg.encryption_public_key = box_keys_.public_key;
  return msg;
}

Result<ShareKeysMsg> SecAggClient::ShareKeys(const KeyDirectoryMsg& directory) {
  if (stage_ != Stage::kShareKeys)
    return Status::FailedPrecondition("secagg " + Client(id_) + ": keys were shared already");
  if (directory.session != config_.session)
    return Status::InvalidArgument("secagg key directory: session " + std::to_string(directory.session) +
                                   ", expected " + std::to_string(config_.session));
  TRIB_RETURN_IF_ERROR(CheckAscending(directory.participants, "secagg key directory: participant list"));
  if (!std::binary_search(directory.participants.begin(), directory.participants.end(), id_))
    return Status::InvalidArgument("secagg key directory does not list this client (" + Client(id_) + ")");
  Result<SecAggGraph> graph = BuildSecAggGraph(config_, directory.participants);
  if (!graph.ok()) return graph.status().WithContext("secagg key directory");
  const std::vector<uint32_t>& mine = graph->Of(id_);
  std::vector<uint32_t> listed;
  for (const AdvertiseKeysMsg& keys : directory.neighbours) listed.push_back(keys.client_id);
  if (listed != mine)
    return Status::InvalidArgument("secagg key directory: neighbour keys for clients " + SecAggIdList(listed) +
                                   ", but this client's neighbours are " + SecAggIdList(mine));
  std::map<uint32_t, SecAggKey> pair_seeds;
  for (const AdvertiseKeysMsg& keys : directory.neighbours) {
    if (SecAggKeysEqual(keys.mask_public_key, mask_keys_.public_key) ||
        SecAggKeysEqual(keys.encryption_public_key, box_keys_.public_key))
      return Status::InvalidArgument("secagg key directory: " + Client(keys.client_id) +
                                     " advertises this client's own public key");
    TRIB_ASSIGN_OR_RETURN(pair_seeds[keys.client_id],
                          PairwiseMaskSeed(config_.session, id_, mask_keys_, keys.client_id, keys.mask_public_key));
  }

  // Shares among the neighbours and this client (x = ids, ascending).
  std::vector<uint32_t> holders = mine;
  holders.insert(std::lower_bound(holders.begin(), holders.end(), id_), id_);
  TRIB_ASSIGN_OR_RETURN(std::vector<ShamirShare> seed_shares, ShamirSplit(seed_, config_.threshold, holders));
  TRIB_ASSIGN_OR_RETURN(std::vector<ShamirShare> key_shares,
                        ShamirSplit(mask_keys_.secret_key, config_.threshold, holders));

  ShareKeysMsg msg;
  msg.session = config_.session;
  msg.client_id = id_;
  msg.seed_commitment = CommitSecAggSeed(config_.session, id_, seed_);
  std::array<uint8_t, kSecAggSharesPlainBytes> plain{};
  for (size_t i = 0; i < holders.size(); ++i) {
    const uint32_t to = holders[i];
    if (to == id_) {
      own_seed_share_ = seed_shares[i].y;
      continue;
    }
    PutU64(plain.data(), config_.session);
    PutU32(plain.data() + 8, id_);
    PutU32(plain.data() + 12, to);
    std::memcpy(plain.data() + 16, seed_shares[i].y.data(), kShamirShareBytes);
    std::memcpy(plain.data() + 16 + kShamirShareBytes, key_shares[i].y.data(), kShamirShareBytes);
    const AdvertiseKeysMsg* keys = nullptr;
    for (const AdvertiseKeysMsg& k : directory.neighbours) {
      if (k.client_id == to) keys = &k;
    }
    Result<std::vector<uint8_t>> box = SealSecAggBox(plain, keys->encryption_public_key, box_keys_.secret_key);
    if (!box.ok()) return box.status().WithContext("secagg " + Client(to));
    msg.boxes.push_back({to, std::move(*box)});
  }
  sodium_memzero(plain.data(), plain.size());
  for (ShamirShare& s : seed_shares) sodium_memzero(s.y.data(), s.y.size());
  for (ShamirShare& s : key_shares) sodium_memzero(s.y.data(), s.y.size());

  participants_ = std::set<uint32_t>(directory.participants.begin(), directory.participants.end());
  for (const AdvertiseKeysMsg& keys : directory.neighbours) neighbour_keys_[keys.client_id] = keys;
  pair_seeds_ = std::move(pair_seeds);
  stage_ = Stage::kMaskInput;
  return msg;
}

Result<MaskedInputMsg> SecAggClient::MaskInput(const ForwardedSharesMsg& forwarded, std::span<const uint32_t> input) {
  if (stage_ != Stage::kMaskInput)
    return Status::FailedPrecondition(stage_ == Stage::kShareKeys
                                          ? "secagg " + Client(id_) + ": masking before keys were shared"
                                          : "secagg " + Client(id_) + ": the input was masked already");
  if (forwarded.session != config_.session)
    return Status::InvalidArgument("secagg forwarded shares: session " + std::to_string(forwarded.session) +
                                   ", expected " + std::to_string(config_.session));
  if (input.size() != static_cast<size_t>(config_.dim))
    return Status::InvalidArgument("secagg " + Client(id_) + ": input of " + std::to_string(input.size()) +
                                   " values, expected dim " + std::to_string(config_.dim));
  std::map<uint32_t, HeldShares> held;
  for (const EncryptedShares& box : forwarded.boxes) {
    const std::string from = "secagg " + Client(box.peer_id) + ": ";
    auto keys = neighbour_keys_.find(box.peer_id);
    if (keys == neighbour_keys_.end())
      return Status::InvalidArgument(from + "forwarded shares from a client that is not a neighbour");
    if (held.count(box.peer_id) != 0) return Status::InvalidArgument(from + "two boxes of shares forwarded");
    if (box.box.size() != kSecAggSealedSharesBytes)
      return Status::InvalidArgument(from + "box of shares has " + std::to_string(box.box.size()) +
                                     " bytes, expected " + std::to_string(kSecAggSealedSharesBytes));
    Result<std::vector<uint8_t>> plain =
        OpenSecAggBox(box.box, keys->second.encryption_public_key, box_keys_.secret_key);
    if (!plain.ok()) return Status::InvalidArgument(from + plain.status().message());
    if (GetU64(plain->data()) != config_.session || GetU32(plain->data() + 8) != box.peer_id ||
        GetU32(plain->data() + 12) != id_)
      return Status::InvalidArgument(from + "box of shares is for another round, sender or recipient");
    HeldShares& h = held[box.peer_id];
    std::memcpy(h.seed.data(), plain->data() + 16, kShamirShareBytes);
    std::memcpy(h.mask_key.data(), plain->data() + 16 + kShamirShareBytes, kShamirShareBytes);
    sodium_memzero(plain->data(), plain->size());
  }
  if (held.size() + 1 < config_.threshold)
    return Status::FailedPrecondition("secagg " + Client(id_) + ": " + std::to_string(held.size()) +
                                      " neighbours shared keys, threshold " + std::to_string(config_.threshold) +
                                      " needs " + std::to_string(config_.threshold - 1) +
                                      ": this client's secrets could not be reconstructed");
  MaskedInputMsg msg;
  msg.session = config_.session;
  msg.client_id = id_;
  msg.masked.assign(input.begin(), input.end());
  ApplySecAggMask(seed_, MaskKind::kSelf, /*subtract=*/false, msg.masked);
  for (const auto& [peer, shares] : held) {
    // Added by the lower id, subtracted by the higher: they cancel in the sum.
    ApplySecAggMask(pair_seeds_.at(peer), MaskKind::kPairwise, /*subtract=*/peer < id_, msg.masked);
  }
  held_ = std::move(held);
  for (auto& [peer, seed] : pair_seeds_) sodium_memzero(seed.data(), seed.size());
  sodium_memzero(mask_keys_.secret_key.data(), mask_keys_.secret_key.size());
  stage_ = Stage::kUnmask;
  return msg;
}

Result<UnmaskResponseMsg> SecAggClient::Unmask(const UnmaskRequestMsg& request) {
  if (stage_ != Stage::kUnmask)
    return Status::FailedPrecondition("secagg " + Client(id_) + ": unmask request before the input was masked");
  if (request.session != config_.session)
    return Status::InvalidArgument("secagg unmask request: session " + std::to_string(request.session) + ", expected " +
                                   std::to_string(config_.session));
  TRIB_RETURN_IF_ERROR(CheckAscending(request.survivors, "secagg unmask request: survivor list"));
  TRIB_RETURN_IF_ERROR(CheckAscending(request.dropped, "secagg unmask request: dropped list"));
  const std::set<uint32_t> survivors(request.survivors.begin(), request.survivors.end());
  const std::set<uint32_t> dropped(request.dropped.begin(), request.dropped.end());
  for (uint32_t id : request.dropped) {
    if (survivors.count(id) != 0)
      return Status::InvalidArgument("secagg unmask request lists " + Client(id) + " as survivor and as dropped");
  }
  for (const std::set<uint32_t>* list : {&survivors, &dropped}) {
    for (uint32_t id : *list) {
      if (participants_.count(id) == 0)
        return Status::InvalidArgument("secagg unmask request lists " + Client(id) + ", not a participant");
    }
  }
  if (survivors.count(id_) == 0)
    return Status::InvalidArgument("secagg unmask request does not list this client (" + Client(id_) +
                                   ") as a survivor");
  if (survivors.size() < config_.threshold)
    return Status::PermissionDenied(
        "secagg " + Client(id_) + ": unmask request names " + std::to_string(survivors.size()) + " survivors (" +
        SecAggIdList(request.survivors) + "), threshold " + std::to_string(config_.threshold) +
        ": refused (the server would learn a sum of fewer than t inputs)");
  // What to reveal, checked against everything revealed before (all or nothing).
  std::map<uint32_t, SecAggShareKind> reveal;
  reveal[id_] = SecAggShareKind::kSelfSeed;
  for (const auto& [peer, shares] : held_) {
    const bool survived = survivors.count(peer) != 0;
    if (!survived && dropped.count(peer) == 0)
      return Status::InvalidArgument("secagg unmask request does not say whether " + Client(peer) + " survived");
    reveal[peer] = survived ? SecAggShareKind::kSelfSeed : SecAggShareKind::kMaskKey;
  }
  for (const auto& [owner, kind] : reveal) {
    auto before = revealed_.find(owner);
    if (before != revealed_.end() && before->second != kind)
      return Status::PermissionDenied("secagg " + Client(id_) + ": refusing to reveal " + Client(owner) + "'s " +
                                      (kind == SecAggShareKind::kMaskKey
                                           ? "mask-key share after its self-mask seed share"
                                           : "self-mask seed share after its mask-key share") +
                                      " (a client never reveals both shares of one peer)");
  }
  UnmaskResponseMsg msg;
  msg.session = config_.session;
  msg.client_id = id_;
  for (const auto& [owner, kind] : reveal) {
    RevealedShare share;
    share.owner_id = owner;
    share.kind = kind;
    if (owner == id_) {
      share.share = own_seed_share_;
    } else {
      const HeldShares& h = held_.at(owner);
      share.share = kind == SecAggShareKind::kSelfSeed ? h.seed : h.mask_key;
    }
    msg.shares.push_back(share);
    revealed_[owner] = kind;
  }
  return msg;
}

}  // namespace tributary
