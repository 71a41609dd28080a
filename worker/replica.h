// A worker's replica of one job: the base model (spec `model.base`), for lora the adapters initialised
// from the job seed, the worker's training rows of the job's dataset, and the committed round the
// trainable state reflects. The daemon (worker/worker_daemon.h) keeps it in sync with the committed
// rounds and runs the round tasklets on it; nothing here talks to the network.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/hash.h"
#include "base/status.h"
#include "engine/arena.h"
#include "engine/model/llama_model.h"
#include "engine/text/dataset.h"
#include "federation/job_spec.h"
#include "federation/method.h"
#include "federation/tasklet.h"
#include "peft/lora.h"
#include "worker/calibration.h"

namespace tributary {

// Dense payloads (fedavg, lora) above the inline threshold travel as bulk objects (docs/protocol.md), so
// their size is bounded by memory only: the worker holds the payload, and the coordinator one buffer per
// pending pull. This sanity limit (fp32 state of 4 Gi parameters) refuses absurd tasklets early.
inline constexpr uint64_t kMaxDensePayloadBytes = uint64_t{16} << 30;

// What one round trains where it differs from the spec (0 = the spec's).
struct RoundShape {
  int64_t batch_size = 0;   // sequences per micro-batch (train.batch_size)
  int64_t local_steps = 0;  // optimizer steps (train.local_steps)
};

class JobReplica {
 public:
  // Loads spec.base_model (config.json + weights), builds the lora adapters from the job seed when the
  // mode is lora, and the training rows of `dataset_path`: every example, tokenized with the base
  // model's tokenizer, packed into rows of spec.seq_len. The replica then reflects round 0. Errors name
  // the job and the file or field.
  static Result<std::unique_ptr<JobReplica>> Create(const std::string& job_id, const JobSpec& spec,
                                                    const std::string& dataset_path);

  const std::string& job_id() const { return job_id_; }
  const JobSpec& spec() const { return spec_; }
  const MethodInfo& method_info() const { return MethodOf(spec_); }
  const FederatedMethod& method() const { return *method_; }
  // The trainable state at round() (what a round's tasklet starts from).
  const Arena& trainable_state() const { return state(); }
  // The committed round the trainable state reflects (0: the initial model).
  uint64_t round() const { return round_; }
  // WeightsHash of the trainable state (kept current by every change).
  uint64_t weights_hash() const { return hash_; }
  std::string weights_hash_hex() const { return HashHex(hash_); }
  const std::vector<SequenceRow>& rows() const { return rows_; }
  // Bytes of the trainable state as fp32 (padding included): a dense payload's and a snapshot's size.
  uint64_t state_bytes() const;

  // Applies the aggregate of committed `round` (which must be round() + 1) and, when `expected_hash` is
  // not empty, checks the result against it (Corruption on a mismatch). After any error the replica is
  // unusable: the caller drops it.
  Status ApplyRound(uint64_t round, std::span<const uint8_t> aggregate, const std::string& expected_hash);
  // Replaces the trainable state by a snapshot of committed `round` (raw fp32 bytes of the arena) and
  // checks its hash when `expected_hash` is not empty. After an error the replica is unusable.
  Status LoadSnapshot(uint64_t round, const std::string& bytes, const std::string& expected_hash);
  // Runs the tasklet of `round` (which must be round() + 1) for `worker_id`; the replica is unchanged.
  // `reducer` (cluster mode: the island all-reduce) runs between backward and every optimizer step.
  // `shape` replaces the spec's batch and H where set (cluster mode: the member's planned batch, auto H).
  Result<TaskletResult> RunRound(uint64_t round, const std::string& worker_id, GradientReducer* reducer = nullptr,
                                 const RoundShape& shape = {});
  // Cluster mode with cluster.codec auto: the codec of `round`'s upload (FederatedMethod::SetRoundCodec).
  Status SetRoundCodec(uint64_t round, const std::string& codec) {
    return method_->SetRoundCodec(static_cast<uint32_t>(round), codec);
  }
  // Times forward+backward passes of one micro-batch of the job's shape (spec batch_size x seq_len) on
  // this worker's rows (worker/calibration.h); the trainable state and its hash are unchanged.
  Result<ComputeRate> MeasureCompute(const CalibrationOptions& options);

 private:
  JobReplica() = default;
  Arena& state() { return adapters_ ? adapters_->params() : model_->params(); }
  const Arena& state() const { return adapters_ ? adapters_->params() : model_->params(); }
  Status CheckHash(uint64_t round, const std::string& expected_hash) const;

  std::string job_id_;
  JobSpec spec_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<LoraAdapters> adapters_;  // when the method trains adapters
  std::unique_ptr<FederatedMethod> method_;
  std::vector<SequenceRow> rows_;
  uint64_t round_ = 0;
  uint64_t hash_ = 0;
};

}  // namespace tributary
