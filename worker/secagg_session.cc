#include "worker/secagg_session.h"

#include <spdlog/spdlog.h>

#include <optional>
#include <random>

#include "federation/secagg.h"
#include "federation/secagg_job.h"

namespace tributary {
namespace {

using transport::Envelope;

constexpr int kPollMs = 100;  // between sends of a request answered "pending"
constexpr int kRestartPauseMs = 500;

std::vector<uint8_t> Bytes(const std::string& s) {
  return std::vector<uint8_t>(s.begin(), s.end());
}

// The join answer as the client's round parameters.
Result<SecAggRoundParams> ParamsOf(const v1::SecAggReply& joined) {
  SecAggRoundParams params;
  params.config.session = joined.session();
  params.config.dim = joined.dim();
  params.config.threshold = joined.threshold();
  params.config.neighbours = joined.neighbours();
  params.client_id = joined.client_id();
  params.num_clients = joined.num_clients();
  params.clip = joined.clip();
  TRIB_ASSIGN_OR_RETURN(params.rounding, ParseQuantizeRounding(joined.rounding()));
  return params;
}

}  // namespace

SecAggSession::SecAggSession(const WorkerOptions& options, transport::WorkClient* work, WorkQueue* queue)
    : options_(options), name_("worker '" + options.worker_id + "'"), work_(work), queue_(queue) {}

bool SecAggSession::HasResult(const std::string& job_id, uint64_t round) const {
  auto it = kept_.find(job_id);
  return it != kept_.end() && it->second.round == round;
}

void SecAggSession::Keep(const std::string& job_id, uint64_t round, TaskletResult result, double train_seconds) {
  Kept kept;
  kept.round = round;
  kept.result = std::move(result);
  kept.train_seconds = train_seconds;
  kept.rounding_seed = std::random_device{}() | (uint64_t{std::random_device{}()} << 32);
  kept_[job_id] = std::move(kept);
}

void SecAggSession::ForgetCommitted(const std::string& job_id, uint64_t round) {
  auto it = kept_.find(job_id);
  if (it != kept_.end() && it->second.round <= round) kept_.erase(it);
}

v1::SecAggRequest SecAggSession::Request(const std::string& job_id, uint64_t round, uint32_t stage, uint64_t session,
                                         std::vector<uint8_t> message) const {
  v1::SecAggRequest request;
  request.set_job_id(job_id);
  request.set_round(round);
  request.set_worker_id(options_.worker_id);
  request.set_stage(stage);
  request.set_session(session);
  request.set_message(std::string(message.begin(), message.end()));
  return request;
}

Result<std::optional<v1::SecAggReply>> SecAggSession::Exchange(v1::SecAggRequest request, uint64_t round) {
  const std::string job = request.job_id();
  const std::string what = JobRound(job, round) + ": SecAggRequest stage " + std::to_string(request.stage());
  auto committed = [this, &job, round] { return queue_->CommittedSeen(job) >= round; };
  while (!work_->Stopping()) {
    if (committed()) return std::optional<v1::SecAggReply>();
    Envelope envelope = transport::NewEnvelope(options_.worker_id);
    *envelope.mutable_secagg_request() = request;
    auto reply = work_->Request(envelope, what, committed);
    if (!reply.ok()) {
      if (committed()) return std::optional<v1::SecAggReply>();
      return reply.status();
    }
    if (reply->envelope.body_case() != Envelope::kSecaggReply)
      return Status::InvalidArgument(what + ": answered with '" + transport::BodyName(reply->envelope.body_case()) +
                                     "'");
    const v1::SecAggReply& answer = reply->envelope.secagg_reply();
    if (answer.stage() == kSecAggStageCommitted) return std::optional<v1::SecAggReply>();
    if (!answer.pending()) return std::optional<v1::SecAggReply>(answer);
    if (request.stage() != 0) request.clear_message();  // delivered: the coordinator holds it
    work_->PauseUnlessStopping(kPollMs);
  }
  return Status::Unavailable(what + ": the worker is stopping");
}

Status SecAggSession::Run(const JobReplica& replica, uint64_t round) {
  const std::string& job = replica.job_id();
  auto found = kept_.find(job);
  if (found == kept_.end() || found->second.round != round)
    return Status::Internal(JobRound(job, round) + ": no tasklet result for secure aggregation");
  Kept& kept = found->second;
  const std::string where = name_ + ": " + JobRound(job, round);
  while (!work_->Stopping()) {
    v1::SecAggRequest join = Request(job, round, 0, 0, {});
    join.set_num_samples(kept.result.num_samples);
    join.set_loss(kept.result.train_loss);
    join.set_train_seconds(kept.train_seconds);
    TRIB_ASSIGN_OR_RETURN(std::optional<v1::SecAggReply> joined, Exchange(join, round));
    if (!joined) return Status::OK();  // committed meanwhile
    if (joined->dropped()) {
      spdlog::warn("{}: left out of secure aggregation: {}", where, joined->reason());
      return Status::OK();
    }
    if (joined->restart()) {
      work_->PauseUnlessStopping(kRestartPauseMs);
      continue;
    }
    if (kept.masked_session != 0)
      return Status::FailedPrecondition("declining secure aggregation session " + std::to_string(joined->session()) +
                                        ": this worker sent its masked input in session " +
                                        std::to_string(kept.masked_session) +
                                        " of the round already (masking one update in two sessions could reveal it)");
    TRIB_ASSIGN_OR_RETURN(Ended ended, RunSession(replica, kept, *joined));
    if (ended == Ended::kFinished) return Status::OK();
    work_->PauseUnlessStopping(kRestartPauseMs);
  }
  return Status::Unavailable(JobRound(job, round) + ": secure aggregation: the worker is stopping");
}

Result<SecAggSession::Ended> SecAggSession::RunSession(const JobReplica& replica, Kept& kept,
                                                       const v1::SecAggReply& joined) {
  const std::string& job = replica.job_id();
  const uint64_t round = kept.round;
  const std::string where = name_ + ": " + JobRound(job, round);
  TRIB_ASSIGN_OR_RETURN(SecAggRoundParams params, ParamsOf(joined));
  TRIB_ASSIGN_OR_RETURN(SecAggClient client, SecAggClient::Create(params.config, params.client_id));
  const uint64_t session = params.config.session;
  // Every stage: send, then an answer that ends the session (committed, dropped, restart) or feeds the next.
  std::optional<v1::SecAggReply> answer;
  auto exchange = [&](uint32_t stage, std::vector<uint8_t> bytes) -> Result<bool> {
    TRIB_ASSIGN_OR_RETURN(answer, Exchange(Request(job, round, stage, session, std::move(bytes)), round));
    if (!answer) return false;
    if (answer->dropped()) spdlog::warn("{}: left out of secure aggregation: {}", where, answer->reason());
    if (answer->restart())
      spdlog::info("{}: secure aggregation session {} is over: {}", where, session, answer->reason());
    return !answer->dropped() && !answer->restart();
  };
  auto ended = [&]() { return answer && answer->restart() ? Ended::kRestart : Ended::kFinished; };

  TRIB_ASSIGN_OR_RETURN(bool go, exchange(1, client.AdvertiseKeys().Serialize()));
  if (!go) return ended();
  const uint64_t weight_unit = answer->weight_unit();
  TRIB_ASSIGN_OR_RETURN(KeyDirectoryMsg directory, KeyDirectoryMsg::Parse(Bytes(answer->message())));
  TRIB_ASSIGN_OR_RETURN(ShareKeysMsg shares, client.ShareKeys(directory));
  TRIB_ASSIGN_OR_RETURN(go, exchange(2, shares.Serialize()));
  if (!go) return ended();
  TRIB_ASSIGN_OR_RETURN(ForwardedSharesMsg forwarded, ForwardedSharesMsg::Parse(Bytes(answer->message())));
  const JobSpec& spec = replica.spec();
  const double weight = SecAggClientWeight(spec.aggregation_weights, kept.result.num_samples, weight_unit);
  TRIB_ASSIGN_OR_RETURN(
      SecAggClientInput input,
      MakeSecAggInput(replica.method(), kept.result.payload, replica.trainable_state(), static_cast<uint32_t>(round),
                      spec.aggregation.clip_norm, weight, params, kept.rounding_seed));
  if (input.clipped_coordinates > 0)
    spdlog::warn("{}: {} coordinate(s) of the update exceed secure_aggregation.clip {} and are clamped", where,
                 input.clipped_coordinates, params.clip);
  TRIB_ASSIGN_OR_RETURN(MaskedInputMsg masked, client.MaskInput(forwarded, input.quantized));
  kept.masked_session = session;  // from here on this update is never masked again
  TRIB_ASSIGN_OR_RETURN(go, exchange(3, masked.Serialize()));
  if (!go) return ended();
  TRIB_ASSIGN_OR_RETURN(UnmaskRequestMsg request, UnmaskRequestMsg::Parse(Bytes(answer->message())));
  TRIB_ASSIGN_OR_RETURN(UnmaskResponseMsg response, client.Unmask(request));
  TRIB_ASSIGN_OR_RETURN(go, exchange(4, response.Serialize()));
  if (go)
    spdlog::info("{}: secure aggregation session {} finished (client {} of {})", where, session, params.client_id,
                 params.num_clients);
  return ended();
}

}  // namespace tributary
