// CheckpointStore: open/recovery, schema version, jobs, updates, rounds, workers, backups.
// Snapshots are in snapshot.cc; key layout and value encoding in records.cc.
#include "checkpoint/store.h"

#include <sys/statvfs.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_batch.h>

#include "checkpoint/records.h"

namespace tributary::checkpoint {

using internal::FromRocksStatus;

const char* JobStateName(JobState state) {
  switch (state) {
    case JobState::kPending: return "PENDING";
    case JobState::kRunning: return "RUNNING";
    case JobState::kCompleted: return "FINISHED:COMPLETED";
    case JobState::kFailed: return "FINISHED:FAILED";
    case JobState::kStopped: return "FINISHED:STOPPED";
  }
  return "UNKNOWN";
}

bool IsFinished(JobState state) {
  return state == JobState::kCompleted || state == JobState::kFailed || state == JobState::kStopped;
}

namespace {

// Column family names, in CheckpointStore::Cf order.
constexpr const char* kCfNames[] = {"jobs", "rounds", "updates", "snapshots", "workers", "meta"};

bool StartsWith(const rocksdb::Slice& key, std::string_view prefix) {
  return key.size() >= prefix.size() && std::string_view(key.data(), prefix.size()) == prefix;
}

}  // namespace

namespace {

// Unavailable when `dir`'s file system is read-only or would keep less than `reserve` free after
// `bytes` more (statvfs: the space an unprivileged writer may use).
Status CheckWritableAt(const std::string& dir, uint64_t reserve, uint64_t bytes, const std::string& what) {
  struct statvfs fs {};
  if (statvfs(dir.c_str(), &fs) != 0)
    return Status::IOError(what + ": cannot inspect its file system: " + std::strerror(errno));
  if ((fs.f_flag & ST_RDONLY) != 0) return Status::Unavailable(what + ": not writable: read-only file system");
  const uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  if (free_bytes >= reserve && free_bytes - reserve >= bytes) return Status::OK();
  constexpr uint64_t kMiB = 1 << 20;
  return Status::Unavailable(what + ": not writable: " + std::to_string(free_bytes / kMiB) +
                             " MiB free, the reserve is " + std::to_string(reserve / kMiB) + " MiB" +
                             (bytes > 0 ? " plus this write's " + std::to_string(bytes) + " bytes" : std::string()) +
                             " (free space to resume)");
}

// The nearest existing directory at or above `path` (a store not created yet lives on its parent's
// file system).
std::string ExistingAncestor(const std::string& path) {
  std::filesystem::path p = std::filesystem::absolute(path);
  std::error_code ec;
  while (!std::filesystem::exists(p, ec) && p.has_parent_path() && p != p.parent_path()) p = p.parent_path();
  return p.string();
}

// Records RocksDB's background errors in the store and turns RocksDB's own recovery off (see
// "I/O errors" below).
class WriteFaultListener : public rocksdb::EventListener {
 public:
  explicit WriteFaultListener(std::function<void(const std::string&)> on_error) : on_error_(std::move(on_error)) {}
  const char* Name() const override { return "TributaryWriteFaultListener"; }
  // Called with RocksDB's DB mutex held: only records the error.
  void OnBackgroundError(rocksdb::BackgroundErrorReason /*reason*/, rocksdb::Status* bg_error) override {
    if (bg_error != nullptr && !bg_error->ok()) on_error_(bg_error->ToString());
  }
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason /*reason*/, rocksdb::Status bg_error,
                            bool* auto_recovery) override {
    bg_error.PermitUncheckedError();
    *auto_recovery = false;  // the store reopens instead (see above)
  }

 private:
  std::function<void(const std::string&)> on_error_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Open / close

Result<std::unique_ptr<CheckpointStore>> CheckpointStore::Open(const std::string& path, const StoreOptions& options) {
  const std::string what = "checkpoint store '" + path + "'";
  if (options.snapshot_chunk_bytes == 0 || options.snapshot_chunk_bytes % sizeof(float) != 0 ||
      options.snapshot_chunk_bytes > (1ull << 30)) {
    return Status::InvalidArgument(what + ": snapshot_chunk_bytes " + std::to_string(options.snapshot_chunk_bytes) +
                                   " must be a positive multiple of 4 and at most 1 GiB");
  }
  std::error_code ec;
  const bool fresh = !std::filesystem::exists(std::filesystem::path(path) / "CURRENT", ec);
  if (fresh && !options.create_if_missing) return Status::NotFound(what + ": no store exists there");

  std::unique_ptr<CheckpointStore> store(new CheckpointStore());
  store->path_ = path;
  store->options_ = options;
  if (options.file_system_for_testing != nullptr)
    store->env_ = rocksdb::NewCompositeEnv(options.file_system_for_testing);
  // A store that cannot be written is refused at open (RocksDB would abort on its first write).
  TRIB_RETURN_IF_ERROR(CheckWritableAt(ExistingAncestor(path), options.reserve_bytes, 0, what));
  TRIB_RETURN_IF_ERROR(store->OpenDb());
  TRIB_RETURN_IF_ERROR(store->CheckOrWriteSchemaVersion(fresh));
  return store;
}

Status CheckpointStore::OpenDb() {
  const std::string what = "checkpoint store '" + path_ + "'";
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = options_.create_if_missing;
  db_options.create_missing_column_families = true;
  db_options.paranoid_checks = true;
  // Replay the WAL up to the first damaged record: synced writes are all before it.
  db_options.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  // No fallocate: RocksDB would preallocate 1.1 x the write buffer (70 MB) for each WAL and SST file,
  // which alone fills a small volume; files grow with what is written instead.
  db_options.allow_fallocate = false;
  // No automatic resume after a retryable I/O error: RocksDB 7.8 would write on through the WAL writer
  // that failed (and abort). The store reopens the DB itself (RecoverFromWriteFault).
  db_options.max_bgerror_resume_count = 0;
  db_options.listeners.push_back(
      std::make_shared<WriteFaultListener>([this](const std::string& error) { MarkWriteFault(error); }));
  if (env_ != nullptr) db_options.env = env_.get();

  std::error_code ec;
  const bool fresh = !std::filesystem::exists(std::filesystem::path(path_) / "CURRENT", ec);
  std::vector<std::string> cf_names;
  if (!fresh) {
    rocksdb::Status s = rocksdb::DB::ListColumnFamilies(db_options, path_, &cf_names);
    if (!s.ok()) return FromRocksStatus(s, what + ": listing column families");
  }
  // Open every family that exists (RocksDB requires it) plus the ones this schema needs.
  auto add_name = [&cf_names](const std::string& name) {
    for (const auto& n : cf_names) {
      if (n == name) return;
    }
    cf_names.push_back(name);
  };
  add_name(rocksdb::kDefaultColumnFamilyName);
  for (const char* name : kCfNames) add_name(name);

  rocksdb::ColumnFamilyOptions plain_options;
  rocksdb::ColumnFamilyOptions snapshot_options;
  snapshot_options.enable_blob_files = true;
  snapshot_options.min_blob_size = options_.snapshot_min_blob_size;
  snapshot_options.blob_compression_type =
      options_.snapshot_blob_lz4 ? rocksdb::kLZ4Compression : rocksdb::kNoCompression;
  snapshot_options.enable_blob_garbage_collection = true;

  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  descriptors.reserve(cf_names.size());
  for (const auto& name : cf_names) {
    descriptors.emplace_back(name, name == kCfNames[kSnapshots] ? snapshot_options : plain_options);
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::Status s = rocksdb::DB::Open(db_options, path_, descriptors, &handles, &db_);
  if (!s.ok()) {
    db_ = nullptr;
    return FromRocksStatus(s, what + ": open");
  }
  handles_.assign(kNumCfs, nullptr);
  extra_handles_.clear();
  for (size_t i = 0; i < handles.size(); ++i) {
    bool known = false;
    for (int cf = 0; cf < kNumCfs; ++cf) {
      if (cf_names[i] == kCfNames[cf]) {
        handles_[cf] = handles[i];
        known = true;
      }
    }
    if (!known) extra_handles_.push_back(handles[i]);
  }
  return Status::OK();
}

void CheckpointStore::CloseDb() {
  if (db_ == nullptr) return;
  for (auto* h : handles_) {
    if (h != nullptr) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  }
  for (auto* h : extra_handles_) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  handles_.assign(kNumCfs, nullptr);
  extra_handles_.clear();
  // Every acknowledged write is already in the synced WAL; after an I/O error Close reports it again.
  db_->Close().PermitUncheckedError();
  delete db_;
  db_ = nullptr;
}

CheckpointStore::~CheckpointStore() {
  CloseDb();
}

// ---------------------------------------------------------------------------------------------
// I/O errors
//
// RocksDB 7.8 (Debian 12) must never be handed a write after one failed in its WAL: a plain EIO leaves
// the instance refusing every write (DB::Resume refuses too), and once RocksDB recovers by itself
// (ENOSPC, retryable errors) the next write or memtable switch goes through the WAL writer that failed
// and aborts the process (assertion `sync_without_flush_called_`; fixed upstream in 9.x, PR 12448).
// So RocksDB's own recovery is switched off (WriteFaultListener, max_bgerror_resume_count = 0): after
// any background error it refuses every write and flush by itself, with no window for a concurrent
// writer. The store marks itself (from the listener, before the failing write returns) and the next
// write method closes that instance and opens a new one, which replays the WAL and starts a new one.
void CheckpointStore::MarkWriteFault(const std::string& error) {
  std::lock_guard<std::mutex> lock(fault_mu_);
  if (!write_faulted_.load()) write_fault_ = error;
  write_faulted_.store(true);
}

Status CheckpointStore::HoldDb(std::shared_lock<std::shared_mutex>* lock) const {
  *lock = std::shared_lock<std::shared_mutex>(db_mu_);
  if (db_ != nullptr) return Status::OK();
  return WriteFaultStatus("");
}

Status CheckpointStore::WriteFaultStatus(std::string_view what) const {
  std::lock_guard<std::mutex> lock(fault_mu_);
  return Status::Unavailable("checkpoint store '" + path_ + "'" + (what.empty() ? "" : ": " + std::string(what)) +
                             ": not writable after an I/O error (" + write_fault_ +
                             "); the store reopens itself at the next write");
}

Status CheckpointStore::RecoverFromWriteFault() {
  if (!write_faulted_.load()) return Status::OK();
  std::unique_lock<std::shared_mutex> db_lock(db_mu_);  // waits for every reader and writer of this instance
  if (!write_faulted_.load()) return Status::OK();      // another writer reopened it
  TRIB_RETURN_IF_ERROR(CheckWritable());
  std::string fault;
  {
    std::lock_guard<std::mutex> lock(fault_mu_);
    fault = write_fault_;
    write_fault_.clear();
    write_faulted_.store(false);  // the listener may set it again while the new instance opens
  }
  CloseDb();
  Status st = OpenDb();
  if (!st.ok()) {
    MarkWriteFault(fault + "; reopening: " + st.message());
    return WriteFaultStatus("");
  }
  return Status::OK();
}

Status CheckpointStore::NoteRocksError(const rocksdb::Status& s, std::string_view what) {
  if (s.ok() || s.IsInvalidArgument() || s.IsNotSupported()) return FromRocksStatus(s, what);
  MarkWriteFault(s.ToString());
  // Unavailable, as for a full disk: callers keep the work and retry. The write may or may not have
  // reached the log (a failed sync), so a retry may find it stored (kAlreadyPresent).
  return Status::Unavailable("checkpoint store '" + path_ + "': " + std::string(what) +
                             ": write failed with an I/O error, retry (" + s.ToString() +
                             "); the store reopens itself at the next write");
}

Status CheckpointStore::RocksWrite(bool sync, bool use_wal, rocksdb::WriteBatch* batch, std::string_view what) {
  if (write_faulted_.load()) return WriteFaultStatus(what);
  rocksdb::WriteOptions write_options;
  write_options.sync = sync;
  write_options.disableWAL = !use_wal;
  return NoteRocksError(db_->Write(write_options, batch), what);
}

Status CheckpointStore::FlushSnapshots(std::string_view what) {
  if (write_faulted_.load()) return WriteFaultStatus(what);
  return NoteRocksError(db_->Flush(rocksdb::FlushOptions(), handles_[kSnapshots]), std::string(what) + ": flush");
}

Status CheckpointStore::CheckOrWriteSchemaVersion(bool fresh) {
  const std::string what = "checkpoint store '" + path_ + "': meta schema_version";
  std::string value;
  Status st = ReadValue(kMeta, internal::kSchemaVersionKey, what, &value);
  if (st.ok()) {
    uint32_t version = 0;
    TRIB_RETURN_IF_ERROR(internal::DecodeSchemaVersion(value, what, &version));
    if (version != kSchemaVersion) {
      return Status::FailedPrecondition(what + ": the store has schema version " + std::to_string(version) +
                                        ", this build reads version " + std::to_string(kSchemaVersion) +
                                        (version > kSchemaVersion ? " (written by a newer tributary)" : ""));
    }
    return Status::OK();
  }
  if (!st.IsNotFound()) return st;
  // No version yet: a new store, or one that crashed between creation and this write. Anything
  // else without a version is not ours to interpret.
  if (!fresh) {
    for (int cf = 0; cf < kNumCfs; ++cf) {
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handles_[cf]));
      it->SeekToFirst();
      TRIB_RETURN_IF_ERROR(FromRocksStatus(it->status(), what));
      if (it->Valid()) {
        return Status::FailedPrecondition(what + ": missing although column family '" + kCfNames[cf] +
                                          "' holds data; not a tributary store or a damaged one");
      }
    }
  }
  rocksdb::WriteBatch batch;
  TRIB_RETURN_IF_ERROR(FromRocksStatus(batch.Put(handles_[kMeta], std::string(internal::kSchemaVersionKey),
                                                 internal::EncodeSchemaVersion(kSchemaVersion)),
                                       what));
  return Write(&batch, what);
}

// ---------------------------------------------------------------------------------------------
// Helpers

Status CheckpointStore::ReadValue(Cf cf, std::string_view key, std::string_view what, std::string* value) {
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), handles_[cf], rocksdb::Slice(key.data(), key.size()), value);
  if (s.IsNotFound()) return Status::NotFound(std::string(what) + ": not found");
  return FromRocksStatus(s, what);
}

Status CheckpointStore::CheckWritable(uint64_t bytes) const {
  return CheckWritableAt(path_, options_.reserve_bytes, bytes, "checkpoint store '" + path_ + "'");
}

Status CheckpointStore::Write(rocksdb::WriteBatch* batch, std::string_view what) {
  TRIB_RETURN_IF_ERROR(CheckWritable(batch->GetDataSize()).WithContext(std::string(what)));
  return RocksWrite(options_.sync_writes, /*use_wal=*/true, batch, what);
}

// ---------------------------------------------------------------------------------------------
// Jobs

Result<JobRecord> CheckpointStore::ReadJob(std::string_view job_id) {
  TRIB_RETURN_IF_ERROR(internal::ValidateId(job_id, "job id"));
  const std::string what = internal::JobWhat(job_id);
  std::string value;
  TRIB_RETURN_IF_ERROR(ReadValue(kJobs, internal::JobKey(job_id), what, &value));
  JobRecord job;
  TRIB_RETURN_IF_ERROR(internal::DecodeJob(value, what, &job));
  if (job.job_id != job_id) return Status::Corruption(what + ": record names job '" + job.job_id + "'");
  return job;
}

Result<JobRecord> CheckpointStore::GetJob(std::string_view job_id) {
  std::shared_lock<std::shared_mutex> db_lock;
  TRIB_RETURN_IF_ERROR(HoldDb(&db_lock));
  return ReadJob(job_id);
}

Status CheckpointStore::CheckNewJobLocked(const JobRecord& job, rocksdb::WriteBatch* batch) {
  TRIB_RETURN_IF_ERROR(internal::ValidateId(job.job_id, "job id"));
  const std::string what = internal::JobWhat(job.job_id);
  if (!job.submit_token.empty()) TRIB_RETURN_IF_ERROR(internal::ValidateId(job.submit_token, what + ": submit token"));
  if (job.current_round != 0) {
    return Status::InvalidArgument(what + ": a new job must have current_round 0, got " +
                                   std::to_string(job.current_round));
  }
  std::string value;
  Status st = ReadValue(kJobs, internal::JobKey(job.job_id), what, &value);
  if (st.ok()) return Status::AlreadyExists(what + ": already exists");
  if (!st.IsNotFound()) return st;

  if (!job.submit_token.empty()) {
    const std::string token_key = internal::TokenKey(job.submit_token);
    st = ReadValue(kMeta, token_key, what + ": submit token index", &value);
    if (st.ok()) {
      std::string owner;
      TRIB_RETURN_IF_ERROR(internal::DecodeTokenIndex(value, what + ": submit token index", &owner));
      return Status::AlreadyExists(what + ": submit token already used by job '" + owner + "'");
    }
    if (!st.IsNotFound()) return st;
    TRIB_RETURN_IF_ERROR(
        FromRocksStatus(batch->Put(handles_[kMeta], token_key, internal::EncodeTokenIndex(job.job_id)), what));
  }
  return FromRocksStatus(batch->Put(handles_[kJobs], internal::JobKey(job.job_id), internal::EncodeJob(job)), what);
}

Status CheckpointStore::PutJob(const JobRecord& job) {
  TRIB_RETURN_IF_ERROR(RecoverFromWriteFault());
  std::shared_lock<std::shared_mutex> db_lock;
  TRIB_RETURN_IF_ERROR(HoldDb(&db_lock));
  std::lock_guard<std::mutex> lock(write_mu_);
  rocksdb::WriteBatch batch;
  TRIB_RETURN_IF_ERROR(CheckNewJobLocked(job, &batch));
  return Write(&batch, internal::JobWhat(job.job_id));
}

void CheckpointStore::SetBeforeCreateJobCommitHookForTesting(std::function<Status()> hook) {
  std::lock_guard<std::mutex> lock(write_mu_);
  before_create_job_commit_hook_ = std::move(hook);
}

Result<std::vector<JobRecord>> CheckpointStore::ListJobs() {
  std::shared_lock<std::shared_mutex> db_lock;
  TRIB_RETURN_IF_ERROR(HoldDb(&db_lock));
  std::vector<JobRecord> jobs;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handles_[kJobs]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const std::string what = internal::JobWhat(it->key().ToStringView());
    JobRecord job;
    TRIB_RETURN_IF_ERROR(internal::DecodeJob(it->value().ToStringView(), what, &job));
    jobs.push_back(std::move(job));
  }
  TRIB_RETURN_IF_ERROR(FromRocksStatus(it->status(), "checkpoint jobs: listing"));
  return jobs;
}

Result<JobRecord> CheckpointStore::FindJobBySubmitToken(std::string_view submit_token) {
  std::shared_lock<std::shared_mutex> db_lock;
  TRIB_RETURN_IF_ERROR(HoldDb(&db_lock));
  TRIB_RETURN_IF_ERROR(internal::ValidateId(submit_token, "submit token"));
  const std::string what = "checkpoint meta: submit token index";
  std::string value;
  Status st = ReadValue(kMeta, internal::TokenKey(submit_token), what, &value);
  if (st.IsNotFound()) return Status::NotFound("checkpoint jobs: no job was submitted with this submit token");
  TRIB_RETURN_IF_ERROR(st);
  std::string job_id;
  TRIB_RETURN_IF_ERROR(internal::DecodeTokenIndex(value, what, &job_id));
  Result<JobRecord> job = ReadJob(job_id);
  if (job.status().IsNotFound()) {
    return Status::Corruption(what + ": names job '" + job_id + "', which does not exist");
  }
  return job;
}

Status CheckpointStore::UpdateJobState(std::string_view job_id, JobState state, std::string_view failure_reason,
                                       int64_t updated_unix_ms) {
  TRIB_RETURN_IF_ERROR(RecoverFromWriteFault());
  std::shared_lock<std::shared_mutex> db_lock;
  TRIB_RETURN_IF_ERROR(HoldDb(&db_lock));
  std::lock_guard<std::mutex> lock(write_mu_);
  TRIB_ASSIGN_OR_RETURN(JobRecord job, ReadJob(job_id));
  const std::string what = internal::JobWhat(job_id);
  if (IsFinished(job.state)) {
    if (job.state == state && job.failure_reason == failure_reason) return Status::OK();  // a retry
    return Status::FailedPrecondition(what + ": is " + JobStateName(job.state) + ", cannot change to " +
                                      JobStateName(state));
  }
  job.state = state;
  job.failure_reason = std::string(failure_reason);
  job.updated_unix_ms = updated_unix_ms;
  rocksdb::WriteBatch batch;
  TRIB_RETURN_IF_ERROR(
      FromRocksStatus(batch.Put(handles_[kJobs], internal::JobKey(job_id), internal::EncodeJob(job)), what));
  return Write(&batch, what);
}

// ---------------------------------------------------------------------------------------------
// Updates

Result<WriteOutcome> CheckpointStore::AcceptUpdate(const UpdateRecord& update) {
  TRIB_RETURN_IF_ERROR(internal::ValidateId(update.job_id, "update: job id"));
  TRIB_RETURN_IF_ERROR(internal::ValidateId(update.worker_id, "update: worker id"));
  const std::string what = internal::UpdateWhat(update.job_id, update.round, update.worker_id);
  const std::string key = internal::UpdateKey(update.job_id, update.round, update.worker_id);
  TRIB_RETURN_IF_ERROR(RecoverFromWriteFault());
  std::shared_lock<std::shared_mutex> db_lock;
  TRIB_RETURN_IF_ERROR(HoldDb(&db_lock));
  std::lock_guard<std::mutex> lock(write_mu_);
  std::string value;
  Status st = ReadValue(kUpdates, key, what, &value);
  if (st.ok()) {
    UpdateRecord stored;
    TRIB_RETURN_IF_ERROR(internal::DecodeUpdate(value, what, &stored));  // report a damaged original
    return WriteOutcome::kAlreadyPresent;
  }
  if (!st.IsNotFound()) return st;

  TRIB_ASSIGN_OR_RETURN(JobRecord job, ReadJob(update.job_id));
  if (IsFinished(job.state)) return Status::FailedPrecondition(what + ": job is " + JobStateName(job.state));
  if (update.round <= job.current_round) {
    return Status::FailedPrecondition(what + ": round is already committed (job's current round is " +
                                      std::to_string(job.current_round) + ")");
  }
  rocksdb::WriteBatch batch;
  TRIB_RETURN_IF_ERROR(FromRocksStatus(batch.Put(handles_[kUpdates], key, internal::EncodeUpdate(update)), what));
  TRIB_RETURN_IF_ERROR(Write(&batch, what));
  return WriteOutcome::kWritten;
}

Result<std::vector<UpdateRecord>> CheckpointStore::ListUpdates(std::string_view job_id, uint32_t round) {
  std::shared_lock<std::shared_mutex> db_lock;
  TRIB_RETURN_IF_ERROR(HoldDb(&db_lock));
  TRIB_RETURN_IF_ERROR(internal::ValidateId(job_id, "job id"));
  const std::string prefix = internal::UpdatePrefix(job_id, round);
  std::vector<UpdateRecord> updates;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handles_[kUpdates]));
  for (it->Seek(prefix); it->Valid() && StartsWith(it->key(), prefix); it->Next()) {
    std::string_view worker_id = it->key().ToStringView().substr(prefix.size());
    const std::string what = internal::UpdateWhat(job_id, round, worker_id);
    UpdateRecord update;
    TRIB_RETURN_IF_ERROR(internal::DecodeUpdate(it->value().ToStringView(), what, &update));
    if (update.job_id != job_id || update.round != round || update.worker_id != worker_id) {
      return Status::Corruption(what + ": record names job '" + update.job_id + "' round " +
                                std::to_string(update.round) + " worker '" + update.worker_id + "'");
    }
    updates.push_back(std::move(update));
  }
  TRIB_RETURN_IF_ERROR(FromRocksStatus(it->status(), internal::JobWhat(job_id) + ": listing updates"));
  return updates;
}

Status CheckpointStore::PruneUpdates(std::string_view job_id, uint32_t before_round) {
  TRIB_RETURN_IF_ERROR(RecoverFromWriteFault());
  std::shared_lock<std::shared_mutex> db_lock;
  TRIB_RETURN_IF_ERROR(HoldDb(&db_lock));
  TRIB_RETURN_IF_ERROR(internal::ValidateId(job_id, "job id"));
  const std::string what = internal::JobWhat(job_id) + ": pruning updates before round " + std::to_string(before_round);
  rocksdb::WriteBatch batch;
  TRIB_RETURN_IF_ERROR(FromRocksStatus(batch.DeleteRange(handles_[kUpdates], internal::UpdatePrefix(job_id, 0),
                                                         internal::UpdatePrefix(job_id, before_round)),
                                       what));
  return Write(&batch, what);
}

// ---------------------------------------------------------------------------------------------
// Rounds

Result<WriteOutcome> CheckpointStore::CommitRound(const RoundRecord& round, const JobRecord& job) {
  TRIB_RETURN_IF_ERROR(internal::ValidateId(round.job_id, "round: job id"));
  const std::string what = internal::RoundWhat(round.job_id, round.round);
  if (job.job_id != round.job_id) {
    return Status::InvalidArgument(what + ": job record is for job '" + job.job_id + "'");
  }
  if (round.round == 0) return Status::InvalidArgument(what + ": rounds are numbered from 1");
  for (const auto& p : round.participants) {
    TRIB_RETURN_IF_ERROR(internal::ValidateId(p.worker_id, what + ": participant worker id"));
  }
  const std::string key = internal::RoundKey(round.job_id, round.round);
  const std::string encoded = internal::EncodeRound(round);

  TRIB_RETURN_IF_ERROR(RecoverFromWriteFault());
  std::shared_lock<std::shared_mutex> db_lock;
  TRIB_RETURN_IF_ERROR(HoldDb(&db_lock));
  std::lock_guard<std::mutex> lock(write_mu_);
  std::string value;
  Status st = ReadValue(kRounds, key, what, &value);
  if (st.ok()) {
    RoundRecord stored;
    TRIB_RETURN_IF_ERROR(internal::DecodeRound(value, what, &stored));
    RoundRecord a = stored;
    RoundRecord b = round;
    a.committed_unix_ms = 0;
    b.committed_unix_ms = 0;
    if (internal::EncodeRound(a) == internal::EncodeRound(b)) return WriteOutcome::kAlreadyPresent;
    return Status::AlreadyExists(what + ": already committed with different contents (stored weights hash " +
                                 std::to_string(stored.weights_hash) + ", new " + std::to_string(round.weights_hash) +
                                 ")");
  }
  if (!st.IsNotFound()) return st;

  TRIB_ASSIGN_OR_RETURN(JobRecord stored_job, ReadJob(round.job_id));
  if (IsFinished(stored_job.state)) {
    return Status::FailedPrecondition(what + ": job is " + JobStateName(stored_job.state));
  }
  if (round.round != stored_job.current_round + 1) {
    return Status::FailedPrecondition(what + ": out of order, the next round to commit is " +
                                      std::to_string(stored_job.current_round + 1));
  }
  stored_job.state = job.state;
  stored_job.failure_reason = job.failure_reason;
  stored_job.updated_unix_ms = job.updated_unix_ms;
  stored_job.current_round = round.round;

  // One batch: after a crash the round and the job's current round are both there or both absent.
  rocksdb::WriteBatch batch;
  TRIB_RETURN_IF_ERROR(FromRocksStatus(batch.Put(handles_[kRounds], key, encoded), what));
  TRIB_RETURN_IF_ERROR(FromRocksStatus(
      batch.Put(handles_[kJobs], internal::JobKey(round.job_id), internal::EncodeJob(stored_job)), what));
  TRIB_RETURN_IF_ERROR(Write(&batch, what));
  return WriteOutcome::kWritten;
}

Result<RoundRecord> CheckpointStore::GetRound(std::string_view job_id, uint32_t round) {
  std::shared_lock<std::shared_mutex> db_lock;
  TRIB_RETURN_IF_ERROR(HoldDb(&db_lock));
  TRIB_RETURN_IF_ERROR(internal::ValidateId(job_id, "job id"));
  const std::string what = internal::RoundWhat(job_id, round);
  std::string value;
  TRIB_RETURN_IF_ERROR(ReadValue(kRounds, internal::RoundKey(job_id, round), what, &value));
  RoundRecord record;
  TRIB_RETURN_IF_ERROR(internal::DecodeRound(value, what, &record));
  if (record.job_id != job_id || record.round != round) {
    return Status::Corruption(what + ": record names job '" + record.job_id + "' round " +
                              std::to_string(record.round));
  }
  return record;
}

Result<std::vector<RoundRecord>> CheckpointStore::ListRounds(std::string_view job_id, uint32_t from_round,
                                                             uint32_t to_round) {
  std::shared_lock<std::shared_mutex> db_lock;
  TRIB_RETURN_IF_ERROR(HoldDb(&db_lock));
  TRIB_RETURN_IF_ERROR(internal::ValidateId(job_id, "job id"));
  const std::string prefix = internal::RoundPrefix(job_id);
  std::vector<RoundRecord> rounds;
  if (from_round > to_round) return rounds;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handles_[kRounds]));
  for (it->Seek(internal::RoundKey(job_id, from_round)); it->Valid() && StartsWith(it->key(), prefix); it->Next()) {
    std::string_view key = it->key().ToStringView();
    if (key.size() != prefix.size() + 4) {
      return Status::Corruption(internal::JobWhat(job_id) + ": malformed round key of " + std::to_string(key.size()) +
                                " bytes");
    }
    uint32_t r = internal::ReadBigEndian32(key, prefix.size());
    if (r > to_round) break;
    const std::string what = internal::RoundWhat(job_id, r);
    RoundRecord record;
    TRIB_RETURN_IF_ERROR(internal::DecodeRound(it->value().ToStringView(), what, &record));
    if (record.job_id != job_id || record.round != r) {
      return Status::Corruption(what + ": record names job '" + record.job_id + "' round " +
                                std::to_string(record.round));
    }
    rounds.push_back(std::move(record));
  }
  TRIB_RETURN_IF_ERROR(FromRocksStatus(it->status(), internal::JobWhat(job_id) + ": listing rounds"));
  return rounds;
}

Result<uint32_t> CheckpointStore::LastCommittedRound(std::string_view job_id) {
  std::shared_lock<std::shared_mutex> db_lock;
  TRIB_RETURN_IF_ERROR(HoldDb(&db_lock));
  TRIB_ASSIGN_OR_RETURN(JobRecord job, ReadJob(job_id));
  const std::string prefix = internal::RoundPrefix(job_id);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handles_[kRounds]));
  it->SeekForPrev(internal::RoundKey(job_id, UINT32_MAX));
  uint32_t last = 0;
  if (it->Valid() && StartsWith(it->key(), prefix) && it->key().size() == prefix.size() + 4) {
    last = internal::ReadBigEndian32(it->key().ToStringView(), prefix.size());
  }
  TRIB_RETURN_IF_ERROR(FromRocksStatus(it->status(), internal::JobWhat(job_id) + ": finding the last round"));
  // Both are written in one batch by CommitRound; a difference means the store was damaged.
  if (last != job.current_round) {
    return Status::Corruption(internal::JobWhat(job_id) + ": current round " + std::to_string(job.current_round) +
                              " but the last stored round is " + std::to_string(last));
  }
  return last;
}

// ---------------------------------------------------------------------------------------------
// Workers

Status CheckpointStore::PutWorker(const WorkerRecord& worker) {
  return PutWorkers({worker});
}

Status CheckpointStore::PutWorkers(const std::vector<WorkerRecord>& workers) {
  if (workers.empty()) return Status::OK();
  TRIB_RETURN_IF_ERROR(RecoverFromWriteFault());
  std::shared_lock<std::shared_mutex> db_lock;
  TRIB_RETURN_IF_ERROR(HoldDb(&db_lock));
  rocksdb::WriteBatch batch;
  for (const WorkerRecord& worker : workers) {
    TRIB_RETURN_IF_ERROR(internal::ValidateId(worker.worker_id, "worker id"));
    TRIB_RETURN_IF_ERROR(FromRocksStatus(
        batch.Put(handles_[kWorkers], internal::WorkerKey(worker.worker_id), internal::EncodeWorker(worker)),
        internal::WorkerWhat(worker.worker_id)));
  }
  const std::string what = workers.size() == 1 ? internal::WorkerWhat(workers[0].worker_id)
                                               : std::to_string(workers.size()) + " worker records";
  return Write(&batch, what);
}

Result<WorkerRecord> CheckpointStore::GetWorker(std::string_view worker_id) {
  std::shared_lock<std::shared_mutex> db_lock;
  TRIB_RETURN_IF_ERROR(HoldDb(&db_lock));
  TRIB_RETURN_IF_ERROR(internal::ValidateId(worker_id, "worker id"));
  const std::string what = internal::WorkerWhat(worker_id);
  std::string value;
  TRIB_RETURN_IF_ERROR(ReadValue(kWorkers, internal::WorkerKey(worker_id), what, &value));
  WorkerRecord worker;
  TRIB_RETURN_IF_ERROR(internal::DecodeWorker(value, what, &worker));
  if (worker.worker_id != worker_id)
    return Status::Corruption(what + ": record names worker '" + worker.worker_id + "'");
  return worker;
}

Result<std::vector<WorkerRecord>> CheckpointStore::ListWorkers() {
  std::shared_lock<std::shared_mutex> db_lock;
  TRIB_RETURN_IF_ERROR(HoldDb(&db_lock));
  std::vector<WorkerRecord> workers;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handles_[kWorkers]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const std::string what = internal::WorkerWhat(it->key().ToStringView());
    WorkerRecord worker;
    TRIB_RETURN_IF_ERROR(internal::DecodeWorker(it->value().ToStringView(), what, &worker));
    workers.push_back(std::move(worker));
  }
  TRIB_RETURN_IF_ERROR(FromRocksStatus(it->status(), "checkpoint workers: listing"));
  return workers;
}

// ---------------------------------------------------------------------------------------------
// Measured links (meta column family: the matrix is small and read once per job start)

Status CheckpointStore::PutJobLinks(const JobLinksRecord& links) {
  TRIB_RETURN_IF_ERROR(RecoverFromWriteFault());
  std::shared_lock<std::shared_mutex> db_lock;
  TRIB_RETURN_IF_ERROR(HoldDb(&db_lock));
  TRIB_RETURN_IF_ERROR(internal::ValidateId(links.job_id, "job id"));
  const std::string what = internal::JobLinksWhat(links.job_id);
  for (const std::string& member : links.members) TRIB_RETURN_IF_ERROR(internal::ValidateId(member, what + ": member"));
  for (const auto* list : {&links.pairs, &links.uplinks}) {
    for (const LinkRecord& link : *list) {
      TRIB_RETURN_IF_ERROR(internal::ValidateId(link.a, what + ": link worker"));
      if (list == &links.pairs) TRIB_RETURN_IF_ERROR(internal::ValidateId(link.b, what + ": link worker"));
    }
  }
  TRIB_RETURN_IF_ERROR(ReadJob(links.job_id).status());
  rocksdb::WriteBatch batch;
  TRIB_RETURN_IF_ERROR(FromRocksStatus(
      batch.Put(handles_[kMeta], internal::JobLinksKey(links.job_id), internal::EncodeJobLinks(links)), what));
  return Write(&batch, what);
}

Result<JobLinksRecord> CheckpointStore::GetJobLinks(std::string_view job_id) {
  std::shared_lock<std::shared_mutex> db_lock;
  TRIB_RETURN_IF_ERROR(HoldDb(&db_lock));
  TRIB_RETURN_IF_ERROR(internal::ValidateId(job_id, "job id"));
  const std::string what = internal::JobLinksWhat(job_id);
  std::string value;
  TRIB_RETURN_IF_ERROR(ReadValue(kMeta, internal::JobLinksKey(job_id), what, &value));
  JobLinksRecord links;
  TRIB_RETURN_IF_ERROR(internal::DecodeJobLinks(value, what, &links));
  if (links.job_id != job_id) return Status::Corruption(what + ": record names job '" + links.job_id + "'");
  return links;
}

// ---------------------------------------------------------------------------------------------
// Backups

Status CheckpointStore::CreateCheckpoint(const std::string& dir) {
  const std::string what = "checkpoint store '" + path_ + "': backup to '" + dir + "'";
  std::error_code ec;
  if (std::filesystem::exists(dir, ec)) return Status::AlreadyExists(what + ": the directory already exists");
  TRIB_RETURN_IF_ERROR(RecoverFromWriteFault());
  std::shared_lock<std::shared_mutex> db_lock;
  TRIB_RETURN_IF_ERROR(HoldDb(&db_lock));
  // A checkpoint flushes the memtables, so it counts as a write.
  if (write_faulted_.load()) return WriteFaultStatus("backup to '" + dir + "'");
  rocksdb::Checkpoint* raw = nullptr;
  TRIB_RETURN_IF_ERROR(FromRocksStatus(rocksdb::Checkpoint::Create(db_, &raw), what));
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  return FromRocksStatus(checkpoint->CreateCheckpoint(dir), what);
}

}  // namespace tributary::checkpoint
