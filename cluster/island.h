// An island: the workers on one fast fabric training one model replica in synchronous data parallel
// (cluster mode, docs/architecture.md). After every backward the island all-reduces its gradients with
// gloo over TCP, so every member clips and steps bit-identical gradients.
//
// gloo stays inside cluster/: the rendezvous goes through our own RendezvousStore (the coordinator
// provides one in production, over tributary's authenticated transport; tests use LocalRendezvousStore),
// and gloo's exceptions are caught at this edge and become a Status naming the island, its incarnation
// and the rank.
//
// Membership is fixed per incarnation: a member that dies, times out or leaves breaks the group for
// everyone; the caller re-forms the island under a new incarnation (fresh keys, so a stale member of
// an earlier incarnation can never join or exchange data with the new one).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"

namespace tributary {

// The key-value store an island's members rendezvous through (each member publishes its TCP
// addresses and reads its peers'). Keys are scoped by the caller (IslandGroup::Join prefixes them with
// "island/<id>/<incarnation>/"). Implementations must be thread-safe.
class RendezvousStore {
 public:
  virtual ~RendezvousStore() = default;
  // Sets (or overwrites) `key`.
  virtual Status Set(const std::string& key, const std::vector<uint8_t>& value) = 0;
  // The value of `key`, waiting up to timeout_ms for another member to set it; a Timeout (or
  // Unavailable, when the store itself cannot be reached) naming the key otherwise.
  virtual Result<std::vector<uint8_t>> Get(const std::string& key, int timeout_ms) = 0;
};

// An in-process store (a map under a mutex, waiters on a condition variable) for tests and for
// islands whose members are threads of one process.
class LocalRendezvousStore final : public RendezvousStore {
 public:
  Status Set(const std::string& key, const std::vector<uint8_t>& value) override;
  Result<std::vector<uint8_t>> Get(const std::string& key, int timeout_ms) override;

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::map<std::string, std::vector<uint8_t>> values_;
};

struct IslandOptions {
  std::string island_id;     // non-empty; names the island in keys and errors
  uint64_t incarnation = 0;  // a new one each time the membership changes; keys are scoped by it
  int rank = 0;              // this member's rank in [0, size); 0 is the leader
  int size = 1;              // members in this incarnation
  std::string bind_address;  // IP or hostname of the island's fabric interface; gloo listens only there
  int timeout_ms = 3000;     // rendezvous, connect and per-collective timeout (the eviction budget)
  // Rendezvous and connect only, when > 0: members that start late (still loading or catching up) are
  // waited for this long, while a collective still fails after timeout_ms.
  int join_timeout_ms = 0;
  int64_t bucket_elems = int64_t{1} << 20;  // collectives move at most this many elements at a time
};

// One member's handle on its island's gloo group (a full TCP mesh).
//
// Collectives are SPMD: every member calls the same collectives in the same order with spans of the
// same length (a mismatch is not detected; it ends in a timeout). Not thread-safe: one collective at a
// time per group. A collective that fails (a peer died or closed its group, a timeout) returns a
// non-OK Status and breaks the group: every later call returns FailedPrecondition without touching the
// network, and the caller re-forms the island under a new incarnation.
//
// SIGPIPE: gloo writes to sockets without MSG_NOSIGNAL, so a write to a peer that closed would kill the
// process. Join and every collective block SIGPIPE in the calling thread (gloo's event-loop thread,
// created inside Join, inherits the block) and consume one raised meanwhile; nothing process-wide
// changes.
class IslandGroup {
 public:
  ~IslandGroup();
  IslandGroup(const IslandGroup&) = delete;
  IslandGroup& operator=(const IslandGroup&) = delete;

  // Rendezvous through `store` (not owned; needed only during Join) under the prefix
  // "island/<id>/<incarnation>" and connect the full mesh over gloo's TCP transport bound to
  // options.bind_address. Errors name the island, incarnation and rank: a member that never publishes
  // its key gives Timeout naming the key (gloo waits up to timeout_ms for each peer's key in turn); a
  // published but unreachable one (e.g. a stale address) gives Unavailable after gloo's connect timeout,
  // 5 x timeout_ms. InvalidArgument for bad options.
  static Result<std::unique_ptr<IslandGroup>> Join(const IslandOptions& options, RendezvousStore* store);

  // In-place sum over all members, bucket by bucket, with gloo's ring all-reduce (reduce-scatter then
  // allgather). Deterministic: each element's sum is computed once, by the member owning its segment,
  // and the allgather copies those bytes to everyone, so every member ends with bit-identical values
  // (the tests check it) and no follow-up broadcast is needed. The summation order of an element
  // depends on its position and the island size, not on timing.
  Status AllReduceSum(std::span<float> values);
  // AllReduceSum, then each element divided by size() (identically on every member).
  Status AllReduceMean(std::span<float> values);
  // Replaces `values` on every member by root's (e.g. a rejoining member copies state from a peer).
  // InvalidArgument when root is not a rank of the island (nothing is sent; the group stays usable).
  Status Broadcast(std::span<float> values, int root);
  // Every member contributes a 64-bit hash (e.g. of its weights); OK when all are equal, otherwise
  // FailedPrecondition naming the ranks whose hash differs from rank 0's (the same on every member; the
  // group stays usable).
  Status CheckIdentical(uint64_t hash);
  // The sum of `value` over all members (wrapping modulo 2^64), e.g. the island's token count.
  Result<uint64_t> AllReduceSumU64(uint64_t value);

  const IslandOptions& options() const;
  int rank() const { return options().rank; }
  int size() const { return options().size; }
  // False once a collective failed.
  bool usable() const;
  // Payload bytes this member sent in collectives so far. gloo exposes no counters, so this is a
  // formula, not a measurement: a ring all-reduce of S bytes counts 2·(P-1)·S/P (reduce-scatter plus
  // allgather), a broadcast of S bytes counts (P-1)·S/P (the per-member average of the (P-1)·S any
  // broadcast sends), CheckIdentical's allgather counts (P-1)·8. Headers and TCP overhead are not
  // included; a lone member (P = 1) sends nothing.
  uint64_t bytes_sent() const;

 private:
  struct Impl;
  explicit IslandGroup(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tributary
