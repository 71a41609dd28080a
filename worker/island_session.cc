#include "worker/island_session.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "base/hash.h"
#include "cluster/island.h"
#include "cluster/island_reducer.h"
#include "transport/message.h"

namespace tributary {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kStorePollMs = 20;  // a Get polls the coordinator this often until the key is set
constexpr int64_t kMaxJoinWaitMs = 10 * 60 * 1000;

int64_t UnixMillisNow() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The island's rendezvous keys, kept by the coordinator for the member's current incarnation only.
class CoordinatorRendezvousStore final : public RendezvousStore {
 public:
  CoordinatorRendezvousStore(transport::WorkClient* work, const std::string& worker_id, const v1::RoundStart& start)
      : work_(work), worker_id_(worker_id), start_(start) {}

  Status Set(const std::string& key, const std::vector<uint8_t>& value) override {
    return Exchange(key, true, std::string(value.begin(), value.end())).status();
  }

  Result<std::vector<uint8_t>> Get(const std::string& key, int timeout_ms) override {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (true) {
      TRIB_ASSIGN_OR_RETURN(v1::IslandStoreReply reply, Exchange(key, false, ""));
      if (reply.found()) return std::vector<uint8_t>(reply.value().begin(), reply.value().end());
      if (Clock::now() >= deadline)
        return Status::Timeout("island '" + start_.island().island_id() + "': rendezvous key '" + key +
                               "' not set within " + std::to_string(timeout_ms) + " ms");
      if (work_->Stopping()) return Status::Unavailable("the worker is stopping");
      std::this_thread::sleep_for(std::chrono::milliseconds(kStorePollMs));
    }
  }

 private:
  Result<v1::IslandStoreReply> Exchange(const std::string& key, bool set, const std::string& value) {
    transport::Envelope request = transport::NewEnvelope(worker_id_);
    v1::IslandStoreRequest* r = request.mutable_island_store_request();
    r->set_job_id(start_.job_id());
    r->set_round(start_.round());
    r->set_island_id(start_.island().island_id());
    r->set_incarnation(start_.island().incarnation());
    r->set_worker_id(worker_id_);
    r->set_set(set);
    r->set_key(key);
    r->set_value(value);
    TRIB_ASSIGN_OR_RETURN(transport::Message reply, work_->Request(request, "island rendezvous '" + key + "'"));
    if (!reply.envelope.has_island_store_reply())
      return Status::InvalidArgument("island rendezvous: unexpected reply '" +
                                     transport::BodyName(reply.envelope.body_case()) + "'");
    return reply.envelope.island_store_reply();
  }

  transport::WorkClient* work_;
  const std::string& worker_id_;
  const v1::RoundStart& start_;
};

}  // namespace

Result<TaskletResult> IslandSession::Run(JobReplica& replica, const v1::RoundStart& start) {
  const v1::IslandAssignment& a = start.island();
  const std::string context = "island '" + a.island_id() + "' incarnation " + std::to_string(a.incarnation()) +
                              " (rank " + std::to_string(a.rank()) + " of " + std::to_string(a.members_size()) + ")";
  if (a.members_size() < 1 || static_cast<int>(a.rank()) >= a.members_size() ||
      a.members(static_cast<int>(a.rank())) != options_.worker_id)
    return Status::InvalidArgument(context + ": the assignment does not list this worker at its rank");
  if (a.member_batch_sizes_size() > 0 && a.member_batch_sizes_size() != a.members_size())
    return Status::InvalidArgument(context + ": the assignment has " + std::to_string(a.member_batch_sizes_size()) +
                                   " member batch sizes for " + std::to_string(a.members_size()) + " members");
  for (uint32_t b : a.member_batch_sizes())
    if (b < 1 || b > 65536)
      return Status::InvalidArgument(context + ": member batch size " + std::to_string(b) + " (1 to 65536)");
  if (replica.spec().cluster.codec == "auto" && a.codec().empty())
    return Status::InvalidArgument(context + ": the job's cluster.codec is auto and the assignment names no codec");
  if (!a.codec().empty()) TRIB_RETURN_IF_ERROR(replica.SetRoundCodec(start.round(), a.codec()).WithContext(context));
  IslandOptions island;
  island.island_id = a.island_id();
  island.incarnation = a.incarnation();
  island.rank = static_cast<int>(a.rank());
  island.size = a.members_size();
  island.bind_address = options_.island_address;
  island.timeout_ms = a.timeout_ms() > 0 ? static_cast<int>(a.timeout_ms()) : 3000;
  if (a.bucket_elems() > 0) island.bucket_elems = static_cast<int64_t>(a.bucket_elems());
  // Late members (loading the model, catching up) are waited for until the round's deadline; a re-formed
  // island ends the wait at once (the coordinator refuses the stale incarnation's rendezvous).
  const int64_t until_deadline = start.deadline_unix_ms() - UnixMillisNow();
  island.join_timeout_ms = static_cast<int>(std::clamp<int64_t>(until_deadline, island.timeout_ms, kMaxJoinWaitMs));
  CoordinatorRendezvousStore store(work_, options_.worker_id, start);
  auto group = IslandGroup::Join(island, &store);
  if (!group.ok()) return group.status().WithContext(context + ": joining");
  spdlog::info("worker '{}': job {} round {}: joined {}", options_.worker_id, start.job_id(), start.round(), context);

  // Planned batches: this member trains its own, the island's gradient is weighted by target tokens, and
  // the island's weight in the outer mean is the sequences it trained (not its members' dataset rows).
  const bool planned = a.member_batch_sizes_size() > 0;
  RoundShape shape;
  shape.batch_size = planned ? a.member_batch_sizes(static_cast<int>(a.rank())) : 0;
  shape.local_steps = replica.spec().local_steps == 0 ? start.local_steps() : 0;  // train.local_steps auto
  IslandReducer reducer(group->get(), planned);
  TRIB_ASSIGN_OR_RETURN(TaskletResult result, replica.RunRound(start.round(), options_.worker_id, &reducer, shape));
  if (planned)
    result.num_samples = static_cast<uint64_t>(shape.batch_size * replica.spec().grad_accum * result.local_steps);
  // Every member stepped the same gradients from the same state: their pseudo-gradients must be equal.
  Status same = (*group)->CheckIdentical(Fnv1a64(result.payload.data(), result.payload.size()));
  if (!same.ok()) return same.WithContext(context + ": pseudo-gradients differ");
  TRIB_ASSIGN_OR_RETURN(result.num_samples, (*group)->AllReduceSumU64(result.num_samples));
  // Counted before this sum and the loss mean below (a few bytes each), so every member reports the same total.
  TRIB_ASSIGN_OR_RETURN(result.island_bytes, (*group)->AllReduceSumU64((*group)->bytes_sent()));
  float loss = static_cast<float>(result.train_loss);
  TRIB_RETURN_IF_ERROR((*group)->AllReduceMean({&loss, 1}));
  result.train_loss = loss;
  return result;
}

}  // namespace tributary
