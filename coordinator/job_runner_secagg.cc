// JobRunner under secure aggregation (docs/secure-aggregation.md): each round's SecAggRound session, its
// requests, its deadlines, and the commit of its unmasked sum as the round's aggregate.
#include <chrono>
#include <cmath>
#include <limits>

#include "coordinator/job_runner.h"
#include "federation/secagg_job.h"
#include "transport/bulk.h"

namespace tributary {
namespace {

// A masked input travels inline in one envelope (4 bytes per coordinate).
constexpr int64_t kMaxSecAggDim = static_cast<int64_t>(transport::kMaxInlinePayloadBytes / 4) - 1024;

std::string Names(const std::vector<std::string>& workers) {
  std::string out;
  for (const std::string& w : workers) out += (out.empty() ? "" : ", ") + w;
  return out.empty() ? "none" : out;
}

}  // namespace

Status JobRunner::OpenSecAggSession(const RoundStart& start) {
  secagg_.reset();
  const int64_t dim = driver_->method().SecAggDim();
  if (dim > kMaxSecAggDim)
    return Status::Unimplemented("secure aggregation of " + std::to_string(dim) +
                                 " values per client: masked inputs above " +
                                 std::to_string(transport::kMaxInlinePayloadBytes >> 20) +
                                 " MiB would need bulk transfer, which is not built (use mode ferret)");
  TRIB_ASSIGN_OR_RETURN(secagg_, SecAggRound::Create(spec_, dim, start.round, start.participants, start.deadline_ms));
  Log("round " + std::to_string(start.round) + ": secure aggregation session " + std::to_string(secagg_->session()) +
      " over " + std::to_string(secagg_->num_clients()) + " client(s), " + std::to_string(dim + 1) + " values each");
  return Status::OK();
}

std::vector<std::string> JobRunner::SecAggJoined() const {
  std::vector<std::string> out;
  if (secagg_) {
    for (const auto& [worker, join] : secagg_->joins()) out.push_back(worker);
  }
  return out;
}

v1::SecAggReply JobRunner::OnSecAgg(const v1::SecAggRequest& request, int64_t now_ms) {
  v1::SecAggReply reply;
  reply.set_job_id(request.job_id());
  reply.set_round(request.round());
  reply.set_stage(request.stage());
  if (request.round() <= record_.current_round) {
    reply.set_stage(kSecAggStageCommitted);  // nothing more to do (not an error: a late poll)
    reply.set_reason("round " + std::to_string(request.round()) + " is already committed");
    return reply;
  }
  if (!driver_ || !spec_.secure_aggregation.enabled) {
    reply.set_dropped(true);
    reply.set_reason(!driver_ ? std::string("job is ") + checkpoint::JobStateName(record_.state)
                              : "job '" + job_id_ + "' does not use secure aggregation");
    return reply;
  }
  if (driver_->closing() && driver_->current().round == request.round()) {
    reply.set_pending(true);  // the session is done and its sum commits on the task queue: ask again
    reply.set_reason("round " + std::to_string(request.round()) + " is being committed");
    return reply;
  }
  const bool open = driver_->round_open() && secagg_ && secagg_->round() == request.round();
  if (!open) {
    // The round is not open (yet, or again after a failed session): a join waits, a stage starts over.
    (request.stage() == 0 ? reply.set_pending(true) : reply.set_restart(true));
    reply.set_reason("round " + std::to_string(request.round()) + " is not open");
    return reply;
  }
  return secagg_->Handle(request, now_ms);
}

void JobRunner::TickSecAgg(int64_t now_ms) {
  if (!driver_ || !driver_->round_open() || !secagg_) return;
  secagg_->Tick(now_ms);
  if (secagg_->state() == SecAggRound::State::kDone) return CommitSecAgg(now_ms);
  if (secagg_->state() != SecAggRound::State::kFailed) return;
  Log("round " + std::to_string(secagg_->round()) + ": " + secagg_->failure().message() + "; re-planning the round",
      /*warn=*/true);
  secagg_.reset();
  driver_->AbandonRound();
  next_plan_ms_ = now_ms;
}

void JobRunner::CommitSecAgg(int64_t now_ms) {
  const SecAggRound::Outcome& outcome = secagg_->outcome();
  const uint32_t round = secagg_->round();
  const size_t selected = driver_->current().participants.size();
  ExternalAggregate external;
  double total_weight = 0;
  std::vector<double> weights;
  for (const std::string& w : outcome.included) {
    const SecAggRound::Join& join = secagg_->joins().at(w);
    weights.push_back(SecAggClientWeight(spec_.aggregation_weights, join.num_samples, outcome.weight_unit));
    total_weight += weights.back();
    external.metadata.push_back({job_id_, round, w, join.num_samples, join.loss, "", join.joined_ms});
    slowest_train_seconds_ = std::max(slowest_train_seconds_, join.train_seconds);
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double clip_scale = spec_.aggregation.clip_norm > 0 ? nan : 1.0;  // clients clip themselves
  for (size_t i = 0; i < outcome.included.size(); ++i)
    external.participants.push_back({outcome.included[i], weights[i] / total_weight, nan, clip_scale, false});
  for (const std::string& w : outcome.dropped) external.participants.push_back({w, 0.0, nan, clip_scale, true});
  external.bytes_up = outcome.bytes_up;
  auto aggregate = SecAggAggregateFromSum(
      driver_->method(), outcome.sum, static_cast<uint32_t>(outcome.included.size()), secagg_->num_clients(),
      spec_.secure_aggregation.clip, total_weight, driver_->global(), round,
      spec_.privacy.mechanism == DpMechanism::kCentral ? NoiseStddev(spec_.privacy, spec_.aggregation.clip_norm) : 0.0);
  if (!aggregate.ok()) {
    Log("round " + std::to_string(round) + ": " + aggregate.status().message() + "; re-planning the round", true);
    secagg_.reset();
    driver_->AbandonRound();
    next_plan_ms_ = now_ms;
    return;
  }
  external.aggregate = std::move(*aggregate);
  Log("round " + std::to_string(round) + ": secure aggregation done: the sum of " +
      std::to_string(outcome.included.size()) + " client(s) [" + Names(outcome.included) +
      "], dropped after sharing keys [" + Names(outcome.dropped) + "], no keys [" + Names(outcome.no_keys) + "]");
  secagg_.reset();
  auto close = driver_->BeginExternalClose(std::move(external));
  if (!close.ok()) return Fail(close.status());
  PostClose(std::move(*close), selected);
}

}  // namespace tributary
