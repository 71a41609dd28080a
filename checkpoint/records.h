// Key layout and value encoding of the checkpoint store (internal to checkpoint/ and its tests).
//
// Values: [format version u8][record kind u8][fields...][CRC32C u32 LE of everything before it].
// Fields are little-endian fixed-width integers, IEEE doubles by bit pattern, and byte strings as
// u32 length + bytes. The kind byte catches a value of one record type stored under another's key.
//
// Keys: ids are followed by a NUL (ids never contain one), integers are big-endian, so RocksDB's
// bytewise order is (job, round, worker) order.
//   jobs      : job_id
//   rounds    : job_id \0 round
//   updates   : job_id \0 round worker_id
//   snapshots : 'm' job_id \0 round               -> manifest
//               'c' job_id \0 round chunk_index   -> chunk
//   workers   : worker_id
//   meta      : "schema_version", "token/" submit_token -> job id,
//               "links/" job_id -> the job's measured link matrix
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"
#include "checkpoint/store.h"

namespace rocksdb {
class Status;
}  // namespace rocksdb

namespace tributary::checkpoint::internal {

// Value format versions: every record is written at kFormatVersion and read at any version from
// kOldestFormatVersion on. Version 2 added each round participant's aggregation report (anomaly score,
// clip scale, excluded); a version-1 round reads with those unknown. Version 3 added island_bytes to
// updates and rounds (cluster mode); older ones read 0.
inline constexpr uint8_t kFormatVersion = 3;
inline constexpr uint8_t kOldestFormatVersion = 1;

enum class RecordKind : uint8_t {
  kSchema = 1,
  kJob = 2,
  kUpdate = 3,
  kRound = 4,
  kSnapshotManifest = 5,
  kSnapshotChunk = 6,
  kWorker = 7,
  kTokenIndex = 8,
  kJobLinks = 9,
};

// CRC32C (Castagnoli). `crc` continues a previous call (0 to start). Uses the SSE4.2 instruction
// when the CPU has it; Crc32cPortable is the table version (same results; tests compare the two).
uint32_t Crc32c(const void* data, size_t size, uint32_t crc = 0);
uint32_t Crc32cPortable(const void* data, size_t size, uint32_t crc = 0);
bool Crc32cIsHardwareAccelerated();

// InvalidArgument naming `field` when `id` is empty, too long or contains a NUL.
Status ValidateId(std::string_view id, std::string_view field);

// Names of records for error messages: "checkpoint rounds: job 'j1' round 7".
std::string JobWhat(std::string_view job_id);
std::string RoundWhat(std::string_view job_id, uint32_t round);
std::string UpdateWhat(std::string_view job_id, uint32_t round, std::string_view worker_id);
std::string SnapshotWhat(std::string_view job_id, uint32_t round);
std::string ChunkWhat(std::string_view job_id, uint32_t round, uint32_t chunk);
std::string WorkerWhat(std::string_view worker_id);
std::string JobLinksWhat(std::string_view job_id);

// Maps a RocksDB status onto the project's codes, prefixed with `what`.
Status FromRocksStatus(const rocksdb::Status& status, std::string_view what);

// ---- keys ----
std::string JobKey(std::string_view job_id);
std::string RoundKey(std::string_view job_id, uint32_t round);
std::string RoundPrefix(std::string_view job_id);  // all rounds of a job
std::string UpdateKey(std::string_view job_id, uint32_t round, std::string_view worker_id);
std::string UpdatePrefix(std::string_view job_id, uint32_t round);  // all updates of a round
std::string SnapshotManifestKey(std::string_view job_id, uint32_t round);
std::string SnapshotManifestPrefix(std::string_view job_id);
std::string SnapshotChunkKey(std::string_view job_id, uint32_t round, uint32_t chunk);
std::string WorkerKey(std::string_view worker_id);
std::string TokenKey(std::string_view submit_token);
std::string JobLinksKey(std::string_view job_id);
inline constexpr std::string_view kSchemaVersionKey = "schema_version";

// Reads a big-endian u32 at `pos` of `key` (caller checks the length).
uint32_t ReadBigEndian32(std::string_view key, size_t pos);

// ---- values ----
// Decoders return Corruption naming `what` (e.g. "checkpoint rounds: job 'j' round 3").
std::string EncodeSchemaVersion(uint32_t version);
Status DecodeSchemaVersion(std::string_view value, std::string_view what, uint32_t* version);

std::string EncodeJob(const JobRecord& job);
Status DecodeJob(std::string_view value, std::string_view what, JobRecord* job);

std::string EncodeUpdate(const UpdateRecord& update);
Status DecodeUpdate(std::string_view value, std::string_view what, UpdateRecord* update);

std::string EncodeRound(const RoundRecord& round);
Status DecodeRound(std::string_view value, std::string_view what, RoundRecord* round);

std::string EncodeSnapshotManifest(const SnapshotRecord& snapshot);
Status DecodeSnapshotManifest(std::string_view value, std::string_view what, SnapshotRecord* snapshot);

// A chunk's value wraps the raw bytes; DecodeSnapshotChunk returns a view into `value`.
std::string EncodeSnapshotChunk(const void* data, size_t size);
Status DecodeSnapshotChunk(std::string_view value, std::string_view what, std::string_view* bytes);

std::string EncodeWorker(const WorkerRecord& worker);
Status DecodeWorker(std::string_view value, std::string_view what, WorkerRecord* worker);

std::string EncodeTokenIndex(std::string_view job_id);
Status DecodeTokenIndex(std::string_view value, std::string_view what, std::string* job_id);

std::string EncodeJobLinks(const JobLinksRecord& links);
Status DecodeJobLinks(std::string_view value, std::string_view what, JobLinksRecord* links);

}  // namespace tributary::checkpoint::internal
