// SecAggRound: one open round's secure aggregation session on the coordinator (docs/secure-aggregation.md).
// It numbers the round's participants 1..n in ascending worker id, answers every SecAggRequest at once
// (feeding the SecAggServer of federation/secagg.h), closes a stage when every expected client sent its
// message or at the stage's deadline (the round's deadline for the key stage, then
// secure_aggregation.stage_timeout_s per stage), and ends with the unmasked sum of the survivors' inputs.
// It never sees an update: only joins (num_samples, loss), keys, sealed shares, masked vectors and shares.
// In memory only: a coordinator restart loses the session and the re-opened round starts a new one.
// No networking and no store: the job runner carries the messages and commits the outcome.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "federation/job_spec.h"
#include "federation/secagg.h"
#include "federation/secagg_job.h"
#include "transport/message.h"

namespace tributary {

class SecAggRound {
 public:
  enum class State { kOpen, kDone, kFailed };

  // What a client declared when it joined (the metadata of a plain upload, never the update).
  struct Join {
    uint64_t num_samples = 0;
    double loss = 0;
    double train_seconds = 0;
    int64_t joined_ms = 0;
  };

  // A finished session: the unmasked sum and who is in it.
  struct Outcome {
    std::vector<uint32_t> sum;          // config.dim values modulo 2^32
    std::vector<std::string> included;  // survivors, ascending worker id
    std::vector<std::string> dropped;   // shared keys but sent no masked input, ascending worker id
    std::vector<std::string> no_keys;   // selected but never advertised keys, ascending worker id
    uint64_t weight_unit = 0;           // W of the clients' weights (federation/secagg_job.h)
    uint64_t bytes_up = 0;              // SecAgg message bytes received from the clients
  };

  // A session over `participants` (ascending worker ids) for `round` of a job whose method vectors have
  // `method_dim` values. InvalidArgument naming secure_aggregation.threshold when it does not fit.
  static Result<std::unique_ptr<SecAggRound>> Create(const JobSpec& spec, int64_t method_dim, uint32_t round,
                                                     std::vector<std::string> participants, int64_t keys_deadline_ms);

  uint32_t round() const { return round_; }
  uint64_t session() const { return config_.session; }
  uint32_t num_clients() const { return static_cast<uint32_t>(workers_.size()); }
  State state() const { return state_; }
  const Status& failure() const { return failure_; }
  const Outcome& outcome() const { return outcome_; }
  const std::map<std::string, Join>& joins() const { return joins_; }

  // Answers one request of a participant (the caller authorized the sender and matched job and round).
  v1::SecAggReply Handle(const v1::SecAggRequest& request, int64_t now_ms);
  // Closes the open stage when its deadline passed.
  void Tick(int64_t now_ms);

 private:
  SecAggRound() = default;
  v1::SecAggReply HandleJoin(const v1::SecAggRequest& request, uint32_t client, int64_t now_ms);
  // Feeds a stage message to the server; a refused one drops the client.
  Status Receive(uint32_t stage, uint32_t client, const std::string& bytes);
  // Closes the server's current stage and keeps each client's output.
  void CloseStage(int64_t now_ms);
  Status CloseKeys();
  void Fail(const Status& status);
  uint32_t ServerStage() const;  // 1..4 while open, 5 when done

  SecureAggregationOptions options_;
  double quorum_ = 1.0;
  uint32_t round_ = 0;
  SecAggConfig config_;
  std::optional<SecAggServer> server_;
  std::vector<std::string> workers_;  // index i: client id i + 1
  std::map<std::string, uint32_t> ids_;
  std::map<std::string, Join> joins_;
  std::map<uint32_t, std::set<uint32_t>> delivered_;             // stage -> clients whose message was fed
  std::map<uint32_t, std::map<uint32_t, std::string>> outputs_;  // stage -> client -> the answer's bytes
  std::set<uint32_t> finished_;                                  // clients whose unmask response counted
  int64_t stage_deadline_ms_ = 0;
  State state_ = State::kOpen;
  Status failure_;
  Outcome outcome_;
};

}  // namespace tributary
