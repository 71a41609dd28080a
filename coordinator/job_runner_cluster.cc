// The island rendezvous store of cluster mode (docs/cluster.md): gloo's members exchange their addresses
// through the coordinator over their authenticated connections, scoped to one island incarnation.
#include <algorithm>

#include "coordinator/job_runner.h"

namespace tributary {
namespace {

// Bounds of what one incarnation may store: gloo's TCP rendezvous writes one address blob per rank.
constexpr size_t kMaxIslandKeyBytes = 256;
constexpr size_t kMaxIslandValueBytes = 64 << 10;
constexpr size_t kMaxIslandKeysPerMember = 16;

}  // namespace

Result<v1::IslandStoreReply> JobRunner::OnIslandStore(const v1::IslandStoreRequest& request) {
  const std::string context = "job '" + job_id_ + "': round " + std::to_string(request.round()) + ": island '" +
                              request.island_id() + "' incarnation " + std::to_string(request.incarnation()) +
                              ": worker '" + request.worker_id() + "'";
  if (!driver_ || !driver_->round_open() || driver_->current().round != request.round())
    return Status::FailedPrecondition(context + ": the round is not open");
  const RoundIsland* island = IslandOf(request.worker_id());
  if (island == nullptr || island->name != request.island_id())
    return Status::PermissionDenied(context + ": not a member of this island");
  if (island->incarnation != request.incarnation())
    return Status::FailedPrecondition(context + ": stale incarnation (current: " + std::to_string(island->incarnation) +
                                      ")");
  if (request.key().empty() || request.key().size() > kMaxIslandKeyBytes)
    return Status::InvalidArgument(context + ": key of " + std::to_string(request.key().size()) + " bytes (1 to " +
                                   std::to_string(kMaxIslandKeyBytes) + ")");
  std::map<std::string, std::string>& store = island_stores_[island->name + "/" + std::to_string(island->incarnation)];
  v1::IslandStoreReply reply;
  if (!request.set()) {
    auto it = store.find(request.key());
    reply.set_found(it != store.end());
    if (it != store.end()) reply.set_value(it->second);
    return reply;
  }
  if (request.value().size() > kMaxIslandValueBytes)
    return Status::InvalidArgument(context + ": value of " + std::to_string(request.value().size()) +
                                   " bytes (at most " + std::to_string(kMaxIslandValueBytes) + ")");
  if (store.count(request.key()) == 0 && store.size() >= kMaxIslandKeysPerMember * island->members.size())
    return Status::InvalidArgument(context + ": the island's rendezvous holds " + std::to_string(store.size()) +
                                   " keys already");
  store[request.key()] = request.value();
  reply.set_found(true);
  return reply;
}

}  // namespace tributary
