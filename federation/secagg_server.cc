// The coordinator's side of secure aggregation (federation/secagg.h).
#include <algorithm>
#include <string>
#include <utility>

#include "federation/secagg.h"

namespace tributary {
namespace {

std::string Client(uint32_t id) {
  return "client " + std::to_string(id);
}

const char* StageName(SecAggServer::Stage stage) {
  switch (stage) {
    case SecAggServer::Stage::kAdvertiseKeys: return "advertise keys";
    case SecAggServer::Stage::kShareKeys: return "share keys";
    case SecAggServer::Stage::kMaskedInput: return "masked input";
    case SecAggServer::Stage::kUnmask: return "unmasking";
    case SecAggServer::Stage::kDone: return "done";
    case SecAggServer::Stage::kFailed: return "failed";
  }
  return "?";
}

template <typename Map>
std::vector<uint32_t> Keys(const Map& map) {
  std::vector<uint32_t> out;
  for (const auto& entry : map) out.push_back(entry.first);
  return out;
}

std::vector<uint32_t> Ids(const std::set<uint32_t>& set) {
  return {set.begin(), set.end()};
}

// "secagg client 3: " + the parse error, which names the message type.
template <typename Msg>
Result<Msg> ParseFrom(uint32_t from, std::span<const uint8_t> bytes) {
  Result<Msg> msg = Msg::Parse(bytes);
  if (!msg.ok()) return msg.status().WithContext("secagg " + Client(from));
  return msg;
}

}  // namespace

Result<SecAggServer> SecAggServer::Create(const SecAggConfig& config, std::vector<uint32_t> clients) {
  std::sort(clients.begin(), clients.end());
  for (size_t i = 0; i < clients.size(); ++i) {
    if (clients[i] == 0) return Status::InvalidArgument("secagg: client id 0 (ids start at 1)");
    if (i > 0 && clients[i] == clients[i - 1])
      return Status::InvalidArgument("secagg: " + Client(clients[i]) + " listed twice");
  }
  TRIB_RETURN_IF_ERROR(ValidateSecAggConfig(config, clients.size()));
  TRIB_RETURN_IF_ERROR(SecAggSodiumReady());
  SecAggServer server;
  server.config_ = config;
  server.clients_ = std::set<uint32_t>(clients.begin(), clients.end());
  return server;
}

std::vector<uint32_t> SecAggServer::Pending() const {
  std::vector<uint32_t> out;
  auto missing = [&out](const auto& expected, auto&& arrived) {
    for (uint32_t id : expected) {
      if (!arrived(id)) out.push_back(id);
    }
  };
  switch (stage_) {
    case Stage::kAdvertiseKeys: missing(clients_, [this](uint32_t id) { return keys_.count(id) != 0; }); break;
    case Stage::kShareKeys: missing(Keys(keys_), [this](uint32_t id) { return shared_.count(id) != 0; }); break;
    case Stage::kMaskedInput: missing(Keys(shared_), [this](uint32_t id) { return masked_.count(id) != 0; }); break;
    case Stage::kUnmask: missing(masked_, [this](uint32_t id) { return responses_.count(id) != 0; }); break;
    case Stage::kDone:
    case Stage::kFailed: break;
  }
  return out;
}

Status SecAggServer::CheckStage(uint32_t from, Stage expected, const char* what) const {
  if (stage_ == Stage::kFailed) return failure_;
  if (stage_ != expected)
    return Status::FailedPrecondition("secagg " + Client(from) + ": " + what + " arrived in stage '" +
                                      StageName(stage_) + "' (late or early)");
  return Status::OK();
}

Status SecAggServer::Fail(Status status) {
  stage_ = Stage::kFailed;
  failure_ = status;
  return status;
}

std::vector<uint32_t> SecAggServer::Holders(uint32_t owner, const std::set<uint32_t>& among) const {
  std::vector<uint32_t> out;
  for (uint32_t r : among) {
    if ((r == owner || graph_.Adjacent(owner, r)) && shared_.count(r) != 0) out.push_back(r);
  }
  return out;
}

// --- Stage 1 ---------------------------------------------------------------------------------------

Status SecAggServer::ReceiveAdvertiseKeys(uint32_t from, std::span<const uint8_t> bytes) {
  TRIB_ASSIGN_OR_RETURN(AdvertiseKeysMsg msg, ParseFrom<AdvertiseKeysMsg>(from, bytes));
  return ReceiveAdvertiseKeys(from, msg);
}

Status SecAggServer::ReceiveAdvertiseKeys(uint32_t from, const AdvertiseKeysMsg& msg) {
  TRIB_RETURN_IF_ERROR(CheckStage(from, Stage::kAdvertiseKeys, "AdvertiseKeys"));
  const std::string who = "secagg " + Client(from) + ": AdvertiseKeys: ";
  if (clients_.count(from) == 0) return Status::InvalidArgument(who + "not a client of this round");
  if (msg.client_id != from) return Status::InvalidArgument(who + "claims to be " + Client(msg.client_id));
  if (msg.session != config_.session)
    return Status::InvalidArgument(who + "session " + std::to_string(msg.session) + ", expected " +
                                   std::to_string(config_.session));
  if (keys_.count(from) != 0) return Status::InvalidArgument(who + "sent twice");
  if (SecAggKeysEqual(msg.mask_public_key, msg.encryption_public_key))
    return Status::InvalidArgument(who + "the same public key for masks and for share boxes");
  keys_[from] = msg;
  return Status::OK();
}

Result<std::map<uint32_t, KeyDirectoryMsg>> SecAggServer::CloseAdvertiseKeys() {
  if (stage_ == Stage::kFailed) return failure_;
  if (stage_ != Stage::kAdvertiseKeys)
    return Status::FailedPrecondition(std::string("secagg: closing 'advertise keys' in stage '") + StageName(stage_) +
                                      "'");
  const std::vector<uint32_t> u1 = Keys(keys_);
  Result<SecAggGraph> graph = BuildSecAggGraph(config_, u1);
  if (!graph.ok())
    return Fail(Status::FailedPrecondition("secagg: " + std::to_string(u1.size()) + " of " +
                                           std::to_string(clients_.size()) + " clients advertised keys (" +
                                           SecAggIdList(u1) + "): " + graph.status().message()));
  graph_ = std::move(*graph);
  std::map<uint32_t, KeyDirectoryMsg> out;
  for (uint32_t id : u1) {
    KeyDirectoryMsg& dir = out[id];
    dir.session = config_.session;
    dir.participants = u1;
    for (uint32_t v : graph_.Of(id)) dir.neighbours.push_back(keys_.at(v));
  }
  stage_ = Stage::kShareKeys;
  return out;
}

// --- Stage 2 ---------------------------------------------------------------------------------------

Status SecAggServer::ReceiveShareKeys(uint32_t from, std::span<const uint8_t> bytes) {
  TRIB_ASSIGN_OR_RETURN(ShareKeysMsg msg, ParseFrom<ShareKeysMsg>(from, bytes));
  return ReceiveShareKeys(from, msg);
}

Status SecAggServer::ReceiveShareKeys(uint32_t from, const ShareKeysMsg& msg) {
  TRIB_RETURN_IF_ERROR(CheckStage(from, Stage::kShareKeys, "ShareKeys"));
  const std::string who = "secagg " + Client(from) + ": ShareKeys: ";
  if (keys_.count(from) == 0) return Status::InvalidArgument(who + "did not advertise keys this round");
  if (msg.client_id != from) return Status::InvalidArgument(who + "claims to be " + Client(msg.client_id));
  if (msg.session != config_.session)
    return Status::InvalidArgument(who + "session " + std::to_string(msg.session) + ", expected " +
                                   std::to_string(config_.session));
  if (shared_.count(from) != 0) return Status::InvalidArgument(who + "sent twice");
  std::vector<uint32_t> to;
  for (const EncryptedShares& box : msg.boxes) {
    if (box.box.size() != kSecAggSealedSharesBytes)
      return Status::InvalidArgument(who + "box for " + Client(box.peer_id) + " has " + std::to_string(box.box.size()) +
                                     " bytes, expected " + std::to_string(kSecAggSealedSharesBytes));
    to.push_back(box.peer_id);
  }
  if (to != graph_.Of(from))
    return Status::InvalidArgument(who + "boxes for clients " + SecAggIdList(to) +
                                   ", expected one for each neighbour (" + SecAggIdList(graph_.Of(from)) + ")");
  shared_[from] = msg;
  return Status::OK();
}

Result<std::map<uint32_t, ForwardedSharesMsg>> SecAggServer::CloseShareKeys() {
  if (stage_ == Stage::kFailed) return failure_;
  if (stage_ != Stage::kShareKeys)
    return Status::FailedPrecondition(std::string("secagg: closing 'share keys' in stage '") + StageName(stage_) + "'");
  // A client whose secrets fewer than t holders (itself and neighbours that shared keys) could give
  // back cannot take part; leaving it out can leave others short, so repeat until nothing changes.
  std::vector<uint32_t> left_out;
  for (bool changed = true; changed;) {
    changed = false;
    std::set<uint32_t> in;
    for (const auto& [id, msg] : shared_) in.insert(id);
    for (uint32_t id : in) {
      if (Holders(id, in).size() < config_.threshold) {
        shared_.erase(id);
        left_out.push_back(id);
        changed = true;
      }
    }
  }
  if (shared_.size() < config_.threshold)
    return Fail(Status::FailedPrecondition(
        "secagg: " + std::to_string(shared_.size()) + " clients shared keys with enough neighbours (" +
        SecAggIdList(Keys(shared_)) + "; left out for too few neighbours: " + SecAggIdList(left_out) + "), threshold " +
        std::to_string(config_.threshold) + ": the round cannot finish"));
  std::map<uint32_t, ForwardedSharesMsg> out;
  for (const auto& [id, msg] : shared_) out[id].session = config_.session;
  for (const auto& [from, msg] : shared_) {
    for (const EncryptedShares& box : msg.boxes) {
      auto it = out.find(box.peer_id);
      if (it != out.end()) it->second.boxes.push_back({from, box.box});  // ascending sender: shared_ is ordered
    }
  }
  sum_.assign(static_cast<size_t>(config_.dim), 0);
  stage_ = Stage::kMaskedInput;
  return out;
}

// --- Stage 3 ---------------------------------------------------------------------------------------

Status SecAggServer::ReceiveMaskedInput(uint32_t from, std::span<const uint8_t> bytes) {
  TRIB_ASSIGN_OR_RETURN(MaskedInputMsg msg, ParseFrom<MaskedInputMsg>(from, bytes));
  return ReceiveMaskedInput(from, msg);
}

Status SecAggServer::ReceiveMaskedInput(uint32_t from, const MaskedInputMsg& msg) {
  TRIB_RETURN_IF_ERROR(CheckStage(from, Stage::kMaskedInput, "MaskedInput"));
  const std::string who = "secagg " + Client(from) + ": MaskedInput: ";
  if (shared_.count(from) == 0)
    return Status::InvalidArgument(who + "not in the masking stage (it shared no keys, or was left out)");
  if (msg.client_id != from) return Status::InvalidArgument(who + "claims to be " + Client(msg.client_id));
  if (msg.session != config_.session)
    return Status::InvalidArgument(who + "session " + std::to_string(msg.session) + ", expected " +
                                   std::to_string(config_.session));
  if (masked_.count(from) != 0) return Status::InvalidArgument(who + "sent twice");
  if (msg.masked.size() != static_cast<size_t>(config_.dim))
    return Status::InvalidArgument(who + std::to_string(msg.masked.size()) + " values, expected dim " +
                                   std::to_string(config_.dim));
  uint32_t* sum = sum_.data();
  const uint32_t* y = msg.masked.data();
  for (size_t i = 0, n = sum_.size(); i < n; ++i) sum[i] += y[i];  // modulo 2^32
  masked_.insert(from);
  return Status::OK();
}

Result<std::map<uint32_t, UnmaskRequestMsg>> SecAggServer::CloseMaskedInput() {
  if (stage_ == Stage::kFailed) return failure_;
  if (stage_ != Stage::kMaskedInput)
    return Status::FailedPrecondition(std::string("secagg: closing 'masked input' in stage '") + StageName(stage_) +
                                      "'");
  dropped_.clear();
  for (const auto& [id, msg] : shared_) {
    if (masked_.count(id) == 0) dropped_.insert(id);
  }
  if (masked_.size() < config_.threshold)
    return Fail(Status::FailedPrecondition(
        "secagg: " + std::to_string(masked_.size()) + " clients sent masked inputs (" + SecAggIdList(Ids(masked_)) +
        "), threshold " + std::to_string(config_.threshold) + ": the round cannot be unmasked"));
  for (uint32_t id : masked_) {
    const std::vector<uint32_t> holders = Holders(id, masked_);
    if (holders.size() < config_.threshold)
      return Fail(Status::FailedPrecondition("secagg: " + Client(id) + "'s self mask has " +
                                             std::to_string(holders.size()) + " share holders left (" +
                                             SecAggIdList(holders) + "), threshold " +
                                             std::to_string(config_.threshold) + ": the round cannot be unmasked"));
  }
  for (uint32_t id : dropped_) {
    const std::vector<uint32_t> holders = Holders(id, masked_);
    if (holders.size() < config_.threshold)
      return Fail(
          Status::FailedPrecondition("secagg: " + Client(id) + " dropped and " + std::to_string(holders.size()) +
                                     " of its neighbours survived (" + SecAggIdList(holders) + "), threshold " +
                                     std::to_string(config_.threshold) + ": its pairwise masks cannot be removed"));
  }
  std::map<uint32_t, UnmaskRequestMsg> out;
  for (uint32_t id : masked_) {
    UnmaskRequestMsg& req = out[id];
    req.session = config_.session;
    req.survivors = Ids(masked_);
    req.dropped = Ids(dropped_);
  }
  stage_ = Stage::kUnmask;
  return out;
}

// --- Stage 4 ---------------------------------------------------------------------------------------

Status SecAggServer::ReceiveUnmaskResponse(uint32_t from, std::span<const uint8_t> bytes) {
  TRIB_ASSIGN_OR_RETURN(UnmaskResponseMsg msg, ParseFrom<UnmaskResponseMsg>(from, bytes));
  return ReceiveUnmaskResponse(from, msg);
}

Status SecAggServer::ReceiveUnmaskResponse(uint32_t from, const UnmaskResponseMsg& msg) {
  TRIB_RETURN_IF_ERROR(CheckStage(from, Stage::kUnmask, "UnmaskResponse"));
  const std::string who = "secagg " + Client(from) + ": UnmaskResponse: ";
  if (masked_.count(from) == 0) return Status::InvalidArgument(who + "not a survivor of this round");
  if (msg.client_id != from) return Status::InvalidArgument(who + "claims to be " + Client(msg.client_id));
  if (msg.session != config_.session)
    return Status::InvalidArgument(who + "session " + std::to_string(msg.session) + ", expected " +
                                   std::to_string(config_.session));
  if (responses_.count(from) != 0) return Status::InvalidArgument(who + "sent twice");
  // Expected: its own seed share, and one share of every neighbour that stayed in after stage 2.
  std::set<uint32_t> expected{from};
  for (uint32_t v : graph_.Of(from)) {
    if (shared_.count(v) != 0) expected.insert(v);
  }
  std::set<uint32_t> seen;
  for (const RevealedShare& share : msg.shares) {
    const uint32_t owner = share.owner_id;
    if (expected.count(owner) == 0)
      return Status::InvalidArgument(who + "a share of " + Client(owner) + ", which it does not hold");
    if (!seen.insert(owner).second) return Status::InvalidArgument(who + "two shares of " + Client(owner));
    const bool survived = masked_.count(owner) != 0;
    const SecAggShareKind want = survived ? SecAggShareKind::kSelfSeed : SecAggShareKind::kMaskKey;
    if (share.kind != want)
      return Status::InvalidArgument(who + Client(owner) + (survived ? " survived" : " dropped") +
                                     ", but the share is of its " +
                                     (share.kind == SecAggShareKind::kMaskKey ? "mask key" : "self-mask seed"));
    if (!ShamirShareValid(share.share))
      return Status::InvalidArgument(who + "the share of " + Client(owner) + " is not two field elements");
  }
  if (seen.size() != expected.size()) {
    std::vector<uint32_t> missing;
    for (uint32_t id : expected) {
      if (seen.count(id) == 0) missing.push_back(id);
    }
    return Status::InvalidArgument(who + "no share of clients " + SecAggIdList(missing));
  }
  responses_[from] = msg;
  return Status::OK();
}

Result<SecAggResult> SecAggServer::Finish() {
  if (stage_ == Stage::kFailed) return failure_;
  if (stage_ != Stage::kUnmask)
    return Status::FailedPrecondition(std::string("secagg: finishing in stage '") + StageName(stage_) + "'");
  std::set<uint32_t> responders;
  for (const auto& [id, msg] : responses_) responders.insert(id);
  SecAggResult result;

  // The shares of `owner`'s secret (of `kind`) that the responders sent; x = the responder's id.
  auto shares_of = [&](uint32_t owner) {
    std::vector<ShamirShare> out;
    for (uint32_t r : Holders(owner, responders)) {
      for (const RevealedShare& s : responses_.at(r).shares) {
        if (s.owner_id == owner) out.push_back({r, s.share});
      }
    }
    return out;
  };
  auto recover = [&](uint32_t owner, const char* what,
                     const std::function<bool(const ShamirSecret&)>& verify) -> Result<ShamirSecret> {
    const std::vector<ShamirShare> shares = shares_of(owner);
    std::vector<uint32_t> from;
    for (const ShamirShare& s : shares) from.push_back(s.x);
    if (shares.size() < config_.threshold)
      return Status::FailedPrecondition("secagg: " + std::to_string(shares.size()) + " shares of " + Client(owner) +
                                        "'s " + what + " arrived (from " + SecAggIdList(from) + "), threshold " +
                                        std::to_string(config_.threshold) + ": the round cannot be unmasked");
    Result<ShamirRecovery> recovery = ShamirRecover(shares, config_.threshold, verify);
    if (!recovery.ok())
      return Status::FailedPrecondition("secagg: " + Client(owner) + "'s " + what +
                                        " does not reconstruct from the shares of clients " + SecAggIdList(from) +
                                        " (" + recovery.status().message() + ")");
    for (uint32_t bad : recovery->bad_x)
      result.rejected_shares.push_back(Status::InvalidArgument("secagg " + Client(bad) + ": bad share of " +
                                                               Client(owner) + "'s " + what + " (left out)"));
    return recovery->secret;
  };

  for (uint32_t u : masked_) {
    const SecAggKey commitment = shared_.at(u).seed_commitment;
    Result<ShamirSecret> seed = recover(u, "self-mask seed", [&](const ShamirSecret& s) {
      return SecAggKeysEqual(CommitSecAggSeed(config_.session, u, s), commitment);
    });
    if (!seed.ok()) return Fail(seed.status());
    ApplySecAggMask(*seed, MaskKind::kSelf, /*subtract=*/true, sum_);
  }
  for (uint32_t d : dropped_) {
    const AdvertiseKeysMsg& keys = keys_.at(d);
    Result<ShamirSecret> secret_key = recover(d, "mask key", [&](const ShamirSecret& s) {
      return SecAggKeysEqual(SecAggPublicKeyOf(s), keys.mask_public_key);
    });
    if (!secret_key.ok()) return Fail(secret_key.status());
    SecAggKeyPair pair{keys.mask_public_key, *secret_key};
    for (uint32_t v : Holders(d, masked_)) {
      if (v == d) continue;
      Result<SecAggKey> seed = PairwiseMaskSeed(config_.session, d, pair, v, keys_.at(v).mask_public_key);
      if (!seed.ok()) return Fail(seed.status().WithContext("secagg: removing " + Client(d) + "'s masks"));
      // v added the mask when v < d and subtracted it when v > d: undo that.
      ApplySecAggMask(*seed, MaskKind::kPairwise, /*subtract=*/v < d, sum_);
    }
  }
  result.sum = std::move(sum_);
  result.included = Ids(masked_);
  result.dropped = Ids(dropped_);
  stage_ = Stage::kDone;
  return result;
}

}  // namespace tributary
