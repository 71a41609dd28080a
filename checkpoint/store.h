// CheckpointStore: the coordinator's durable log in RocksDB (jobs, accepted updates, committed rounds,
// model snapshots, workers).
//
// The coordinator writes every accepted client update and every committed round here BEFORE it
// broadcasts anything, so a kill -9 at any moment loses nothing that a peer could have seen; the
// model of any round is rebuilt from the latest snapshot at or before it plus the logged rounds after
// it (docs/architecture.md, "One federated round"; Ferret aggregates are KBs per round).
//
// Recovery semantics (what a caller may rely on after a crash of the process or the machine):
//  * Every write that returned OK is durable: it went through the write-ahead log with
//    WriteOptions.sync = true (StoreOptions::sync_writes, on by default), and reopening the store
//    replays the log. A write that did not return (the process died inside it) is either fully present
//    or fully absent.
//  * A round is committed atomically: the round record and the job's new current round are one
//    WriteBatch, so after reopening either both are there or neither is. Rounds of a job are
//    contiguous (1, 2, ..., LastCommittedRound) and JobRecord::current_round equals the last one.
//  * A snapshot becomes visible only when its manifest is written (synced WAL), after all of its
//    chunks were flushed to blob files (the chunks skip the WAL so the model is not written three
//    times); a crash in the middle leaves at most unreferenced chunks that LoadSnapshot never reads
//    and the next PutSnapshot of that round replaces.
//  * A job made by CreateJobWithSnapshot appears together with its round-0 snapshot (job record,
//    token index and manifest are one WriteBatch), never without it.
//  * Every stored value carries a format version and a CRC32C; a value that fails it is reported
//    as a Corruption status naming the record ("checkpoint rounds: job 'j1' round 7: checksum
//    mismatch"), never returned as data.
//  * The store refuses to open a database written with a different (newer or unknown) schema
//    version instead of guessing.
//  * Storage faults: before every write the store checks its file system (statvfs). On a read-only
//    file system, or with less free space than StoreOptions::reserve_bytes plus the write, the write
//    is refused with Unavailable ("... not writable: ...") and nothing is written; once space is
//    freed or the file system is writable again, writes succeed with no action by the caller. The
//    guard exists because RocksDB 7.8 (Debian 12) aborts the process on the write after a failed WAL
//    append once it has recovered by itself (an assertion fixed upstream in 9.x).
//  * I/O errors the guard cannot foresee (EIO from a failing disk, an ENOSPC race): the write that
//    meets one returns Unavailable ("checkpoint store '<dir>': <record>: write failed with an I/O
//    error, retry (...)"); it may or may not be stored, so a retry may find it (kAlreadyPresent,
//    or an identical round). No later write reaches that RocksDB instance (RocksDB's own recovery is
//    off, so it refuses them itself; 7.8 would abort on one after recovering): the next write
//    method closes the DB and opens it again, which replays the WAL
//    and starts a new one, then writes; while that fails (the disk still fails) writes are refused
//    with Unavailable naming the error and the next one tries again. Reads keep working on the old
//    instance until the reopen; after a failed reopen they are refused with Unavailable too, never
//    crash. Nothing acknowledged is lost, and a round commit is still all or nothing. CheckWritable
//    stays a file system check: a failing disk shows at the next write, not before.
//
// Thread safety: all methods may be called from several threads; writes that check before they
// write (PutJob, CreateJobWithSnapshot, AcceptUpdate, CommitRound, UpdateJobState, PutSnapshot's checks and manifest)
// are serialised inside the store; snapshot chunks are written without blocking the others. A reopen after an
// I/O error waits for the methods running on the old instance. One process at a time: RocksDB's lock file makes a
// second Open fail with an IOError.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "base/tensor_table.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class Env;
class Status;
class FileSystem;
class WriteBatch;
}  // namespace rocksdb

namespace tributary::checkpoint {

// Version of the key layout and value encodings; stored in the `meta` column family.
inline constexpr uint32_t kSchemaVersion = 1;

enum class JobState : uint8_t {
  kPending = 0,
  kRunning = 1,
  kCompleted = 2,  // FINISHED:COMPLETED
  kFailed = 3,     // FINISHED:FAILED
  kStopped = 4,    // FINISHED:STOPPED
};
// "PENDING", "RUNNING", "FINISHED:COMPLETED", "FINISHED:FAILED", "FINISHED:STOPPED".
const char* JobStateName(JobState state);
// True for the three FINISHED states (terminal: no further state change or round commit).
bool IsFinished(JobState state);

// Identifiers (job ids, worker ids, submit tokens) are non-empty byte strings of at most
// kMaxIdBytes without NUL bytes. Rounds are numbered from 1; round 0 means "before any round"
// (the initial model) and is only valid for snapshots.
inline constexpr size_t kMaxIdBytes = 256;

struct JobRecord {
  std::string job_id;
  std::string spec_yaml;     // the job spec as submitted
  std::string submit_token;  // client-chosen idempotency token; empty = none (unique when set)
  JobState state = JobState::kPending;
  int64_t created_unix_ms = 0;
  int64_t updated_unix_ms = 0;
  uint32_t current_round = 0;  // last committed round; 0 = none yet (maintained by CommitRound)
  std::string failure_reason;  // set with kFailed / kStopped
};

// One accepted client update of a round (logged before the round is aggregated).
struct UpdateRecord {
  std::string job_id;
  uint32_t round = 0;
  std::string worker_id;
  uint64_t num_samples = 0;
  double train_loss = 0.0;
  std::string payload;  // opaque bytes (the method's upload payload, federation/method.h)
  int64_t received_unix_ms = 0;
  uint64_t island_bytes = 0;  // cluster mode: the leader's island's collective bytes; before format 3: 0
};

struct RoundParticipant {
  std::string worker_id;
  double weight = 0.0;  // aggregation weight
  // What the round's aggregation learned about this client (federation/aggregator.h); rounds stored
  // before these existed read as NaN, 1 and false.
  double anomaly_score = std::numeric_limits<double>::quiet_NaN();  // distance to the aggregate / median
  double clip_scale = 1.0;                                          // 1: not clipped
  bool excluded = false;                                            // left out by the rule (Krum)
};

struct RoundMetrics {
  double heldout_loss = 0.0;  // NaN when not evaluated this round
  uint64_t bytes_up = 0;
  uint64_t bytes_down = 0;
  uint64_t island_bytes = 0;  // cluster mode: inside the islands; rounds stored before format 3 read 0
};

// One committed round: everything a replica needs to apply it (the aggregate) and to check itself.
struct RoundRecord {
  std::string job_id;
  uint32_t round = 0;
  uint64_t job_seed = 0;
  std::string seed_mode;  // e.g. "per_round", "fixed_pool"
  std::vector<RoundParticipant> participants;
  std::string aggregate;  // opaque bytes (the method's aggregate, federation/method.h)
  RoundMetrics metrics;
  uint64_t weights_hash = 0;  // hash of the trainable state after applying this round (every replica checks it)
  int64_t committed_unix_ms = 0;
};

// A snapshot's manifest (the model bytes themselves are stored in chunks and read by LoadSnapshot).
struct SnapshotRecord {
  std::string job_id;
  uint32_t round = 0;                // model state after committing this round (0 = initial model)
  int64_t total_elems = 0;           // arena length in floats, padding included
  uint64_t chunk_bytes = 0;          // size of every chunk but the last
  std::vector<uint32_t> chunk_crcs;  // CRC32C of each chunk's bytes; its size is the chunk count
  std::vector<TensorEntry> tensors;  // the arena's tensor table (names, shapes, offsets)
  uint64_t weights_hash = 0;         // caller's hash of the arena
  int64_t created_unix_ms = 0;
};

struct WorkerRecord {
  std::string worker_id;
  std::string public_key;    // opaque bytes
  std::string capabilities;  // opaque bytes
  int64_t last_seen_unix_ms = 0;
};

// One measured link of a job (docs/placement.md, "Measured links"): between workers a and b (a < b), or
// from worker a to the coordinator (b empty: its uplink).
struct LinkRecord {
  std::string a;
  std::string b;
  double mbps = 0;    // TCP goodput
  double rtt_ms = 0;  // round trip
  int64_t measured_unix_ms = 0;
};

// A job's measured link matrix, replaced as a whole after every probe campaign.
struct JobLinksRecord {
  std::string job_id;
  uint64_t campaign = 0;  // the campaign that wrote it (1, 2, ...)
  std::string reason;     // why that campaign probed
  int64_t updated_unix_ms = 0;
  std::vector<std::string> members;  // the eligible workers it was measured for (ascending)
  std::vector<LinkRecord> pairs;     // ascending (a, b)
  std::vector<LinkRecord> uplinks;   // ascending a; b empty
};

struct StoreOptions {
  bool create_if_missing = true;
  // WriteOptions.sync on every write (the durability guarantee above). Turn off only for throwaway
  // stores (benchmarks); a crash may then lose acknowledged writes.
  bool sync_writes = true;
  // Snapshots are split into chunks of this many bytes so no single value is huge.
  uint64_t snapshot_chunk_bytes = 8ull << 20;
  // Integrated BlobDB for the snapshots column family: values of at least this size go to blob files.
  uint64_t snapshot_min_blob_size = 64ull << 10;
  bool snapshot_blob_lz4 = false;  // LZ4 for blob files (fp32 weights barely compress; off by default)
  // Free space the store leaves on its file system: a write that would leave less is refused
  // (Unavailable). Covers memtable flushes and compactions that follow the writes it admits.
  uint64_t reserve_bytes = 64ull << 20;
  // Tests only: RocksDB does its file I/O through this file system instead of the default one (to
  // inject I/O errors). Null: the default.
  std::shared_ptr<rocksdb::FileSystem> file_system_for_testing;
};

// What a write that may be a retry did.
enum class WriteOutcome {
  kWritten,         // newly stored
  kAlreadyPresent,  // an identical (or, for updates, any) record was already stored: nothing changed
};

class CheckpointStore {
 public:
  // Opens (and with create_if_missing creates) the store at `path`, with the column families jobs,
  // rounds, updates, snapshots, workers, meta. A store written with another schema version is
  // refused (FailedPrecondition naming both versions).
  static Result<std::unique_ptr<CheckpointStore>> Open(const std::string& path, const StoreOptions& options = {});
  ~CheckpointStore();
  CheckpointStore(const CheckpointStore&) = delete;
  CheckpointStore& operator=(const CheckpointStore&) = delete;

  const std::string& path() const { return path_; }

  // OK when a write of `bytes` may proceed: the file system is writable and keeps reserve_bytes free
  // after it. Otherwise Unavailable naming the path and why ("read-only file system", "12 MiB free,
  // the reserve is 64 MiB"). Every write method checks it first; callers use it for readiness.
  Status CheckWritable(uint64_t bytes = 0) const;

  // ---- jobs ----
  // Creates a job. AlreadyExists when the id exists or the submit token belongs to another job.
  // current_round must be 0.
  Status PutJob(const JobRecord& job);
  // Creates a job together with its round-0 snapshot (the initial model), so that no reader and no
  // recovery ever sees the job without it. The snapshot's chunks are written (and flushed) first,
  // unreferenced; then the job record, its submit-token index entry and the snapshot manifest go in
  // ONE synced WriteBatch. A crash or error before that batch leaves no job, only unreferenced chunks
  // that a retry replaces. Errors as PutJob (AlreadyExists for a used id or token: nothing written)
  // and as PutSnapshot for the model arguments (`num_elems` must equal table.total_elems()).
  Status CreateJobWithSnapshot(const JobRecord& job, const float* data, int64_t num_elems, const TensorTable& table,
                               uint64_t weights_hash, int64_t created_unix_ms = 0);
  Result<JobRecord> GetJob(std::string_view job_id);
  // All jobs in job id order.
  Result<std::vector<JobRecord>> ListJobs();
  // NotFound when no job has this token.
  Result<JobRecord> FindJobBySubmitToken(std::string_view submit_token);
  // Changes state, failure reason and updated time. FailedPrecondition when the job is finished.
  Status UpdateJobState(std::string_view job_id, JobState state, std::string_view failure_reason,
                        int64_t updated_unix_ms);

  // ---- updates ----
  // Logs one client update. The job must exist and the round must not be committed yet. A second
  // update for the same (job, round, worker) is never stored: kAlreadyPresent, the first one wins.
  Result<WriteOutcome> AcceptUpdate(const UpdateRecord& update);
  // The round's updates in worker id order.
  Result<std::vector<UpdateRecord>> ListUpdates(std::string_view job_id, uint32_t round);
  // Deletes the logged updates of rounds < before_round (they are kept by default: every accepted
  // update stays in the log until pruned).
  Status PruneUpdates(std::string_view job_id, uint32_t before_round);

  // ---- rounds ----
  // Commits round.round, which must be the job's current_round + 1, in one synced WriteBatch with the
  // job's new state: state, failure reason and updated time are taken from `job` (so the last round
  // may finish the job), current_round becomes round.round; id, spec, token and created time stay.
  // Committing an already committed round again is kAlreadyPresent when the records are identical
  // (ignoring committed_unix_ms, so a retry with a new clock reading is fine), AlreadyExists if not.
  Result<WriteOutcome> CommitRound(const RoundRecord& round, const JobRecord& job);
  Result<RoundRecord> GetRound(std::string_view job_id, uint32_t round);
  // Committed rounds from..to (inclusive) in round order, for replay catch-up.
  Result<std::vector<RoundRecord>> ListRounds(std::string_view job_id, uint32_t from_round, uint32_t to_round);
  // 0 when no round is committed; NotFound when the job does not exist.
  Result<uint32_t> LastCommittedRound(std::string_view job_id);

  // ---- snapshots ----
  // Stores the model after `round` (0 = initial model; at most the job's current round).
  // `num_elems` must equal table.total_elems(). Snapshots are immutable: AlreadyExists if present
  // or being written by another thread.
  Status PutSnapshot(std::string_view job_id, uint32_t round, const float* data, int64_t num_elems,
                     const TensorTable& table, uint64_t weights_hash, int64_t created_unix_ms = 0);
  Result<SnapshotRecord> GetSnapshotInfo(std::string_view job_id, uint32_t round);
  // The snapshot's tensor table, rebuilt from its manifest (Corruption when the manifest is damaged).
  Result<std::shared_ptr<TensorTable>> SnapshotTable(std::string_view job_id, uint32_t round);
  // Loads the snapshot into `data` (host memory of layout.total_elems() floats). `layout` must match
  // the snapshot's table (InvalidArgument naming the first difference). Chunk checksums are verified:
  // Corruption names the chunk.
  Status LoadSnapshot(std::string_view job_id, uint32_t round, const TensorTable& layout, float* data);
  // The snapshot with the largest round <= `round`; NotFound when none.
  Result<SnapshotRecord> LatestSnapshotAtOrBefore(std::string_view job_id, uint32_t round);

  // ---- workers ----
  // Inserts or replaces the worker.
  Status PutWorker(const WorkerRecord& worker);
  // Inserts or replaces every worker in one write: all or none (the coordinator's registrations are
  // written in such batches, one synced write for many).
  Status PutWorkers(const std::vector<WorkerRecord>& workers);
  Result<WorkerRecord> GetWorker(std::string_view worker_id);
  // All workers in worker id order.
  Result<std::vector<WorkerRecord>> ListWorkers();

  // ---- measured links ----
  // Replaces the job's link matrix (one synced write). NotFound when the job does not exist;
  // InvalidArgument naming the worker for a bad id.
  Status PutJobLinks(const JobLinksRecord& links);
  // NotFound when the job has no stored matrix yet.
  Result<JobLinksRecord> GetJobLinks(std::string_view job_id);

  // ---- backup ----
  // A consistent, openable copy of the store in `dir` (RocksDB Checkpoint: hard links where possible).
  // `dir` must not exist.
  Status CreateCheckpoint(const std::string& dir);

  // ---- testing ----
  // Called by CreateJobWithSnapshot after the chunks are durable and before the job batch is written;
  // a non-OK status aborts the creation there (as a crash at that point would). Tests only.
  void SetBeforeCreateJobCommitHookForTesting(std::function<Status()> hook);

 private:
  // Column family indices into handles_.
  enum Cf : int { kJobs = 0, kRounds, kUpdates, kSnapshots, kWorkers, kMeta, kNumCfs };

  CheckpointStore() = default;
  // Opens db_ and the handles at path_ (Open, and the reopen after an I/O error: db_mu_ exclusive).
  Status OpenDb();
  // Closes db_ and destroys the handles (db_mu_ exclusive).
  void CloseDb();
  // Called by every write method before it takes any lock: when an earlier write failed with an I/O
  // error, closes and reopens the DB (RocksDB replays its WAL); Unavailable while that fails.
  Status RecoverFromWriteFault();
  // Takes db_mu_ shared for a reader or writer; Unavailable when the DB is closed (a failed reopen).
  Status HoldDb(std::shared_lock<std::shared_mutex>* lock) const;
  // Records the I/O error that stops writes (from RocksDB's listener too: never calls into RocksDB).
  void MarkWriteFault(const std::string& error);
  // Unavailable naming the I/O error that stopped writes.
  Status WriteFaultStatus(std::string_view what) const;
  // A RocksDB write's or flush's status: an I/O error marks the store and becomes Unavailable.
  Status NoteRocksError(const rocksdb::Status& s, std::string_view what);
  // The one place RocksDB is given a batch: refused once the store is marked.
  Status RocksWrite(bool sync, bool use_wal, rocksdb::WriteBatch* batch, std::string_view what);
  // Flushes the snapshots column family to blob/SST files (refused once the store is marked).
  Status FlushSnapshots(std::string_view what);
  Status CheckOrWriteSchemaVersion(bool fresh);
  // Reads one value; NotFound when absent (message names `what`).
  Status ReadValue(Cf cf, std::string_view key, std::string_view what, std::string* value);
  // Writes a batch with the store's sync setting.
  Status Write(rocksdb::WriteBatch* batch, std::string_view what);
  Result<JobRecord> ReadJob(std::string_view job_id);
  // PutJob's checks (id, token, current_round 0, id and token unused); with write_mu_ held. Adds the
  // job record and the token index entry to `batch`.
  Status CheckNewJobLocked(const JobRecord& job, rocksdb::WriteBatch* batch);
  // Checks the arguments of a snapshot of (job_id, round) and builds its manifest (no chunk CRCs).
  Status StartSnapshotManifest(std::string_view job_id, uint32_t round, const float* data, int64_t num_elems,
                               const TensorTable& table, uint64_t weights_hash, int64_t created_unix_ms,
                               SnapshotRecord* manifest);
  // Replaces any chunks of (manifest->job_id, manifest->round) with `data`, fills chunk_crcs and
  // flushes. The caller holds the snapshot's in-progress claim.
  Status WriteSnapshotChunks(const float* data, SnapshotRecord* manifest);
  // GetSnapshotInfo with db_mu_ held.
  Result<SnapshotRecord> GetSnapshotInfoLocked(std::string_view job_id, uint32_t round);

  std::string path_;
  StoreOptions options_;
  std::unique_ptr<rocksdb::Env> env_;  // over options_.file_system_for_testing; outlives db_
  // Lock order: db_mu_, then write_mu_, then fault_mu_. db_mu_ is held shared by every method that uses
  // db_ and exclusively only by the reopen after an I/O error.
  mutable std::shared_mutex db_mu_;
  rocksdb::DB* db_ = nullptr;                                // guarded by db_mu_; null after a failed reopen
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;        // indexed by Cf; guarded by db_mu_
  std::vector<rocksdb::ColumnFamilyHandle*> extra_handles_;  // default and any unknown families
  std::mutex write_mu_;                                      // serialises check-then-write sequences
  mutable std::mutex fault_mu_;                              // guards write_fault_; never held into RocksDB
  std::atomic<bool> write_faulted_{false};                   // an I/O error stopped writes on this instance
  std::string write_fault_;                                  // that error
  // Manifest keys of snapshots whose chunks are being written (guarded by write_mu_, which is not
  // held while the chunks go out, so a large snapshot does not stall updates and commits).
  std::set<std::string> snapshots_in_progress_;
  std::function<Status()> before_create_job_commit_hook_;  // guarded by write_mu_
};

}  // namespace tributary::checkpoint
