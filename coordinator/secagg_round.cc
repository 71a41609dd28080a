#include "coordinator/secagg_round.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

namespace tributary {
namespace {

constexpr uint32_t kJoin = 0;
constexpr uint32_t kKeys = 1;
constexpr uint32_t kShares = 2;
constexpr uint32_t kMasked = 3;
constexpr uint32_t kUnmask = 4;
constexpr uint32_t kDoneStage = 5;

const char* StageName(uint32_t stage) {
  switch (stage) {
    case kJoin: return "join";
    case kKeys: return "advertise keys";
    case kShares: return "share keys";
    case kMasked: return "masked input";
    case kUnmask: return "unmasking";
  }
  return "done";
}

std::span<const uint8_t> AsBytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string ToString(const std::vector<uint8_t>& bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

}  // namespace

Result<std::unique_ptr<SecAggRound>> SecAggRound::Create(const JobSpec& spec, int64_t method_dim, uint32_t round,
                                                         std::vector<std::string> participants,
                                                         int64_t keys_deadline_ms) {
  std::unique_ptr<SecAggRound> out(new SecAggRound());
  out->options_ = spec.secure_aggregation;
  out->quorum_ = spec.quorum;
  out->round_ = round;
  out->workers_ = std::move(participants);
  std::sort(out->workers_.begin(), out->workers_.end());
  std::vector<uint32_t> ids;
  for (size_t i = 0; i < out->workers_.size(); ++i) {
    ids.push_back(static_cast<uint32_t>(i + 1));
    out->ids_[out->workers_[i]] = static_cast<uint32_t>(i + 1);
  }
  TRIB_ASSIGN_OR_RETURN(out->config_,
                        SecAggRoundConfig(spec.secure_aggregation, method_dim, ids.size(), NewSecAggSession()));
  TRIB_ASSIGN_OR_RETURN(SecAggServer server, SecAggServer::Create(out->config_, ids));
  out->server_.emplace(std::move(server));
  out->stage_deadline_ms_ = keys_deadline_ms;
  return out;
}

uint32_t SecAggRound::ServerStage() const {
  switch (server_->stage()) {
    case SecAggServer::Stage::kAdvertiseKeys: return kKeys;
    case SecAggServer::Stage::kShareKeys: return kShares;
    case SecAggServer::Stage::kMaskedInput: return kMasked;
    case SecAggServer::Stage::kUnmask: return kUnmask;
    case SecAggServer::Stage::kDone:
    case SecAggServer::Stage::kFailed: return kDoneStage;
  }
  return kDoneStage;
}

void SecAggRound::Fail(const Status& status) {
  state_ = State::kFailed;
  failure_ = status.WithContext("secure aggregation (session " + std::to_string(config_.session) + ")");
}

v1::SecAggReply SecAggRound::Handle(const v1::SecAggRequest& request, int64_t now_ms) {
  v1::SecAggReply reply;
  reply.set_job_id(request.job_id());
  reply.set_round(request.round());
  reply.set_stage(request.stage());
  auto id = ids_.find(request.worker_id());
  if (id == ids_.end()) {
    reply.set_dropped(true);
    reply.set_reason("worker '" + request.worker_id() + "' is not a participant of round " + std::to_string(round_));
    return reply;
  }
  const uint32_t client = id->second;
  if (state_ == State::kFailed) {
    reply.set_restart(true);
    reply.set_reason(failure_.message());
    return reply;
  }
  if (request.stage() == kJoin) return HandleJoin(request, client, now_ms);
  if (request.session() != config_.session) {
    reply.set_restart(true);
    reply.set_reason("session " + std::to_string(request.session()) + " is not round " + std::to_string(round_) +
                     "'s session (the coordinator restarted or re-opened the round): join again");
    return reply;
  }
  const uint32_t stage = request.stage();
  if (stage > kUnmask) {
    reply.set_dropped(true);
    reply.set_reason("unknown secure aggregation stage " + std::to_string(stage));
    return reply;
  }
  if (state_ == State::kOpen && stage == ServerStage() && delivered_[stage].count(client) == 0) {
    if (request.message().empty()) {
      reply.set_restart(true);
      reply.set_reason(std::string("no ") + StageName(stage) + " message of this client is held: join again");
      return reply;
    }
    Status received = Receive(stage, client, request.message());
    if (!received.ok()) {
      spdlog::warn("round {}: secure aggregation: worker '{}' dropped: {}", round_, request.worker_id(),
                   received.message());
      reply.set_dropped(true);
      reply.set_reason(received.message());
      return reply;
    }
    outcome_.bytes_up += request.message().size();
    if (server_->Pending().empty()) CloseStage(now_ms);
    if (state_ == State::kFailed) {
      reply.set_restart(true);
      reply.set_reason(failure_.message());
      return reply;
    }
  }
  if (state_ == State::kOpen && stage >= ServerStage()) {
    reply.set_pending(true);
    return reply;
  }
  const auto& outputs = outputs_[stage];
  auto output = outputs.find(client);
  if (output == outputs.end()) {
    reply.set_dropped(true);
    reply.set_reason(std::string("left out when the '") + StageName(stage) + "' stage closed");
    return reply;
  }
  reply.set_message(output->second);
  if (stage == kKeys) reply.set_weight_unit(outcome_.weight_unit);
  return reply;
}

v1::SecAggReply SecAggRound::HandleJoin(const v1::SecAggRequest& request, uint32_t client, int64_t now_ms) {
  v1::SecAggReply reply;
  reply.set_job_id(request.job_id());
  reply.set_round(request.round());
  reply.set_stage(kJoin);
  if (ServerStage() > kKeys && delivered_[kKeys].count(client) == 0) {
    reply.set_dropped(true);
    reply.set_reason("joined after the key stage of round " + std::to_string(round_) + " closed");
    return reply;
  }
  if (joins_.count(request.worker_id()) == 0) {
    joins_[request.worker_id()] = Join{request.num_samples(), request.loss(), request.train_seconds(), now_ms};
  }
  reply.set_session(config_.session);
  reply.set_client_id(client);
  reply.set_num_clients(num_clients());
  reply.set_threshold(config_.threshold);
  reply.set_neighbours(config_.neighbours);
  reply.set_dim(config_.dim);
  reply.set_clip(options_.clip);
  reply.set_rounding(QuantizeRoundingName(options_.rounding));
  return reply;
}

Status SecAggRound::Receive(uint32_t stage, uint32_t client, const std::string& bytes) {
  Status status;
  switch (stage) {
    case kKeys: {
      if (joins_.count(workers_[client - 1]) == 0) return Status::InvalidArgument("advertised keys before joining");
      status = server_->ReceiveAdvertiseKeys(client, AsBytes(bytes));
      break;
    }
    case kShares: status = server_->ReceiveShareKeys(client, AsBytes(bytes)); break;
    case kMasked: status = server_->ReceiveMaskedInput(client, AsBytes(bytes)); break;
    case kUnmask: status = server_->ReceiveUnmaskResponse(client, AsBytes(bytes)); break;
    default: return Status::InvalidArgument("unknown stage");
  }
  if (status.ok()) delivered_[stage].insert(client);
  return status;
}

void SecAggRound::Tick(int64_t now_ms) {
  if (state_ == State::kOpen && now_ms >= stage_deadline_ms_) CloseStage(now_ms);
}

Status SecAggRound::CloseKeys() {
  const size_t advertised = delivered_[kKeys].size();
  const size_t needed = std::max<size_t>(2, static_cast<size_t>(std::ceil(quorum_ * workers_.size() - 1e-9)));
  if (advertised < needed)
    return Status::FailedPrecondition("the key stage closed with " + std::to_string(advertised) + " of " +
                                      std::to_string(workers_.size()) + " clients, below the quorum of " +
                                      std::to_string(needed));
  for (uint32_t c : delivered_[kKeys])
    outcome_.weight_unit = std::max(outcome_.weight_unit, joins_.at(workers_[c - 1]).num_samples);
  TRIB_ASSIGN_OR_RETURN(auto directories, server_->CloseAdvertiseKeys());
  for (const auto& [c, directory] : directories) outputs_[kKeys][c] = ToString(directory.Serialize());
  return Status::OK();
}

void SecAggRound::CloseStage(int64_t now_ms) {
  const uint32_t stage = ServerStage();
  Status closed;
  switch (stage) {
    case kKeys: closed = CloseKeys(); break;
    case kShares: {
      auto forwarded = server_->CloseShareKeys();
      closed = forwarded.status();
      if (forwarded.ok())
        for (const auto& [c, msg] : *forwarded) outputs_[kShares][c] = ToString(msg.Serialize());
      break;
    }
    case kMasked: {
      auto requests = server_->CloseMaskedInput();
      closed = requests.status();
      if (requests.ok())
        for (const auto& [c, msg] : *requests) outputs_[kMasked][c] = ToString(msg.Serialize());
      break;
    }
    case kUnmask: {
      auto result = server_->Finish();
      closed = result.status();
      if (!result.ok()) break;
      for (uint32_t c : delivered_[kUnmask]) outputs_[kUnmask][c] = "";
      outcome_.sum = std::move(result->sum);
      for (uint32_t c : result->included) outcome_.included.push_back(workers_[c - 1]);
      for (uint32_t c : result->dropped) outcome_.dropped.push_back(workers_[c - 1]);
      for (size_t i = 0; i < workers_.size(); ++i)
        if (delivered_[kKeys].count(static_cast<uint32_t>(i + 1)) == 0) outcome_.no_keys.push_back(workers_[i]);
      for (const Status& bad : result->rejected_shares)
        spdlog::warn("round {}: secure aggregation: {}", round_, bad.message());
      state_ = State::kDone;
      return;
    }
    default: return;
  }
  if (!closed.ok()) return Fail(closed);
  stage_deadline_ms_ = now_ms + static_cast<int64_t>(std::llround(options_.stage_timeout_s * 1000.0));
}

}  // namespace tributary
