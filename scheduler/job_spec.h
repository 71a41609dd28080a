// A federated fine-tuning job as a user submits it (`tributary submit job.yaml`): YAML with
// sections model / data / federation / train / ferret / lora / eval / checkpoint. ParseJobSpec
// refuses an invalid spec with one line naming the file, line and field ("job.yaml:7: key
// 'federation.rounds': 0 is outside [1, 100000]") or, for cross-field rules, the field and the
// reason ("job.yaml: field 'ferret.k': must be set when mode is ferret").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace tributary {

enum class FederatedMode { kFerret, kFedAvg, kLora };

struct JobSpec {
  std::string name;  // free text for humans
  // model
  std::string base_model;  // HF model directory, same path on every worker
  // data
  std::string dataset;  // dataset name each worker registered (--data NAME=PATH)
  int64_t seq_len = 256;
  // federation
  FederatedMode mode = FederatedMode::kFerret;
  int64_t rounds = 10;
  double client_fraction = 1.0;  // of eligible workers per round
  int64_t min_clients = 1;
  int64_t max_clients = 0;       // 0 = no cap
  double quorum = 1.0;           // fraction of selected clients needed at the deadline
  double deadline_floor_s = 60;  // round deadline clamp (median + k*MAD of tasklet durations)
  double deadline_ceiling_s = 3600;
  uint64_t seed = 0;                            // job seed: data order, client sampling, Ferret bases
  std::string aggregation_weights = "samples";  // samples | equal
  // train (each client's local round)
  int64_t local_steps = 10;
  int64_t batch_size = 4;
  int64_t grad_accum = 1;
  double lr = 1e-4;
  std::string optimizer = "sgd";  // sgd | adamw (fresh state every round)
  double weight_decay = 0.0;
  double momentum = 0.0;
  double max_grad_norm = 0.0;  // <= 0: off
  double server_lr = 1.0;      // slr applied to the aggregate (ferret, fedavg)
  // ferret (mode ferret only)
  int64_t ferret_k = 200;
  std::string ferret_distribution = "rademacher";  // rademacher | uniform | trunc_normal
  std::string ferret_scaling = "unbiased";         // unbiased | reference
  std::string ferret_blocking = "reference";       // reference | fixed_chunks
  std::string ferret_allocation = "norm_ratio";    // norm_ratio | sqrt_d_norm | uniform
  std::string ferret_seed_mode = "per_round";      // per_round | fixed_pool
  std::string ferret_wire_dtype = "fp32";          // fp32 | bf16
  // lora (mode lora only)
  int64_t lora_rank = 8;
  double lora_alpha = 16;
  double lora_dropout = 0.0;
  std::vector<std::string> lora_targets = {"q_proj", "v_proj"};
  // eval
  std::string eval_dataset;  // held-out dataset name on the coordinator ("" = none)
  int64_t eval_every = 1;    // rounds between held-out evaluations
  // checkpoint
  int64_t snapshot_every = 10;  // rounds between global-model snapshots

  std::string source_text;  // the YAML as submitted (stored with the job)
};

const char* FederatedModeName(FederatedMode mode);  // "ferret" | "fedavg" | "lora"

// Parses and validates YAML text; `source` names it in errors. Overrides are `key=value` strings
// (`tributary submit job.yaml --set federation.rounds=3`) applied before validation.
Result<JobSpec> ParseJobSpec(const std::string& yaml, const std::string& source,
                             const std::vector<std::string>& overrides = {});
Result<JobSpec> LoadJobSpec(const std::string& path, const std::vector<std::string>& overrides = {});

// A canonical one-line-per-key rendering of every field (defaults included) and its hash, so that
// "same submit token + same content" can be told apart from "same token, different content".
std::string CanonicalJobSpec(const JobSpec& spec);
uint64_t JobSpecHash(const JobSpec& spec);
// NVFlare's rule for submit tokens (idempotency keys): at most 128 of [A-Za-z0-9._:-] (empty = none).
// InvalidArgument naming `what` ("--submit-token", "submit token") and the token.
Status ValidateSubmitToken(const std::string& token, const std::string& what);

// The spec as nested YAML with every field (overrides applied): what a CLI sends and a coordinator
// stores, so the stored spec alone reproduces the job. ParseJobSpec of it gives the same JobSpecHash.
std::string EffectiveJobSpecYaml(const JobSpec& spec);

}  // namespace tributary
