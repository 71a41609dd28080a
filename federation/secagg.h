// Secure aggregation (SecAgg+, Bell et al. 2020, as Flower implements it): the coordinator learns only
// the sum of the clients' quantized vectors (federation/secagg_quantize.h), and a round still finishes
// when clients drop out. Pure state machines over the messages of federation/secagg_messages.h: no
// sockets, no clocks; the daemons carry the bytes and decide when a stage closes (docs/security.md).
//
// A client u has two X25519 key pairs (masks, share boxes) and a self-mask seed b_u, and uploads
//   y_u = x_u + PRG(b_u) + sum_{v in N(u), u < v} PRG(s_uv) - sum_{v in N(u), v < u} PRG(s_uv)  (mod 2^32)
// where N(u) are its neighbours in the round's communication graph that shared keys and s_uv the seed
// of their X25519 shared secret. The pairwise masks cancel in the sum over the clients whose y arrived
// (survivors); the server reconstructs b_u of every survivor, and the mask secret key of every client
// that shared keys but sent no y (dropped), from t Shamir shares held by u's neighbours (and u itself),
// then removes the self masks and the dropped clients' pairwise masks.
//
// The graph: all pairs when `neighbours` is 0 or at least n - 1; otherwise a k-regular graph (SecAgg+):
// the clients sit on a ring in the order of a hash of (session, id), each joined to the k/2 nearest on
// either side, and to the opposite client when k is odd (k odd and n odd: k + 1). Each client's two
// secrets are shared among its k neighbours and itself (k + 1 shares), threshold t with
// (k + 1) / 2 < t <= k + 1: any t reconstruct, t - 1 colluding with the server learn nothing, and a
// server that tells clients inconsistent stories cannot collect t shares of both secrets of one client.
//
// Client ids are the round's small integers >= 1 (the coordinator numbers the selected workers 1..n in
// ascending worker id); an id is also the client's Shamir point.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "federation/secagg_crypto.h"
#include "federation/secagg_messages.h"
#include "federation/shamir.h"

namespace tributary {

struct SecAggConfig {
  uint64_t session = 0;     // binds messages, mask seeds, boxes and commitments to one round
  int64_t dim = 0;          // values per input vector, >= 1
  uint32_t threshold = 0;   // t: shares that reconstruct a client's secrets
  uint32_t neighbours = 0;  // k: 0 (or >= n - 1) for all pairs
};

// "1, 3, 4" ("none" when empty): how errors list clients.
std::string SecAggIdList(const std::vector<uint32_t>& ids);

// The neighbour count each client gets among n clients (see above): n - 1 for all pairs.
uint32_t SecAggDegree(uint32_t neighbours, size_t num_clients);

// InvalidArgument naming the field: dim < 1, fewer than 2 clients, or a threshold outside
// ((k + 1) / 2, k + 1] for k = SecAggDegree(config.neighbours, num_clients).
Status ValidateSecAggConfig(const SecAggConfig& config, size_t num_clients);

struct SecAggGraph {
  uint32_t degree = 0;
  std::map<uint32_t, std::vector<uint32_t>> neighbours;  // every participant's neighbours, ascending

  // The neighbours of `id` (empty for a non-participant).
  const std::vector<uint32_t>& Of(uint32_t id) const;
  bool Adjacent(uint32_t a, uint32_t b) const;
};

// The communication graph over `ids` (ascending, distinct, >= 1); the config is validated for their count.
Result<SecAggGraph> BuildSecAggGraph(const SecAggConfig& config, std::span<const uint32_t> ids);

// One client's side of a round. Each stage runs once and in order (a daemon resends the bytes it
// got when a message is lost); Unmask may repeat with a consistent request. Errors name the peer.
class SecAggClient {
 public:
  // A client with fresh key pairs and self-mask seed. InvalidArgument for id 0 or a config that is
  // invalid even for all pairs.
  static Result<SecAggClient> Create(const SecAggConfig& config, uint32_t id);
  SecAggClient(SecAggClient&&) = default;
  SecAggClient& operator=(SecAggClient&&) = default;
  ~SecAggClient();  // wipes the secrets

  uint32_t id() const { return id_; }

  // Stage 1: the public keys to advertise.
  AdvertiseKeysMsg AdvertiseKeys() const;

  // Stage 2: checks the directory (session, participants include this client, the neighbours are
  // exactly this client's in the graph, their mask keys give shared secrets), then shares b_u and the
  // mask secret key among its neighbours and itself and seals each neighbour's shares for it.
  Result<ShareKeysMsg> ShareKeys(const KeyDirectoryMsg& directory);

  // Stage 3: opens the boxes its neighbours sealed for it (each must decrypt and name this round,
  // sender and recipient) and returns `input` (dim values) masked with the self mask and the pairwise
  // masks of those neighbours. FailedPrecondition when fewer than t - 1 neighbours shared keys.
  Result<MaskedInputMsg> MaskInput(const ForwardedSharesMsg& forwarded, std::span<const uint32_t> input);

  // Stage 4: for every neighbour that shared keys, the share of its self-mask seed when it survived
  // or of its mask secret key when it dropped, and this client's own seed share. Refused with
  // PermissionDenied (the safety rule) when the request names fewer than t survivors or would make
  // this client reveal both kinds of share of one peer over all its answers; InvalidArgument when the
  // request is malformed (lists overlap, a neighbour in neither list, this client not a survivor).
  Result<UnmaskResponseMsg> Unmask(const UnmaskRequestMsg& request);

 private:
  enum class Stage { kShareKeys, kMaskInput, kUnmask };
  struct HeldShares {
    std::array<uint8_t, kShamirShareBytes> seed{};
    std::array<uint8_t, kShamirShareBytes> mask_key{};
  };
  SecAggClient() = default;

  SecAggConfig config_;
  uint32_t id_ = 0;
  Stage stage_ = Stage::kShareKeys;
  SecAggKeyPair mask_keys_;
  SecAggKeyPair box_keys_;
  SecAggKey seed_{};
  std::set<uint32_t> participants_;
  std::map<uint32_t, AdvertiseKeysMsg> neighbour_keys_;  // from the directory
  std::map<uint32_t, SecAggKey> pair_seeds_;             // per neighbour
  std::array<uint8_t, kShamirShareBytes> own_seed_share_{};
  std::map<uint32_t, HeldShares> held_;           // neighbours whose boxes arrived
  std::map<uint32_t, SecAggShareKind> revealed_;  // what Unmask gave out, per owner
};

struct SecAggResult {
  std::vector<uint32_t> sum;            // the sum of the included clients' inputs modulo 2^32
  std::vector<uint32_t> included;       // survivors: clients whose input is in the sum, ascending
  std::vector<uint32_t> dropped;        // shared keys but sent no masked input (masks removed), ascending
  std::vector<Status> rejected_shares;  // bad shares found and left out, naming sender and owner
};

// The coordinator's side of a round. The daemon feeds each stage's messages (Receive*: one Status per
// message, which never fails the round: a rejected message is as if it never came) and closes the stage
// when Pending() is empty or at its deadline (Close*, Finish: one message per remaining client). A
// close that leaves too few clients to unmask fails the round (FailedPrecondition naming the clients);
// every later call returns that status.
class SecAggServer {
 public:
  enum class Stage { kAdvertiseKeys, kShareKeys, kMaskedInput, kUnmask, kDone, kFailed };

  // `clients`: the round's client ids (distinct, >= 1); InvalidArgument when the config is invalid for them.
  static Result<SecAggServer> Create(const SecAggConfig& config, std::vector<uint32_t> clients);

  Stage stage() const { return stage_; }
  // Clients expected in the current stage that have not sent their message yet, ascending.
  std::vector<uint32_t> Pending() const;

  // Stage 1: the keys of client `from` (the transport's authenticated sender).
  Status ReceiveAdvertiseKeys(uint32_t from, std::span<const uint8_t> bytes);
  Status ReceiveAdvertiseKeys(uint32_t from, const AdvertiseKeysMsg& msg);
  // Ends stage 1: the graph over the clients that advertised, and each one's directory.
  Result<std::map<uint32_t, KeyDirectoryMsg>> CloseAdvertiseKeys();

  // Stage 2: one sealed box of shares per neighbour of `from`, each of the sealed size.
  Status ReceiveShareKeys(uint32_t from, std::span<const uint8_t> bytes);
  Status ReceiveShareKeys(uint32_t from, const ShareKeysMsg& msg);
  // Ends stage 2: leaves out (repeatedly) clients with fewer than t - 1 neighbours that shared keys,
  // and returns, per remaining client, the boxes its neighbours sealed for it.
  Result<std::map<uint32_t, ForwardedSharesMsg>> CloseShareKeys();

  // Stage 3: the masked input of `from` (dim values), added to the running sum at once.
  Status ReceiveMaskedInput(uint32_t from, std::span<const uint8_t> bytes);
  Status ReceiveMaskedInput(uint32_t from, const MaskedInputMsg& msg);
  // Ends stage 3: the unmask request for every survivor. Fails the round when fewer than t survived,
  // or a survivor or dropped client has fewer than t share holders left among the survivors.
  Result<std::map<uint32_t, UnmaskRequestMsg>> CloseMaskedInput();

  // Stage 4: exactly the shares `from` holds: its own seed share, and for each neighbour that shared
  // keys the seed share (survivor) or the mask-key share (dropped); each a valid share.
  Status ReceiveUnmaskResponse(uint32_t from, std::span<const uint8_t> bytes);
  Status ReceiveUnmaskResponse(uint32_t from, const UnmaskResponseMsg& msg);
  // Ends the round: reconstructs each survivor's seed (checked against its commitment) and each dropped
  // client's mask key (checked against its public key), leaving out one bad share per secret when a
  // spare share allows, and removes their masks from the sum. Fails the round when a secret has fewer
  // than t shares or does not reconstruct.
  Result<SecAggResult> Finish();

 private:
  SecAggServer() = default;
  Status CheckStage(uint32_t from, Stage expected, const char* what) const;
  Status Fail(Status status);
  std::vector<uint32_t> Holders(uint32_t owner, const std::set<uint32_t>& among) const;

  SecAggConfig config_;
  Stage stage_ = Stage::kAdvertiseKeys;
  Status failure_;
  std::set<uint32_t> clients_;
  std::map<uint32_t, AdvertiseKeysMsg> keys_;  // U1
  SecAggGraph graph_;
  std::map<uint32_t, ShareKeysMsg> shared_;  // U2 (after CloseShareKeys: the clients left in)
  std::set<uint32_t> masked_;                // U3
  std::vector<uint32_t> sum_;
  std::set<uint32_t> dropped_;                       // U2 \ U3
  std::map<uint32_t, UnmaskResponseMsg> responses_;  // U4
};

}  // namespace tributary
