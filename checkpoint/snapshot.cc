// CheckpointStore snapshots: the fp32 model arena in fixed-size chunks (blob files) plus a manifest.
//
// The chunks are written first (and flushed to blob files), the manifest last; a snapshot exists only
// once its manifest does.
// The manifest lists each chunk's CRC32C, so a stale chunk left by an interrupted earlier attempt
// can never be mixed into a loaded model.
#include <algorithm>
#include <cstring>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <unordered_set>

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include "checkpoint/records.h"
#include "checkpoint/store.h"

namespace tributary::checkpoint {

using internal::FromRocksStatus;

namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// Rebuilds the tensor table a manifest describes, checking it the way TensorTable would (so a
// damaged manifest is a Corruption, never a TRIB_CHECK abort).
Status TableFromManifest(const SnapshotRecord& manifest, const std::string& what, TensorTable* table) {
  std::unordered_set<std::string> names;
  for (const auto& t : manifest.tensors) {
    if (!names.insert(t.name).second) return Status::Corruption(what + ": tensor '" + t.name + "' listed twice");
    int64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0 || (d > 0 && numel > manifest.total_elems / d)) {
        return Status::Corruption(what + ": tensor '" + t.name + "' has an impossible shape " + ShapeString(t.shape));
      }
      numel *= d;
    }
    size_t index = table->Add(t.name, t.shape);
    const TensorEntry& built = (*table)[index];
    if (built.offset != t.offset || built.numel != t.numel) {
      return Status::Corruption(what + ": tensor '" + t.name + "' at offset " + std::to_string(t.offset) + " with " +
                                std::to_string(t.numel) + " elements does not match the arena layout (offset " +
                                std::to_string(built.offset) + ", " + std::to_string(built.numel) + " elements)");
    }
  }
  if (table->total_elems() != manifest.total_elems) {
    return Status::Corruption(what + ": tensors span " + std::to_string(table->total_elems()) +
                              " elements, manifest says " + std::to_string(manifest.total_elems));
  }
  return Status::OK();
}

// InvalidArgument naming the first difference between the arena's layout and the snapshot's.
Status CheckLayoutMatches(const TensorTable& arena_table, const SnapshotRecord& manifest, const std::string& what) {
  const auto& entries = arena_table.entries();
  for (size_t i = 0; i < std::min(entries.size(), manifest.tensors.size()); ++i) {
    const TensorEntry& a = entries[i];
    const TensorEntry& s = manifest.tensors[i];
    if (a.name != s.name) {
      return Status::InvalidArgument(what + ": tensor " + std::to_string(i) + " is '" + s.name +
                                     "' in the snapshot but '" + a.name + "' in the arena");
    }
    if (a.shape != s.shape || a.offset != s.offset) {
      return Status::InvalidArgument(what + ": tensor '" + s.name + "' has shape " + ShapeString(s.shape) +
                                     " in the snapshot but " + ShapeString(a.shape) + " in the arena");
    }
  }
  if (entries.size() != manifest.tensors.size() || arena_table.total_elems() != manifest.total_elems) {
    return Status::InvalidArgument(what + ": the snapshot has " + std::to_string(manifest.tensors.size()) +
                                   " tensors (" + std::to_string(manifest.total_elems) + " elements), the arena " +
                                   std::to_string(entries.size()) + " (" + std::to_string(arena_table.total_elems()) +
                                   " elements)");
  }
  return Status::OK();
}

}  // namespace

Status CheckpointStore::StartSnapshotManifest(std::string_view job_id, uint32_t round, const float* data,
                                              int64_t num_elems, const TensorTable& table, uint64_t weights_hash,
                                              int64_t created_unix_ms, SnapshotRecord* manifest) {
  TRIB_RETURN_IF_ERROR(internal::ValidateId(job_id, "job id"));
  const std::string what = internal::SnapshotWhat(job_id, round);
  if (num_elems != table.total_elems()) {
    return Status::InvalidArgument(what + ": " + std::to_string(num_elems) +
                                   " elements given, the tensor table spans " + std::to_string(table.total_elems()));
  }
  if (num_elems > 0 && data == nullptr) return Status::InvalidArgument(what + ": no data");
  manifest->job_id = std::string(job_id);
  manifest->round = round;
  manifest->total_elems = num_elems;
  manifest->chunk_bytes = options_.snapshot_chunk_bytes;
  manifest->chunk_crcs.clear();
  manifest->tensors = table.entries();
  manifest->weights_hash = weights_hash;
  manifest->created_unix_ms = created_unix_ms;
  const uint64_t total_bytes = static_cast<uint64_t>(num_elems) * sizeof(float);
  const uint64_t num_chunks = (total_bytes + manifest->chunk_bytes - 1) / manifest->chunk_bytes;
  TRIB_RETURN_IF_ERROR(CheckWritable(total_bytes).WithContext(what));
  if (num_chunks > UINT32_MAX) return Status::InvalidArgument(what + ": too many chunks");
  return Status::OK();
}

Status CheckpointStore::WriteSnapshotChunks(const float* data, SnapshotRecord* manifest) {
  const std::string& job_id = manifest->job_id;
  const uint32_t round = manifest->round;
  const std::string what = internal::SnapshotWhat(job_id, round);
  const auto* bytes = reinterpret_cast<const char*>(data);
  const uint64_t total_bytes = static_cast<uint64_t>(manifest->total_elems) * sizeof(float);
  const uint64_t num_chunks = (total_bytes + manifest->chunk_bytes - 1) / manifest->chunk_bytes;

  // The chunks bypass the WAL (which would write every model byte twice more) and are flushed to
  // blob files before the manifest is written through the synced WAL. A crash before that flush loses
  // only chunks that no manifest refers to.
  // Chunks left by an interrupted earlier attempt at this snapshot go first.
  {
    rocksdb::WriteBatch batch;
    TRIB_RETURN_IF_ERROR(
        FromRocksStatus(batch.DeleteRange(handles_[kSnapshots], internal::SnapshotChunkKey(job_id, round, 0),
                                          internal::SnapshotChunkKey(job_id, round, UINT32_MAX) + '\0'),
                        what));
    TRIB_RETURN_IF_ERROR(RocksWrite(/*sync=*/false, /*use_wal=*/false, &batch, what));
  }
  manifest->chunk_crcs.clear();
  for (uint64_t c = 0; c < num_chunks; ++c) {
    const uint64_t begin = c * manifest->chunk_bytes;
    const uint64_t size = std::min<uint64_t>(manifest->chunk_bytes, total_bytes - begin);
    manifest->chunk_crcs.push_back(internal::Crc32c(bytes + begin, size));
    const std::string chunk_what = internal::ChunkWhat(job_id, round, static_cast<uint32_t>(c));
    rocksdb::WriteBatch batch;
    TRIB_RETURN_IF_ERROR(FromRocksStatus(
        batch.Put(handles_[kSnapshots], internal::SnapshotChunkKey(job_id, round, static_cast<uint32_t>(c)),
                  internal::EncodeSnapshotChunk(bytes + begin, size)),
        chunk_what));
    TRIB_RETURN_IF_ERROR(RocksWrite(/*sync=*/false, /*use_wal=*/false, &batch, chunk_what));
  }
  // Make the chunks durable in blob/SST files before the manifest can refer to them.
  return FlushSnapshots(what);
}

namespace {

// Releases a snapshot's in-progress claim on every return path.
class InProgressClaim {
 public:
  InProgressClaim(std::mutex* mu, std::set<std::string>* in_progress, std::string key)
      : mu_(mu), in_progress_(in_progress), key_(std::move(key)) {}
  ~InProgressClaim() {
    std::lock_guard<std::mutex> lock(*mu_);
    in_progress_->erase(key_);
  }
  InProgressClaim(const InProgressClaim&) = delete;
  InProgressClaim& operator=(const InProgressClaim&) = delete;

 private:
  std::mutex* mu_;
  std::set<std::string>* in_progress_;
  std::string key_;
};

}  // namespace

Status CheckpointStore::PutSnapshot(std::string_view job_id, uint32_t round, const float* data, int64_t num_elems,
                                    const TensorTable& table, uint64_t weights_hash, int64_t created_unix_ms) {
  SnapshotRecord manifest;
  TRIB_RETURN_IF_ERROR(
      StartSnapshotManifest(job_id, round, data, num_elems, table, weights_hash, created_unix_ms, &manifest));
  TRIB_RETURN_IF_ERROR(RecoverFromWriteFault());
  std::shared_lock<std::shared_mutex> db_lock;
  TRIB_RETURN_IF_ERROR(HoldDb(&db_lock));
  const std::string what = internal::SnapshotWhat(job_id, round);
  const std::string manifest_key = internal::SnapshotManifestKey(job_id, round);
  {
    std::lock_guard<std::mutex> lock(write_mu_);
    TRIB_ASSIGN_OR_RETURN(JobRecord job, ReadJob(job_id));
    if (round > job.current_round) {
      return Status::FailedPrecondition(what + ": round is not committed (job's current round is " +
                                        std::to_string(job.current_round) + ")");
    }
    std::string existing;
    Status st = ReadValue(kSnapshots, manifest_key, what, &existing);
    if (st.ok()) return Status::AlreadyExists(what + ": already stored (snapshots are immutable)");
    if (!st.IsNotFound()) return st;
    if (!snapshots_in_progress_.insert(manifest_key).second) {
      return Status::AlreadyExists(what + ": being written by another thread");
    }
  }
  InProgressClaim claim(&write_mu_, &snapshots_in_progress_, manifest_key);
  TRIB_RETURN_IF_ERROR(WriteSnapshotChunks(data, &manifest));
  // The manifest last: from here on the snapshot exists.
  std::lock_guard<std::mutex> lock(write_mu_);
  rocksdb::WriteBatch batch;
  TRIB_RETURN_IF_ERROR(
      FromRocksStatus(batch.Put(handles_[kSnapshots], manifest_key, internal::EncodeSnapshotManifest(manifest)), what));
  return Write(&batch, what);
}

Status CheckpointStore::CreateJobWithSnapshot(const JobRecord& job, const float* data, int64_t num_elems,
                                              const TensorTable& table, uint64_t weights_hash,
                                              int64_t created_unix_ms) {
  SnapshotRecord manifest;
  TRIB_RETURN_IF_ERROR(
      StartSnapshotManifest(job.job_id, 0, data, num_elems, table, weights_hash, created_unix_ms, &manifest));
  TRIB_RETURN_IF_ERROR(RecoverFromWriteFault());
  std::shared_lock<std::shared_mutex> db_lock;
  TRIB_RETURN_IF_ERROR(HoldDb(&db_lock));
  const std::string what = internal::JobWhat(job.job_id);
  const std::string manifest_key = internal::SnapshotManifestKey(job.job_id, 0);
  {
    // Refuse a used id or token before writing any model bytes. The checks run again with the batch
    // below, since the lock is not held while the chunks go out.
    std::lock_guard<std::mutex> lock(write_mu_);
    rocksdb::WriteBatch unused;
    TRIB_RETURN_IF_ERROR(CheckNewJobLocked(job, &unused));
    std::string existing;
    Status st = ReadValue(kSnapshots, manifest_key, what, &existing);
    if (st.ok()) return Status::AlreadyExists(what + ": a round-0 snapshot of this job id is already stored");
    if (!st.IsNotFound()) return st;
    if (!snapshots_in_progress_.insert(manifest_key).second) {
      return Status::AlreadyExists(what + ": being created by another thread");
    }
  }
  InProgressClaim claim(&write_mu_, &snapshots_in_progress_, manifest_key);
  TRIB_RETURN_IF_ERROR(WriteSnapshotChunks(data, &manifest));

  // Job, token index and manifest in one synced batch: the job exists exactly when its snapshot does.
  std::lock_guard<std::mutex> lock(write_mu_);
  if (before_create_job_commit_hook_) TRIB_RETURN_IF_ERROR(before_create_job_commit_hook_());
  rocksdb::WriteBatch batch;
  TRIB_RETURN_IF_ERROR(CheckNewJobLocked(job, &batch));
  TRIB_RETURN_IF_ERROR(
      FromRocksStatus(batch.Put(handles_[kSnapshots], manifest_key, internal::EncodeSnapshotManifest(manifest)), what));
  return Write(&batch, what);
}

Result<SnapshotRecord> CheckpointStore::GetSnapshotInfo(std::string_view job_id, uint32_t round) {
  std::shared_lock<std::shared_mutex> db_lock;
  TRIB_RETURN_IF_ERROR(HoldDb(&db_lock));
  return GetSnapshotInfoLocked(job_id, round);
}

Result<SnapshotRecord> CheckpointStore::GetSnapshotInfoLocked(std::string_view job_id, uint32_t round) {
  TRIB_RETURN_IF_ERROR(internal::ValidateId(job_id, "job id"));
  const std::string what = internal::SnapshotWhat(job_id, round);
  std::string value;
  TRIB_RETURN_IF_ERROR(ReadValue(kSnapshots, internal::SnapshotManifestKey(job_id, round), what, &value));
  SnapshotRecord manifest;
  TRIB_RETURN_IF_ERROR(internal::DecodeSnapshotManifest(value, what, &manifest));
  if (manifest.job_id != job_id || manifest.round != round) {
    return Status::Corruption(what + ": manifest names job '" + manifest.job_id + "' round " +
                              std::to_string(manifest.round));
  }
  const uint64_t total_bytes = static_cast<uint64_t>(manifest.total_elems) * sizeof(float);
  if (manifest.chunk_bytes == 0 ||
      manifest.chunk_crcs.size() != (total_bytes + manifest.chunk_bytes - 1) / manifest.chunk_bytes) {
    return Status::Corruption(what + ": " + std::to_string(manifest.chunk_crcs.size()) + " chunks of " +
                              std::to_string(manifest.chunk_bytes) + " bytes cannot hold " +
                              std::to_string(total_bytes) + " bytes");
  }
  return manifest;
}

Result<std::shared_ptr<TensorTable>> CheckpointStore::SnapshotTable(std::string_view job_id, uint32_t round) {
  std::shared_lock<std::shared_mutex> db_lock;
  TRIB_RETURN_IF_ERROR(HoldDb(&db_lock));
  TRIB_ASSIGN_OR_RETURN(SnapshotRecord manifest, GetSnapshotInfoLocked(job_id, round));
  auto table = std::make_shared<TensorTable>();
  TRIB_RETURN_IF_ERROR(TableFromManifest(manifest, internal::SnapshotWhat(job_id, round), table.get()));
  return table;
}

Status CheckpointStore::LoadSnapshot(std::string_view job_id, uint32_t round, const TensorTable& layout, float* data) {
  std::shared_lock<std::shared_mutex> db_lock;
  TRIB_RETURN_IF_ERROR(HoldDb(&db_lock));
  TRIB_CHECK(data != nullptr);
  TRIB_ASSIGN_OR_RETURN(SnapshotRecord manifest, GetSnapshotInfoLocked(job_id, round));
  const std::string what = internal::SnapshotWhat(job_id, round);
  TensorTable stored;
  TRIB_RETURN_IF_ERROR(TableFromManifest(manifest, what, &stored));
  TRIB_RETURN_IF_ERROR(CheckLayoutMatches(layout, manifest, what));

  auto* out = reinterpret_cast<char*>(data);
  const uint64_t total_bytes = static_cast<uint64_t>(manifest.total_elems) * sizeof(float);
  rocksdb::PinnableSlice value;
  for (uint32_t c = 0; c < manifest.chunk_crcs.size(); ++c) {
    const std::string chunk_what = internal::ChunkWhat(job_id, round, c);
    value.Reset();
    rocksdb::Status s =
        db_->Get(rocksdb::ReadOptions(), handles_[kSnapshots], internal::SnapshotChunkKey(job_id, round, c), &value);
    if (s.IsNotFound()) return Status::Corruption(chunk_what + ": missing although the manifest lists it");
    TRIB_RETURN_IF_ERROR(FromRocksStatus(s, chunk_what));
    std::string_view bytes;
    TRIB_RETURN_IF_ERROR(internal::DecodeSnapshotChunk(value.ToStringView(), chunk_what, &bytes));
    const uint64_t begin = static_cast<uint64_t>(c) * manifest.chunk_bytes;
    const uint64_t expected = std::min<uint64_t>(manifest.chunk_bytes, total_bytes - begin);
    if (bytes.size() != expected) {
      return Status::Corruption(chunk_what + ": " + std::to_string(bytes.size()) + " bytes, the manifest expects " +
                                std::to_string(expected));
    }
    if (internal::Crc32c(bytes.data(), bytes.size()) != manifest.chunk_crcs[c]) {
      return Status::Corruption(chunk_what + ": contents do not match the manifest's checksum (a stale chunk)");
    }
    std::memcpy(out + begin, bytes.data(), bytes.size());
  }
  return Status::OK();
}

Result<SnapshotRecord> CheckpointStore::LatestSnapshotAtOrBefore(std::string_view job_id, uint32_t round) {
  std::shared_lock<std::shared_mutex> db_lock;
  TRIB_RETURN_IF_ERROR(HoldDb(&db_lock));
  TRIB_RETURN_IF_ERROR(internal::ValidateId(job_id, "job id"));
  const std::string prefix = internal::SnapshotManifestPrefix(job_id);
  uint32_t found = 0;
  bool any = false;
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handles_[kSnapshots]));
    it->SeekForPrev(internal::SnapshotManifestKey(job_id, round));
    if (it->Valid() && it->key().size() == prefix.size() + 4 &&
        it->key().ToStringView().substr(0, prefix.size()) == prefix) {
      found = internal::ReadBigEndian32(it->key().ToStringView(), prefix.size());
      any = true;
    }
    TRIB_RETURN_IF_ERROR(FromRocksStatus(it->status(), internal::SnapshotWhat(job_id, round) + ": searching"));
  }
  if (!any) {
    return Status::NotFound("checkpoint snapshots: job '" + std::string(job_id) +
                            "' has no snapshot at or before round " + std::to_string(round));
  }
  return GetSnapshotInfoLocked(job_id, found);
}

}  // namespace tributary::checkpoint
