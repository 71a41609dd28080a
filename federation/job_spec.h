// A federated fine-tuning job as a user submits it (`tributary submit job.yaml`): YAML with
// sections model / data / federation / train / ferret / lora / fedkseed / eval / checkpoint. ParseJobSpec
// refuses an invalid spec with one line naming the file, line and field ("job.yaml:7: key
// 'federation.rounds': 0 is outside [1, 100000]") or, for cross-field rules, the field and the
// reason ("job.yaml: field 'ferret.k': must be set when mode is ferret").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/model/llama_config.h"
#include "federation/aggregator.h"
#include "federation/fedkseed_method.h"
#include "federation/privacy.h"
#include "federation/secagg_job.h"
#include "peft/ferret.h"
#include "peft/lora.h"

namespace tributary {

// Cluster mode (federation.mode cluster, docs/cluster.md): islands of workers train one replica each in
// synchronous data parallel for train.local_steps (H) inner steps, then the islands' pseudo-gradients
// Δ = θ_outer − θ_island are averaged (token-weighted) and applied by the outer optimizer.
struct ClusterOptions {
  std::string outer_optimizer = "nesterov";  // nesterov | sgd (sgd at outer_lr 1 is plain averaging)
  double outer_lr = 0.7;                     // DiLoCo's defaults
  double outer_momentum = 0.9;               // nesterov only
  std::string codec = "fp32";                // on the wire: fp32 | bf16 | int8 | fp4 | ferret | auto (per round)
  // Island membership: "NAME=WORKER,WORKER,..." per island; empty: islands by the workers' reported
  // fabric identity (a worker with none is an island of its own).
  std::vector<std::string> islands;
  double collective_timeout_s = 3;  // an island collective (or its rendezvous) fails after this long
  // Apply the plan's member shares and per-island batches (docs/placement.md). Off by default: they are only
  // as good as the calibrated compute rates, and rates measured under different load (a worker that
  // re-calibrates alone after a restart) skew them badly.
  bool balance_batches = false;
  int64_t bucket_elems = 1 << 20;  // all-reduce bucket, floats
};

// An explicit island of cluster.islands.
struct IslandSpec {
  std::string name;
  std::vector<std::string> workers;  // as listed
};
// Parses cluster.islands entries ("NAME=W1,W2"); InvalidArgument naming the entry otherwise (empty
// name or worker, a worker in two islands, an island listed twice).
Result<std::vector<IslandSpec>> ParseIslands(const std::vector<std::string>& entries);

struct JobSpec {
  std::string name;  // free text for humans
  // model
  std::string base_model;  // HF model directory, same path on every worker
  // data
  std::string dataset;  // dataset name each worker registered (--data NAME=PATH)
  int64_t seq_len = 256;
  // federation
  std::string mode = "ferret";  // a registered federated method (federation/method.h)
  int64_t rounds = 10;
  double client_fraction = 1.0;  // of eligible workers per round
  int64_t min_clients = 1;
  int64_t max_clients = 0;       // 0 = no cap
  double quorum = 1.0;           // fraction of selected clients needed at the deadline
  double deadline_floor_s = 60;  // round deadline clamp (median + k*MAD of tasklet durations)
  double deadline_ceiling_s = 3600;
  uint64_t seed = 0;  // job seed: data order, client sampling, Ferret bases
  AggregationWeights aggregation_weights = AggregationWeights::kSamples;
  // aggregation: the combination rule, its parameters and per-client clipping (federation/aggregator.h)
  AggregationOptions aggregation;
  // privacy: differential privacy of the clients' updates (federation/privacy.h)
  PrivacyOptions privacy;
  // secure_aggregation: SecAgg+ over the round's clients (federation/secagg_job.h); off by default
  SecureAggregationOptions secure_aggregation;
  // train (each client's local round)
  int64_t local_steps = 10;  // 0: auto (cluster mode: each outer round's H is the plan's, RoundStart.local_steps)
  int64_t batch_size = 4;
  int64_t grad_accum = 1;
  double lr = 1e-4;
  std::string optimizer = "sgd";  // sgd | adamw (fresh state every round)
  double weight_decay = 0.0;
  double momentum = 0.0;
  double max_grad_norm = 0.0;  // <= 0: off
  double server_lr = 1.0;      // slr applied to the aggregate (ferret, fedavg)
  // ferret (mode ferret only), parsed once: K, distribution, scaling, blocking, allocation, seed mode
  // and wire dtype. Its job_seed and server_lr are not used: the job's are the fields above
  // (FerretOptionsOf in federation/ferret_method.h joins them).
  FerretOptions ferret;
  // lora (mode lora only), parsed once: rank, alpha, dropout, targets. Its seed is not used: the
  // adapters are initialised from the job seed (CreateJobAdapters in federation/replica_state.h).
  LoraOptions lora;
  // cluster (mode cluster only): islands, the outer optimizer and the outer codec
  ClusterOptions cluster;
  // fedkseed (mode fedkseed only): pool size K, eps, distribution and seed mode (federation/fedkseed_method.h)
  FedKSeedOptions fedkseed;
  // eval
  std::string eval_dataset;  // held-out dataset name on the coordinator ("" = none)
  int64_t eval_every = 1;    // rounds between held-out evaluations
  // checkpoint
  int64_t snapshot_every = 10;  // rounds between global-model snapshots

  std::string source_text;  // the YAML as submitted (stored with the job)
};

// Parses and validates YAML text; `source` names it in errors. Overrides are `key=value` strings
// (`tributary submit job.yaml --set federation.rounds=3`) applied before validation.
Result<JobSpec> ParseJobSpec(const std::string& yaml, const std::string& source,
                             const std::vector<std::string>& overrides = {});
Result<JobSpec> LoadJobSpec(const std::string& path, const std::vector<std::string>& overrides = {});

// Bounds of the sizes a spec derives by multiplying fields (ParseJobSpec checks them without overflow,
// naming the field): tokens per micro-batch (seq_len x batch_size) and tokens per round (x grad_accum x
// local_steps). 2^53 keeps the planner's double arithmetic exact.
inline constexpr int64_t kMaxMicroBatchTokens = (int64_t{1} << 31) - 1;
inline constexpr int64_t kMaxRoundTokens = int64_t{1} << 53;

// The sizes the spec derives with its base model's shape, checked without overflow: attention scores
// per micro-batch (batch x heads x seq_len^2), LoRA parameters (rank x (hidden + intermediate) x layers
// x targets), Ferret coefficients per round (K x tensors). InvalidArgument "SOURCE: field 'F': ..."
// naming the field to lower.
Status CheckJobSizesForModel(const JobSpec& spec, const LlamaConfig& config, const std::string& source);

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
