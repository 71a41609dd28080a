// Key layout and value encoding of the checkpoint store (see records.h).
#include "checkpoint/records.h"

#include <array>
#include <bit>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#include <rocksdb/status.h>

namespace tributary::checkpoint::internal {

static_assert(std::endian::native == std::endian::little, "value encoding assumes a little-endian host");

// ---------------------------------------------------------------------------------------------
// CRC32C (reflected polynomial 0x82F63B78): the SSE4.2 instruction where the CPU has it, else
// slice-by-8 tables (a byte-wise loop would dominate LoadSnapshot of 8 MiB chunks).

namespace {

struct Crc32cTables {
  std::array<std::array<uint32_t, 256>, 8> t{};
  Crc32cTables() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int bit = 0; bit < 8; ++bit) c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[0][i] = c;
    }
    for (size_t k = 1; k < 8; ++k) {
      for (uint32_t i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFFu];
    }
  }
};

const Crc32cTables& Tables() {
  static const Crc32cTables tables;
  return tables;
}

}  // namespace

uint32_t Crc32cPortable(const void* data, size_t size, uint32_t crc) {
  const auto& t = Tables().t;
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~crc;
  while (size >= 8) {
    uint32_t lo;
    uint32_t hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    lo ^= c;
    c = t[7][lo & 0xFFu] ^ t[6][(lo >> 8) & 0xFFu] ^ t[5][(lo >> 16) & 0xFFu] ^ t[4][lo >> 24] ^ t[3][hi & 0xFFu] ^
        t[2][(hi >> 8) & 0xFFu] ^ t[1][(hi >> 16) & 0xFFu] ^ t[0][hi >> 24];
    p += 8;
    size -= 8;
  }
  while (size > 0) {
    c = (c >> 8) ^ t[0][(c ^ *p) & 0xFFu];
    ++p;
    --size;
  }
  return ~c;
}

#if defined(__x86_64__)
namespace {

// The SSE4.2 crc32 instruction computes exactly CRC32C; chosen at run time so the build needs no -msse4.2.
__attribute__((target("sse4.2"))) uint32_t Crc32cSse42(const void* data, size_t size, uint32_t crc) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t c = ~crc;
  while (size >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
    p += 8;
    size -= 8;
  }
  auto c32 = static_cast<uint32_t>(c);
  while (size > 0) {
    c32 = _mm_crc32_u8(c32, *p);
    ++p;
    --size;
  }
  return ~c32;
}

}  // namespace

bool Crc32cIsHardwareAccelerated() {
  static const bool has_sse42 = __builtin_cpu_supports("sse4.2");
  return has_sse42;
}

uint32_t Crc32c(const void* data, size_t size, uint32_t crc) {
  return Crc32cIsHardwareAccelerated() ? Crc32cSse42(data, size, crc) : Crc32cPortable(data, size, crc);
}
#else
bool Crc32cIsHardwareAccelerated() {
  return false;
}
uint32_t Crc32c(const void* data, size_t size, uint32_t crc) {
  return Crc32cPortable(data, size, crc);
}
#endif

Status ValidateId(std::string_view id, std::string_view field) {
  if (id.empty()) return Status::InvalidArgument(std::string(field) + ": must not be empty");
  if (id.size() > kMaxIdBytes) {
    return Status::InvalidArgument(std::string(field) + ": " + std::to_string(id.size()) + " bytes, at most " +
                                   std::to_string(kMaxIdBytes) + " allowed");
  }
  if (id.find('\0') != std::string_view::npos) {
    return Status::InvalidArgument(std::string(field) + ": must not contain a NUL byte");
  }
  return Status::OK();
}

std::string JobWhat(std::string_view job_id) {
  return "checkpoint jobs: job '" + std::string(job_id) + "'";
}

std::string RoundWhat(std::string_view job_id, uint32_t round) {
  return "checkpoint rounds: job '" + std::string(job_id) + "' round " + std::to_string(round);
}

std::string UpdateWhat(std::string_view job_id, uint32_t round, std::string_view worker_id) {
  return "checkpoint updates: job '" + std::string(job_id) + "' round " + std::to_string(round) + " worker '" +
         std::string(worker_id) + "'";
}

std::string SnapshotWhat(std::string_view job_id, uint32_t round) {
  return "checkpoint snapshots: job '" + std::string(job_id) + "' round " + std::to_string(round);
}

std::string ChunkWhat(std::string_view job_id, uint32_t round, uint32_t chunk) {
  return SnapshotWhat(job_id, round) + " chunk " + std::to_string(chunk);
}

std::string JobLinksWhat(std::string_view job_id) {
  return "checkpoint links: job '" + std::string(job_id) + "'";
}

std::string WorkerWhat(std::string_view worker_id) {
  return "checkpoint workers: worker '" + std::string(worker_id) + "'";
}

Status FromRocksStatus(const rocksdb::Status& status, std::string_view what) {
  if (status.ok()) return Status::OK();
  std::string msg = std::string(what) + ": " + status.ToString();
  if (status.IsNotFound()) return Status::NotFound(std::move(msg));
  if (status.IsCorruption()) return Status::Corruption(std::move(msg));
  if (status.IsInvalidArgument()) return Status::InvalidArgument(std::move(msg));
  if (status.IsTimedOut()) return Status::Timeout(std::move(msg));
  if (status.IsNotSupported()) return Status::Unimplemented(std::move(msg));
  if (status.IsBusy() || status.IsTryAgain()) return Status::Unavailable(std::move(msg));
  return Status::IOError(std::move(msg));
}

// ---------------------------------------------------------------------------------------------
// Keys

namespace {

void AppendBigEndian32(std::string* out, uint32_t v) {
  char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
  out->append(b, 4);
}

std::string IdPrefix(std::string_view id) {
  std::string key(id);
  key.push_back('\0');
  return key;
}

}  // namespace

uint32_t ReadBigEndian32(std::string_view key, size_t pos) {
  const auto* p = reinterpret_cast<const uint8_t*>(key.data() + pos);
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

std::string JobKey(std::string_view job_id) {
  return std::string(job_id);
}

std::string RoundPrefix(std::string_view job_id) {
  return IdPrefix(job_id);
}

std::string RoundKey(std::string_view job_id, uint32_t round) {
  std::string key = IdPrefix(job_id);
  AppendBigEndian32(&key, round);
  return key;
}

std::string UpdatePrefix(std::string_view job_id, uint32_t round) {
  return RoundKey(job_id, round);
}

std::string UpdateKey(std::string_view job_id, uint32_t round, std::string_view worker_id) {
  std::string key = RoundKey(job_id, round);
  key.append(worker_id);
  return key;
}

std::string SnapshotManifestPrefix(std::string_view job_id) {
  return "m" + IdPrefix(job_id);
}

std::string SnapshotManifestKey(std::string_view job_id, uint32_t round) {
  std::string key = SnapshotManifestPrefix(job_id);
  AppendBigEndian32(&key, round);
  return key;
}

std::string SnapshotChunkKey(std::string_view job_id, uint32_t round, uint32_t chunk) {
  std::string key = "c" + IdPrefix(job_id);
  AppendBigEndian32(&key, round);
  AppendBigEndian32(&key, chunk);
  return key;
}

std::string WorkerKey(std::string_view worker_id) {
  return std::string(worker_id);
}

std::string TokenKey(std::string_view submit_token) {
  return "token/" + std::string(submit_token);
}

std::string JobLinksKey(std::string_view job_id) {
  return "links/" + std::string(job_id);
}

// ---------------------------------------------------------------------------------------------
// Values

namespace {

class Writer {
 public:
  explicit Writer(RecordKind kind) {
    out_.push_back(static_cast<char>(kFormatVersion));
    out_.push_back(static_cast<char>(kind));
  }
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void U32(uint32_t v) { Raw(&v, 4); }
  void U64(uint64_t v) { Raw(&v, 8); }
  void I64(int64_t v) { Raw(&v, 8); }
  void F64(double v) { Raw(&v, 8); }
  void Bytes(std::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    out_.append(s);
  }
  void Raw(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }
  void Reserve(size_t n) { out_.reserve(n + 6); }
  // Appends the checksum and returns the value.
  std::string Finish() {
    uint32_t crc = Crc32c(out_.data(), out_.size());
    Raw(&crc, 4);
    return std::move(out_);
  }

 private:
  std::string out_;
};

const char* KindName(uint8_t kind) {
  switch (static_cast<RecordKind>(kind)) {
    case RecordKind::kSchema: return "schema version";
    case RecordKind::kJob: return "job";
    case RecordKind::kUpdate: return "update";
    case RecordKind::kRound: return "round";
    case RecordKind::kSnapshotManifest: return "snapshot manifest";
    case RecordKind::kSnapshotChunk: return "snapshot chunk";
    case RecordKind::kWorker: return "worker";
    case RecordKind::kTokenIndex: return "submit token index";
    case RecordKind::kJobLinks: return "job links";
  }
  return "unknown";
}

// Bounds-checked field reader over a value whose envelope has been verified. Errors are sticky: after
// the first failure every read returns zero values and Finish() reports the first problem.
class Reader {
 public:
  Reader(std::string_view fields, std::string_view what) : data_(fields), what_(what) {}

  uint8_t U8() {
    uint8_t v = 0;
    Raw(&v, 1, "u8");
    return v;
  }
  uint32_t U32() {
    uint32_t v = 0;
    Raw(&v, 4, "u32");
    return v;
  }
  uint64_t U64() {
    uint64_t v = 0;
    Raw(&v, 8, "u64");
    return v;
  }
  int64_t I64() {
    int64_t v = 0;
    Raw(&v, 8, "i64");
    return v;
  }
  double F64() {
    double v = 0;
    Raw(&v, 8, "f64");
    return v;
  }
  std::string Bytes() {
    uint32_t n = U32();
    if (!ok_) return {};
    if (n > data_.size() - pos_) {
      Fail("byte string of " + std::to_string(n) + " bytes at offset " + std::to_string(pos_) + " runs past the end");
      return {};
    }
    std::string s(data_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  // A count of items each at least `min_item_bytes` long; rejects counts the value cannot hold.
  uint32_t Count(size_t min_item_bytes) {
    uint32_t n = U32();
    if (ok_ && static_cast<uint64_t>(n) * min_item_bytes > data_.size() - pos_) {
      Fail("count " + std::to_string(n) + " at offset " + std::to_string(pos_) + " exceeds the value size");
      return 0;
    }
    return n;
  }
  void Fail(const std::string& problem) {
    if (ok_) {
      ok_ = false;
      problem_ = problem;
    }
  }
  Status Finish() {
    if (ok_ && pos_ != data_.size()) Fail(std::to_string(data_.size() - pos_) + " trailing bytes");
    if (ok_) return Status::OK();
    return Status::Corruption(std::string(what_) + ": " + problem_);
  }

 private:
  void Raw(void* out, size_t n, const char* type) {
    if (!ok_) return;
    if (n > data_.size() - pos_) {
      Fail(std::string("truncated value: ") + type + " at offset " + std::to_string(pos_) + " runs past the end");
      return;
    }
    std::memcpy(out, data_.data() + pos_, n);
    pos_ += n;
  }

  std::string_view data_;
  std::string_view what_;
  size_t pos_ = 0;
  bool ok_ = true;
  std::string problem_;
};

// Verifies version, kind and checksum; on success `fields` is the part between header and checksum and
// *format_version (when given) the version the value was written at.
Status OpenEnvelope(std::string_view value, RecordKind kind, std::string_view what, std::string_view* fields,
                    uint8_t* format_version = nullptr) {
  if (value.size() < 6) {
    return Status::Corruption(std::string(what) + ": value of " + std::to_string(value.size()) +
                              " bytes is too short for a record");
  }
  uint32_t stored;
  std::memcpy(&stored, value.data() + value.size() - 4, 4);
  uint32_t computed = Crc32c(value.data(), value.size() - 4);
  if (stored != computed) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), ": checksum mismatch (stored 0x%08" PRIx32 ", computed 0x%08" PRIx32 ")", stored,
                  computed);
    return Status::Corruption(std::string(what) + buf);
  }
  auto version = static_cast<uint8_t>(value[0]);
  if (version < kOldestFormatVersion || version > kFormatVersion) {
    return Status::Corruption(std::string(what) + ": unknown value format version " + std::to_string(version) +
                              " (this build reads " + std::to_string(kOldestFormatVersion) + ".." +
                              std::to_string(kFormatVersion) + ")");
  }
  if (format_version != nullptr) *format_version = version;
  auto stored_kind = static_cast<uint8_t>(value[1]);
  if (stored_kind != static_cast<uint8_t>(kind)) {
    return Status::Corruption(std::string(what) + ": value holds a " + KindName(stored_kind) + " record, expected a " +
                              KindName(static_cast<uint8_t>(kind)) + " record");
  }
  *fields = value.substr(2, value.size() - 6);
  return Status::OK();
}

}  // namespace

std::string EncodeSchemaVersion(uint32_t version) {
  Writer w(RecordKind::kSchema);
  w.U32(version);
  return w.Finish();
}

Status DecodeSchemaVersion(std::string_view value, std::string_view what, uint32_t* version) {
  std::string_view fields;
  TRIB_RETURN_IF_ERROR(OpenEnvelope(value, RecordKind::kSchema, what, &fields));
  Reader r(fields, what);
  *version = r.U32();
  return r.Finish();
}

std::string EncodeJob(const JobRecord& job) {
  Writer w(RecordKind::kJob);
  w.Bytes(job.job_id);
  w.Bytes(job.spec_yaml);
  w.Bytes(job.submit_token);
  w.U8(static_cast<uint8_t>(job.state));
  w.I64(job.created_unix_ms);
  w.I64(job.updated_unix_ms);
  w.U32(job.current_round);
  w.Bytes(job.failure_reason);
  return w.Finish();
}

Status DecodeJob(std::string_view value, std::string_view what, JobRecord* job) {
  std::string_view fields;
  TRIB_RETURN_IF_ERROR(OpenEnvelope(value, RecordKind::kJob, what, &fields));
  Reader r(fields, what);
  job->job_id = r.Bytes();
  job->spec_yaml = r.Bytes();
  job->submit_token = r.Bytes();
  uint8_t state = r.U8();
  if (state > static_cast<uint8_t>(JobState::kStopped)) r.Fail("unknown job state " + std::to_string(state));
  job->state = static_cast<JobState>(state);
  job->created_unix_ms = r.I64();
  job->updated_unix_ms = r.I64();
  job->current_round = r.U32();
  job->failure_reason = r.Bytes();
  return r.Finish();
}

std::string EncodeUpdate(const UpdateRecord& update) {
  Writer w(RecordKind::kUpdate);
  w.Reserve(update.payload.size() + update.job_id.size() + update.worker_id.size() + 48);
  w.Bytes(update.job_id);
  w.U32(update.round);
  w.Bytes(update.worker_id);
  w.U64(update.num_samples);
  w.F64(update.train_loss);
  w.Bytes(update.payload);
  w.I64(update.received_unix_ms);
  w.U64(update.island_bytes);
  return w.Finish();
}

Status DecodeUpdate(std::string_view value, std::string_view what, UpdateRecord* update) {
  std::string_view fields;
  uint8_t version = 0;
  TRIB_RETURN_IF_ERROR(OpenEnvelope(value, RecordKind::kUpdate, what, &fields, &version));
  Reader r(fields, what);
  update->job_id = r.Bytes();
  update->round = r.U32();
  update->worker_id = r.Bytes();
  update->num_samples = r.U64();
  update->train_loss = r.F64();
  update->payload = r.Bytes();
  update->received_unix_ms = r.I64();
  update->island_bytes = version >= 3 ? r.U64() : 0;
  return r.Finish();
}

std::string EncodeRound(const RoundRecord& round) {
  Writer w(RecordKind::kRound);
  w.Reserve(round.aggregate.size() + round.participants.size() * 32 + 96);
  w.Bytes(round.job_id);
  w.U32(round.round);
  w.U64(round.job_seed);
  w.Bytes(round.seed_mode);
  w.U32(static_cast<uint32_t>(round.participants.size()));
  for (const auto& p : round.participants) {
    w.Bytes(p.worker_id);
    w.F64(p.weight);
    w.F64(p.anomaly_score);
    w.F64(p.clip_scale);
    w.U8(p.excluded ? 1 : 0);
  }
  w.Bytes(round.aggregate);
  w.F64(round.metrics.heldout_loss);
  w.U64(round.metrics.bytes_up);
  w.U64(round.metrics.bytes_down);
  w.U64(round.weights_hash);
  w.I64(round.committed_unix_ms);
  w.U64(round.metrics.island_bytes);
  return w.Finish();
}

Status DecodeRound(std::string_view value, std::string_view what, RoundRecord* round) {
  std::string_view fields;
  uint8_t version = 0;
  TRIB_RETURN_IF_ERROR(OpenEnvelope(value, RecordKind::kRound, what, &fields, &version));
  Reader r(fields, what);
  round->job_id = r.Bytes();
  round->round = r.U32();
  round->job_seed = r.U64();
  round->seed_mode = r.Bytes();
  const bool reports = version >= 2;
  uint32_t n = r.Count(reports ? 4 + 8 + 8 + 8 + 1 : 4 + 8);
  round->participants.clear();
  round->participants.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    RoundParticipant p;
    p.worker_id = r.Bytes();
    p.weight = r.F64();
    if (reports) {
      p.anomaly_score = r.F64();
      p.clip_scale = r.F64();
      p.excluded = r.U8() != 0;
    }
    round->participants.push_back(std::move(p));
  }
  round->aggregate = r.Bytes();
  round->metrics.heldout_loss = r.F64();
  round->metrics.bytes_up = r.U64();
  round->metrics.bytes_down = r.U64();
  round->weights_hash = r.U64();
  round->committed_unix_ms = r.I64();
  round->metrics.island_bytes = version >= 3 ? r.U64() : 0;
  return r.Finish();
}

std::string EncodeSnapshotManifest(const SnapshotRecord& snapshot) {
  Writer w(RecordKind::kSnapshotManifest);
  w.Bytes(snapshot.job_id);
  w.U32(snapshot.round);
  w.I64(snapshot.total_elems);
  w.U64(snapshot.chunk_bytes);
  w.U32(static_cast<uint32_t>(snapshot.chunk_crcs.size()));
  for (uint32_t crc : snapshot.chunk_crcs) w.U32(crc);
  w.U32(static_cast<uint32_t>(snapshot.tensors.size()));
  for (const auto& t : snapshot.tensors) {
    w.Bytes(t.name);
    w.U32(static_cast<uint32_t>(t.shape.size()));
    for (int64_t d : t.shape) w.I64(d);
    w.I64(t.offset);
    w.I64(t.numel);
  }
  w.U64(snapshot.weights_hash);
  w.I64(snapshot.created_unix_ms);
  return w.Finish();
}

Status DecodeSnapshotManifest(std::string_view value, std::string_view what, SnapshotRecord* snapshot) {
  std::string_view fields;
  TRIB_RETURN_IF_ERROR(OpenEnvelope(value, RecordKind::kSnapshotManifest, what, &fields));
  Reader r(fields, what);
  snapshot->job_id = r.Bytes();
  snapshot->round = r.U32();
  snapshot->total_elems = r.I64();
  snapshot->chunk_bytes = r.U64();
  uint32_t num_chunks = r.Count(4);
  snapshot->chunk_crcs.assign(num_chunks, 0);
  for (uint32_t i = 0; i < num_chunks; ++i) snapshot->chunk_crcs[i] = r.U32();
  uint32_t num_tensors = r.Count(4 + 4 + 8 + 8);
  snapshot->tensors.clear();
  snapshot->tensors.reserve(num_tensors);
  for (uint32_t i = 0; i < num_tensors; ++i) {
    TensorEntry t;
    t.name = r.Bytes();
    uint32_t ndim = r.Count(8);
    t.shape.assign(ndim, 0);
    for (uint32_t d = 0; d < ndim; ++d) t.shape[d] = r.I64();
    t.offset = r.I64();
    t.numel = r.I64();
    snapshot->tensors.push_back(std::move(t));
  }
  snapshot->weights_hash = r.U64();
  snapshot->created_unix_ms = r.I64();
  if (snapshot->total_elems < 0) r.Fail("negative arena length " + std::to_string(snapshot->total_elems));
  return r.Finish();
}

std::string EncodeSnapshotChunk(const void* data, size_t size) {
  Writer w(RecordKind::kSnapshotChunk);
  w.Reserve(size);
  w.Raw(data, size);
  return w.Finish();
}

Status DecodeSnapshotChunk(std::string_view value, std::string_view what, std::string_view* bytes) {
  return OpenEnvelope(value, RecordKind::kSnapshotChunk, what, bytes);
}

std::string EncodeWorker(const WorkerRecord& worker) {
  Writer w(RecordKind::kWorker);
  w.Bytes(worker.worker_id);
  w.Bytes(worker.public_key);
  w.Bytes(worker.capabilities);
  w.I64(worker.last_seen_unix_ms);
  return w.Finish();
}

Status DecodeWorker(std::string_view value, std::string_view what, WorkerRecord* worker) {
  std::string_view fields;
  TRIB_RETURN_IF_ERROR(OpenEnvelope(value, RecordKind::kWorker, what, &fields));
  Reader r(fields, what);
  worker->worker_id = r.Bytes();
  worker->public_key = r.Bytes();
  worker->capabilities = r.Bytes();
  worker->last_seen_unix_ms = r.I64();
  return r.Finish();
}

std::string EncodeTokenIndex(std::string_view job_id) {
  Writer w(RecordKind::kTokenIndex);
  w.Bytes(job_id);
  return w.Finish();
}

Status DecodeTokenIndex(std::string_view value, std::string_view what, std::string* job_id) {
  std::string_view fields;
  TRIB_RETURN_IF_ERROR(OpenEnvelope(value, RecordKind::kTokenIndex, what, &fields));
  Reader r(fields, what);
  *job_id = r.Bytes();
  return r.Finish();
}

namespace {

void WriteLinks(Writer& w, const std::vector<LinkRecord>& links) {
  w.U32(static_cast<uint32_t>(links.size()));
  for (const LinkRecord& link : links) {
    w.Bytes(link.a);
    w.Bytes(link.b);
    w.F64(link.mbps);
    w.F64(link.rtt_ms);
    w.I64(link.measured_unix_ms);
  }
}

void ReadLinks(Reader& r, std::vector<LinkRecord>* links) {
  const uint32_t n = r.Count(4 + 4 + 8 + 8 + 8);
  links->assign(n, LinkRecord{});
  for (LinkRecord& link : *links) {
    link.a = r.Bytes();
    link.b = r.Bytes();
    link.mbps = r.F64();
    link.rtt_ms = r.F64();
    link.measured_unix_ms = r.I64();
  }
}

}  // namespace

std::string EncodeJobLinks(const JobLinksRecord& links) {
  Writer w(RecordKind::kJobLinks);
  w.Bytes(links.job_id);
  w.U64(links.campaign);
  w.Bytes(links.reason);
  w.I64(links.updated_unix_ms);
  w.U32(static_cast<uint32_t>(links.members.size()));
  for (const std::string& member : links.members) w.Bytes(member);
  WriteLinks(w, links.pairs);
  WriteLinks(w, links.uplinks);
  return w.Finish();
}

Status DecodeJobLinks(std::string_view value, std::string_view what, JobLinksRecord* links) {
  std::string_view fields;
  TRIB_RETURN_IF_ERROR(OpenEnvelope(value, RecordKind::kJobLinks, what, &fields));
  Reader r(fields, what);
  links->job_id = r.Bytes();
  links->campaign = r.U64();
  links->reason = r.Bytes();
  links->updated_unix_ms = r.I64();
  const uint32_t members = r.Count(4);
  links->members.assign(members, "");
  for (std::string& member : links->members) member = r.Bytes();
  ReadLinks(r, &links->pairs);
  ReadLinks(r, &links->uplinks);
  return r.Finish();
}

}  // namespace tributary::checkpoint::internal
