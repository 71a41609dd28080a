// Chunked, checksummed, resumable bulk transfer (model snapshots, dense deltas).
//
// Protocol (receiver pulls, so memory on both sides stays bounded by the window):
//   receiver -> sender : BulkRequest {object_id, from_chunk, max_chunks}
//   sender -> receiver : per chunk, one message: BulkChunkHeader + one raw data frame
//                        (or an Error envelope, e.g. NotFound for an unknown object)
// Each chunk header carries index, offset, size, total size, nominal chunk size, a 16-byte
// BLAKE2b checksum of the chunk and the 32-byte BLAKE2b of the whole object. The receiver verifies
// each chunk before writing it and the whole object before committing. After a disconnect or a
// sender restart it re-requests from the first missing chunk (BulkRequest.from_chunk), so a
// transfer resumes instead of restarting.
//
// BulkSender and BulkReceiver are transport-independent state machines; FetchObject drives a
// BulkReceiver over a Client, and BulkSender::Serve answers requests on a Server or a Client (a
// coordinator can pull a worker's upload by driving a BulkReceiver from its Server loop).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sodium.h>
#include <zmq.hpp>

#include "base/status.h"
#include "transport/channel.h"
#include "transport/message.h"

namespace tributary::transport {

inline constexpr uint32_t kDefaultChunkBytes = uint32_t{1} << 20;
inline constexpr size_t kChunkChecksumBytes = 16;
inline constexpr size_t kObjectChecksumBytes = 32;

// Payloads (uploads, aggregates) up to an inline limit travel inside the envelope; larger ones as bulk
// objects. The limit is a daemon setting in [kMinInlinePayloadBytes, kMaxInlinePayloadBytes]: the upper
// bound keeps an inline payload plus the rest of the envelope under kDefaultMaxControlBytes (64 MiB).
inline constexpr uint64_t kDefaultInlinePayloadBytes = uint64_t{4} << 20;
inline constexpr uint64_t kMinInlinePayloadBytes = 1024;
inline constexpr uint64_t kMaxInlinePayloadBytes = uint64_t{60} << 20;

// BLAKE2b-128 of a chunk (binary, 16 bytes).
std::string ChunkChecksum(const void* data, size_t size);
// BLAKE2b-256 of a whole buffer (binary, 32 bytes).
std::string ObjectChecksum(const void* data, size_t size);
// Lower-case hex of binary bytes (for messages and logs).
std::string ToHex(const std::string& bytes);

// Incremental BLAKE2b-256.
class ObjectHasher {
 public:
  ObjectHasher();
  void Update(const void* data, size_t size);
  std::string Finish();  // 32 bytes

 private:
  crypto_generichash_state state_;
};

// Where a sender reads an object from.
class BulkSource {
 public:
  virtual ~BulkSource() = default;
  virtual uint64_t size() const = 0;
  // Reads exactly n bytes at offset.
  virtual Status Read(uint64_t offset, void* out, size_t n) const = 0;
};

// A byte buffer shared with the caller (not copied).
class MemorySource : public BulkSource {
 public:
  explicit MemorySource(std::shared_ptr<const std::string> data) : data_(std::move(data)) {}
  uint64_t size() const override { return data_->size(); }
  Status Read(uint64_t offset, void* out, size_t n) const override;
  // The buffer itself (a multistream transfer sends it without a copy).
  const std::shared_ptr<const std::string>& shared_data() const { return data_; }

 private:
  std::shared_ptr<const std::string> data_;
};

// A file read with pread; the file must not change while it is served.
class FileSource : public BulkSource {
 public:
  static Result<std::unique_ptr<FileSource>> Open(const std::string& path);
  ~FileSource() override;
  uint64_t size() const override { return size_; }
  Status Read(uint64_t offset, void* out, size_t n) const override;

 private:
  FileSource(std::string path, int fd, uint64_t size) : path_(std::move(path)), fd_(fd), size_(size) {}
  std::string path_;
  int fd_;
  uint64_t size_;
};

// An object read once for its checksums, ready to be served (BulkSender::AddPrepared). Preparing may run on
// any thread, so the owner of a BulkSender (an event loop) need not read a large object itself.
struct PreparedBulkObject {
  std::shared_ptr<BulkSource> source;
  uint32_t chunk_bytes = 0;  // the chunking the checksums were computed for
  uint64_t num_chunks = 0;
  std::vector<std::string> chunk_checksums;
  std::string object_checksum;  // 32-byte BLAKE2b of the whole object
};
// Reads `source` once and computes its chunk and object checksums for chunks of `chunk_bytes`. Errors when the
// source cannot be read (naming `object_id`).
Result<PreparedBulkObject> PrepareBulkObject(const std::string& object_id, std::shared_ptr<BulkSource> source,
                                             uint32_t chunk_bytes = kDefaultChunkBytes);

// Serves registered objects chunk by chunk.
class BulkSender {
 public:
  // chunk_bytes: nominal chunk size; max_window: most chunks sent for one request.
  explicit BulkSender(std::string name = "bulk", uint32_t chunk_bytes = kDefaultChunkBytes, uint32_t max_window = 64);

  // Registers an object (reads it once to compute the checksums). Replaces an object with the id.
  Status AddObject(const std::string& object_id, std::shared_ptr<BulkSource> source);
  // Registers an object prepared for this sender's chunk size (InvalidArgument for another), without reading it.
  Status AddPrepared(const std::string& object_id, PreparedBulkObject object);
  uint32_t chunk_bytes() const { return chunk_bytes_; }
  void RemoveObject(const std::string& object_id);
  bool HasObject(const std::string& object_id) const { return objects_.count(object_id) != 0; }
  // 32-byte BLAKE2b of a registered object (empty if unknown): publish it with the object id.
  std::string ObjectChecksumOf(const std::string& object_id) const;

  // Produces the chunk messages answering `request`, calling send(header envelope, data frame) for
  // each. NotFound for an unknown object, InvalidArgument for a chunk index past the end.
  Status HandleRequest(const v1::BulkRequest& request,
                       const std::function<Status(Envelope, zmq::message_t)>& send) const;
  // Answers a BulkRequest received on a Server (errors are also sent back as an Error envelope).
  Status Serve(Server& server, const Incoming& request) const;
  // Answers a BulkRequest received on a Client (a worker serving its upload to the coordinator).
  Status Serve(Client& client, const Message& request) const;

 private:
  using Object = PreparedBulkObject;
  std::string name_;
  uint32_t chunk_bytes_;
  uint32_t max_window_;
  std::map<std::string, Object> objects_;
};

// Where a receiver writes an object.
class BulkSink {
 public:
  virtual ~BulkSink() = default;
  // Called once, when the total size is first known.
  virtual Status Prepare(uint64_t total_size) = 0;
  virtual Status Write(uint64_t offset, const void* data, size_t n) = 0;
  // Called after the whole-object checksum verified.
  virtual Status Commit() = 0;
};

class BufferSink : public BulkSink {
 public:
  // max_size guards memory against a peer announcing a huge object.
  explicit BufferSink(uint64_t max_size = uint64_t{1} << 36) : max_size_(max_size) {}
  Status Prepare(uint64_t total_size) override;
  Status Write(uint64_t offset, const void* data, size_t n) override;
  Status Commit() override { return Status::OK(); }
  const std::string& data() const { return data_; }
  std::string Release() { return std::move(data_); }

 private:
  uint64_t max_size_;
  std::string data_;
};

// Writes <path>.partial and renames it to <path> on Commit (after fsync), so <path> only ever
// holds a verified object.
class FileSink : public BulkSink {
 public:
  explicit FileSink(std::string path) : path_(std::move(path)) {}
  ~FileSink() override;
  Status Prepare(uint64_t total_size) override;
  Status Write(uint64_t offset, const void* data, size_t n) override;
  Status Commit() override;

 private:
  std::string path_;
  int fd_ = -1;
};

// Receiving state of one object: what to request next, chunk verification, completion.
class BulkReceiver {
 public:
  // `peer` names the sender in errors. window >= 1 chunks are kept in flight.
  BulkReceiver(std::string object_id, BulkSink* sink, uint32_t window, std::string peer);

  // The next request to send, or nullopt when the window is full or everything was requested.
  std::optional<v1::BulkRequest> NextRequest();
  // Forgets in-flight requests (after a timeout, disconnect or corrupt chunk): the next request
  // starts again at the first missing chunk.
  void ResetInFlight() { requested_end_ = next_chunk_; }
  // Verifies and writes one chunk. Duplicates and out-of-order chunks are ignored (OK, no
  // progress); a checksum or consistency failure is Corruption naming the object and chunk.
  Status OnChunk(const v1::BulkChunkHeader& header, const zmq::message_t& data);
  // Whether every chunk arrived; then Finish() verifies the object checksum and commits the sink.
  bool complete() const { return num_chunks_.has_value() && next_chunk_ == *num_chunks_; }
  Status Finish();

  const std::string& object_id() const { return object_id_; }
  uint64_t next_chunk() const { return next_chunk_; }
  std::optional<uint64_t> num_chunks() const { return num_chunks_; }
  uint64_t bytes_received() const { return bytes_received_; }
  // Checksum expected for the whole object (e.g. from an UploadUpdate); checked in Finish().
  void ExpectObjectChecksum(std::string checksum) { expected_checksum_ = std::move(checksum); }

 private:
  std::string Where(uint64_t chunk) const;

  std::string object_id_;
  BulkSink* sink_;
  uint32_t window_;
  std::string peer_;
  std::optional<uint64_t> num_chunks_;
  uint64_t total_size_ = 0;
  uint32_t chunk_size_ = 0;
  std::string object_checksum_;
  std::string expected_checksum_;
  uint64_t next_chunk_ = 0;     // first chunk not yet received (in-order)
  uint64_t requested_end_ = 0;  // first chunk not yet requested
  uint64_t bytes_received_ = 0;
  ObjectHasher hasher_;
};

struct FetchOptions {
  uint32_t window = 8;            // chunks in flight
  int chunk_timeout_ms = 5000;    // no chunk for this long: re-request from the first missing one
  int max_attempts = 10;          // consecutive timeouts before giving up
  int max_corrupt_retries = 2;    // re-requests of one corrupt chunk before failing
  std::string expected_checksum;  // optional 32-byte BLAKE2b of the whole object
  std::string sender = "client";  // Envelope.sender of the requests
};

// Fetches one object from the Client's server into `sink`. Messages other than the object's chunks
// (or its Error) go to `on_other` when given, else are dropped with a debug log.
Status FetchObject(Client& client, const std::string& object_id, BulkSink* sink, const FetchOptions& options,
                   const std::function<void(Message&&)>& on_other = nullptr);

}  // namespace tributary::transport
