// JobRunner's catch-ups and exports (job_runner.h): what a worker behind or a CLI download is served, read off
// the loop on the job's task queues and offered as bulk objects.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "base/hash.h"
#include "coordinator/job_runner.h"
#include "federation/method.h"

namespace tributary {

namespace fs = std::filesystem;

namespace {

// The aggregates one catch-up reply carries at most (it asks again from where the plan ends).
constexpr uint64_t kCatchUpReplyBytes = uint64_t{32} << 20;

// Writes committed `round` of a job as `format` into `dir` and marks it complete (an export already
// complete is kept: a request queued behind the same one). Without `model` it loads the job's model;
// without `state` it rebuilds the round from the store.
Result<std::string> ExportRound(checkpoint::CheckpointStore* store, const JobSpec& spec, const std::string& job_id,
                                uint32_t round, const std::string& format, const std::string& dir,
                                std::shared_ptr<JobModel> model, std::shared_ptr<const Arena> state) {
  if (fs::exists(fs::path(dir) / ".complete")) return dir;
  if (model == nullptr) {
    TRIB_ASSIGN_OR_RETURN(std::unique_ptr<JobModel> loaded, JobModel::Load(spec));
    model = std::move(loaded);
  }
  if (state == nullptr) {
    auto rebuilt = std::make_shared<Arena>(model->NewState());
    TRIB_RETURN_IF_ERROR(RebuildTrainableState(store, job_id, spec, round, rebuilt.get()));
    state = std::move(rebuilt);
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  TRIB_RETURN_IF_ERROR(model->Export(*state, format, dir));
  FILE* marker = std::fopen((fs::path(dir) / ".complete").c_str(), "w");
  if (marker != nullptr) std::fclose(marker);
  return dir;
}

}  // namespace

// ---- catch-up and exports ----

void JobRunner::CatchUpAsync(const v1::CatchUpRequest& req, CatchUpDone done) {
  const uint32_t last = record_.current_round;
  const uint32_t to = (req.to_round() == 0 || req.to_round() > last) ? last : static_cast<uint32_t>(req.to_round());
  std::set<std::string> served;
  for (const char* kind : {"snapshot/", "aggregate/"}) {
    for (std::string& id : services_.bulk->ServedIds(kind + job_id_ + "/")) served.insert(std::move(id));
  }
  auto read = std::make_shared<Result<CatchUpRead>>(CatchUpRead{});
  reads_.Post(
      [read, store = services_.store, job_id = job_id_, every = spec_.snapshot_every,
       from = static_cast<uint32_t>(req.from_round()), to, inline_limit = services_.options->inline_payload_bytes,
       served = std::move(served)] { *read = ReadCatchUp(store, job_id, every, from, to, inline_limit, served); },
      [this, read, req, to, done = std::move(done)] {
        if (!read->ok()) return done(read->status());
        done(CatchUpReply(req, to, std::move(**read), UnixMillis()));
      });
}

Result<JobRunner::CatchUpRead> JobRunner::ReadCatchUp(checkpoint::CheckpointStore* store, const std::string& job_id,
                                                      int64_t snapshot_every, uint32_t from_round, uint32_t to_round,
                                                      uint64_t inline_limit, const std::set<std::string>& served) {
  CatchUpRead read;
  TRIB_ASSIGN_OR_RETURN(read.plan,
                        PlanCatchUp(store, job_id, snapshot_every, from_round, to_round, kCatchUpReplyBytes));
  if (read.plan.use_snapshot) {
    const uint32_t round = read.plan.snapshot_round;
    const std::string object_id = "snapshot/" + job_id + "/" + std::to_string(round);
    if (served.count(object_id) == 0) {
      TRIB_ASSIGN_OR_RETURN(auto table, store->SnapshotTable(job_id, round));
      auto bytes = std::make_shared<std::string>(static_cast<size_t>(table->total_elems()) * sizeof(float), '\0');
      TRIB_RETURN_IF_ERROR(store->LoadSnapshot(job_id, round, *table, reinterpret_cast<float*>(bytes->data())));
      TRIB_ASSIGN_OR_RETURN(
          read.prepared[object_id],
          BulkObjects::Prepare(object_id, std::make_shared<transport::MemorySource>(std::move(bytes))));
    }
  }
  for (const checkpoint::RoundRecord& r : read.plan.rounds) {
    const std::string object_id = "aggregate/" + job_id + "/" + std::to_string(r.round);
    if (r.aggregate.size() <= inline_limit || served.count(object_id) != 0) continue;
    auto bytes = std::make_shared<const std::string>(r.aggregate);
    TRIB_ASSIGN_OR_RETURN(read.prepared[object_id],
                          BulkObjects::Prepare(object_id, std::make_shared<transport::MemorySource>(std::move(bytes))));
  }
  return read;
}

Result<v1::CatchUpReply> JobRunner::CatchUpReply(const v1::CatchUpRequest& req, uint32_t to, CatchUpRead read,
                                                 int64_t now_ms) {
  const CatchUpPlan& plan = read.plan;
  for (auto& [object_id, object] : read.prepared)
    TRIB_RETURN_IF_ERROR(services_.bulk->OfferPrepared(object_id, std::move(object), now_ms));
  v1::CatchUpReply out;
  out.set_job_id(job_id_);
  out.set_spec_yaml(record_.spec_yaml);
  out.set_state(checkpoint::JobStateName(record_.state));
  out.set_last_committed_round(record_.current_round);
  if (plan.use_snapshot) TRIB_RETURN_IF_ERROR(OfferSnapshot(plan.snapshot_round, now_ms, &out));
  for (const checkpoint::RoundRecord& r : plan.rounds) {
    v1::CommittedAggregate* agg = out.add_rounds();
    agg->set_round(r.round);
    if (r.aggregate.size() > services_.options->inline_payload_bytes) {
      std::string object_id;
      TRIB_RETURN_IF_ERROR(OfferAggregate(r.round, r.aggregate, now_ms, &object_id));
      agg->set_aggregate_object_id(object_id);
      agg->set_aggregate_size(r.aggregate.size());
      agg->set_aggregate_checksum(services_.bulk->ChecksumOf(object_id));
    } else {
      agg->set_aggregate(r.aggregate);
    }
    agg->set_weights_hash(HashHex(r.weights_hash));
  }
  spdlog::info("job {}: catch-up for worker '{}' from round {} to {}: {}{} round(s)", job_id_, req.worker_id(),
               req.from_round(), to,
               plan.use_snapshot ? "snapshot of round " + std::to_string(plan.snapshot_round) + " + " : "",
               plan.rounds.size());
  return out;
}

Status JobRunner::OfferSnapshot(uint32_t round, int64_t now_ms, v1::CatchUpReply* reply) {
  checkpoint::CheckpointStore& store = *services_.store;
  const std::string object_id = "snapshot/" + job_id_ + "/" + std::to_string(round);
  TRIB_ASSIGN_OR_RETURN(checkpoint::SnapshotRecord info, store.GetSnapshotInfo(job_id_, round));
  if (!services_.bulk->Renew(object_id, now_ms)) {
    TRIB_ASSIGN_OR_RETURN(auto table, store.SnapshotTable(job_id_, round));
    auto bytes = std::make_shared<std::string>(static_cast<size_t>(table->total_elems()) * sizeof(float), '\0');
    TRIB_RETURN_IF_ERROR(store.LoadSnapshot(job_id_, round, *table, reinterpret_cast<float*>(bytes->data())));
    TRIB_RETURN_IF_ERROR(
        services_.bulk->Offer(object_id, std::make_shared<transport::MemorySource>(std::move(bytes)), now_ms));
  }
  reply->set_snapshot_object_id(object_id);
  reply->set_snapshot_round(round);
  reply->set_snapshot_size(static_cast<uint64_t>(info.total_elems) * sizeof(float));
  reply->set_snapshot_checksum(services_.bulk->ChecksumOf(object_id));
  reply->set_snapshot_weights_hash(HashHex(info.weights_hash));
  return Status::OK();
}

void JobRunner::ExportAsync(uint64_t requested_round, const std::string& format, ExportDone done) {
  const uint32_t last = record_.current_round;
  if (requested_round > last)
    return done(Status::InvalidArgument("job '" + job_id_ + "': round " + std::to_string(requested_round) +
                                        " is not committed (last committed: " + std::to_string(last) + ")"),
                0);
  const uint32_t round = requested_round == 0 ? last : static_cast<uint32_t>(requested_round);
  if (format != "safetensors" && format != "peft")
    return done(Status::InvalidArgument("format '" + format + "': expected safetensors or peft"), round);
  if (format == "peft" && !MethodOf(spec_).trains_adapters)
    return done(Status::FailedPrecondition("job '" + job_id_ + "' is a " + spec_.mode +
                                           " job: --format peft needs a job that trains adapters (use safetensors)"),
                round);
  const fs::path dir =
      fs::path(services_.options->data_dir) / "exports" / job_id_ / ("round-" + std::to_string(round) + "-" + format);
  const bool exists = fs::exists(dir / ".complete");
  // What the step reads is its own: the running job's model and committed state are shared (a later
  // round replaces the state rather than changing it); otherwise it loads the model and rebuilds the round.
  std::shared_ptr<JobModel> model = model_;
  std::shared_ptr<const Arena> state;
  if (driver_ && driver_->last_committed_round() == round) state = driver_->shared_global();
  auto result = std::make_shared<Result<Exported>>(Exported{});
  checkpoint::CheckpointStore* store = services_.store;
  work_.Post(
      [model, state, store, spec = spec_, job_id = job_id_, round, format, dir, exists, result] {
        if (!exists) {
          auto written = ExportRound(store, spec, job_id, round, format, dir.string(), model, state);
          if (!written.ok()) {
            *result = written.status();
            return;
          }
        }
        *result = PrepareExportFiles(dir.string(), "export/" + job_id + "/" + std::to_string(round) + "/" + format);
      },
      [this, round, format, exists, result, done = std::move(done)] {
        if (result->ok() && !exists)
          Log("exported round " + std::to_string(round) + " as " + format + " to " + (*result)->dir);
        done(*result, round);
      });
}

Result<JobRunner::Exported> JobRunner::PrepareExportFiles(const std::string& dir, const std::string& id_prefix) {
  Exported out;
  out.dir = dir;
  std::vector<fs::path> paths;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_regular_file() && entry.path().filename() != ".complete") paths.push_back(entry.path());
  }
  if (ec) return Status::IOError(dir + ": cannot list: " + ec.message());
  std::sort(paths.begin(), paths.end());
  for (const fs::path& path : paths) {
    ExportedFile file;
    file.name = path.filename().string();
    file.object_id = id_prefix + "/" + file.name;
    TRIB_ASSIGN_OR_RETURN(std::unique_ptr<transport::FileSource> source, transport::FileSource::Open(path.string()));
    file.size = source->size();
    TRIB_ASSIGN_OR_RETURN(
        file.object, BulkObjects::Prepare(file.object_id, std::shared_ptr<transport::BulkSource>(std::move(source))));
    out.files.push_back(std::move(file));
  }
  return out;
}

}  // namespace tributary
