#include "transport/bulk.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <limits>
#include <unordered_set>

#include <spdlog/spdlog.h>

namespace tributary::transport {
namespace {

std::string Blake2b(const void* data, size_t size, size_t out_bytes) {
  std::string out(out_bytes, '\0');
  crypto_generichash(reinterpret_cast<unsigned char*>(out.data()), out_bytes, static_cast<const unsigned char*>(data),
                     size, nullptr, 0);
  return out;
}

uint64_t NumChunks(uint64_t total_size, uint32_t chunk_size) {
  if (total_size == 0) return 1;  // an empty object is one empty chunk, so it has a checksum to send
  return (total_size + chunk_size - 1) / chunk_size;
}

uint64_t ChunkLength(uint64_t index, uint64_t total_size, uint32_t chunk_size) {
  const uint64_t offset = index * chunk_size;
  return offset >= total_size ? 0 : std::min<uint64_t>(chunk_size, total_size - offset);
}

bool IsTransportFailure(const Status& status) {
  return status.code() == StatusCode::kIOError || status.code() == StatusCode::kUnavailable ||
         status.code() == StatusCode::kTimeout;
}

}  // namespace

std::string ChunkChecksum(const void* data, size_t size) {
  return Blake2b(data, size, kChunkChecksumBytes);
}
std::string ObjectChecksum(const void* data, size_t size) {
  return Blake2b(data, size, kObjectChecksumBytes);
}

std::string ToHex(const std::string& bytes) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) {
    const auto byte = static_cast<unsigned char>(c);
    out += kHex[byte >> 4];
    out += kHex[byte & 15];
  }
  return out;
}

ObjectHasher::ObjectHasher() {
  crypto_generichash_init(&state_, nullptr, 0, kObjectChecksumBytes);
}

void ObjectHasher::Update(const void* data, size_t size) {
  crypto_generichash_update(&state_, static_cast<const unsigned char*>(data), size);
}

std::string ObjectHasher::Finish() {
  std::string out(kObjectChecksumBytes, '\0');
  crypto_generichash_final(&state_, reinterpret_cast<unsigned char*>(out.data()), kObjectChecksumBytes);
  return out;
}

// ---------------------------------------------------------------------------------------------

Status MemorySource::Read(uint64_t offset, void* out, size_t n) const {
  if (offset > data_->size() || n > data_->size() - offset) {
    return Status::InvalidArgument("read of " + std::to_string(n) + " bytes at " + std::to_string(offset) +
                                   " is past the end of a " + std::to_string(data_->size()) + "-byte buffer");
  }
  if (n > 0) std::memcpy(out, data_->data() + offset, n);
  return Status::OK();
}

Result<std::unique_ptr<FileSource>> FileSource::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::NotFound(path + ": no such file");
    return Status::IOError(path + ": cannot open: " + std::strerror(errno));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const std::string error = std::strerror(errno);
    ::close(fd);
    return Status::IOError(path + ": cannot stat: " + error);
  }
  return std::unique_ptr<FileSource>(new FileSource(path, fd, static_cast<uint64_t>(st.st_size)));
}

FileSource::~FileSource() {
  ::close(fd_);
}

Status FileSource::Read(uint64_t offset, void* out, size_t n) const {
  size_t done = 0;
  while (done < n) {
    const ssize_t got = ::pread(fd_, static_cast<char*>(out) + done, n - done, static_cast<off_t>(offset + done));
    if (got < 0) {
      if (errno == EINTR) continue;
      return Status::IOError(path_ + ": read at " + std::to_string(offset + done) + ": " + std::strerror(errno));
    }
    if (got == 0)
      return Status::IOError(path_ + ": file shrank while being served (offset " + std::to_string(offset + done) + ")");
    done += static_cast<size_t>(got);
  }
  return Status::OK();
}

// ---------------------------------------------------------------------------------------------

BulkSender::BulkSender(std::string name, uint32_t chunk_bytes, uint32_t max_window)
    : name_(std::move(name)),
      chunk_bytes_(std::max<uint32_t>(chunk_bytes, 1)),
      max_window_(std::max<uint32_t>(max_window, 1)) {}

Result<PreparedBulkObject> PrepareBulkObject(const std::string& object_id, std::shared_ptr<BulkSource> source,
                                             uint32_t chunk_bytes) {
  PreparedBulkObject object;
  object.source = std::move(source);
  object.chunk_bytes = std::max<uint32_t>(chunk_bytes, 1);
  const uint64_t total = object.source->size();
  object.num_chunks = NumChunks(total, object.chunk_bytes);
  object.chunk_checksums.reserve(object.num_chunks);
  ObjectHasher hasher;
  std::string buffer;
  for (uint64_t i = 0; i < object.num_chunks; ++i) {
    const uint64_t length = ChunkLength(i, total, object.chunk_bytes);
    buffer.resize(length);
    TRIB_RETURN_IF_ERROR(
        object.source->Read(i * object.chunk_bytes, buffer.data(), length).WithContext("object '" + object_id + "'"));
    object.chunk_checksums.push_back(ChunkChecksum(buffer.data(), buffer.size()));
    hasher.Update(buffer.data(), buffer.size());
  }
  object.object_checksum = hasher.Finish();
  return object;
}

Status BulkSender::AddObject(const std::string& object_id, std::shared_ptr<BulkSource> source) {
  if (object_id.empty()) return Status::InvalidArgument(name_ + ": bulk object id is empty");
  auto object = PrepareBulkObject(object_id, std::move(source), chunk_bytes_);
  if (!object.ok()) return object.status().WithContext(name_);
  return AddPrepared(object_id, std::move(*object));
}

Status BulkSender::AddPrepared(const std::string& object_id, PreparedBulkObject object) {
  if (object_id.empty()) return Status::InvalidArgument(name_ + ": bulk object id is empty");
  if (object.chunk_bytes != chunk_bytes_ || !object.source)
    return Status::InvalidArgument(name_ + ": object '" + object_id + "' was prepared for " +
                                   std::to_string(object.chunk_bytes) + "-byte chunks, this sender sends " +
                                   std::to_string(chunk_bytes_));
  objects_[object_id] = std::move(object);
  return Status::OK();
}

void BulkSender::RemoveObject(const std::string& object_id) {
  objects_.erase(object_id);
}

std::string BulkSender::ObjectChecksumOf(const std::string& object_id) const {
  auto it = objects_.find(object_id);
  return it == objects_.end() ? std::string() : it->second.object_checksum;
}

Status BulkSender::HandleRequest(const v1::BulkRequest& request,
                                 const std::function<Status(Envelope, zmq::message_t)>& send) const {
  auto it = objects_.find(request.object_id());
  if (it == objects_.end()) {
    return Status::NotFound(name_ + ": bulk object '" + request.object_id() + "' is not offered");
  }
  const Object& object = it->second;
  if (request.from_chunk() >= object.num_chunks) {
    return Status::InvalidArgument(name_ + ": bulk object '" + request.object_id() + "' has " +
                                   std::to_string(object.num_chunks) + " chunks, request starts at chunk " +
                                   std::to_string(request.from_chunk()));
  }
  const uint64_t total = object.source->size();
  const uint64_t wanted = std::clamp<uint64_t>(request.max_chunks(), 1, max_window_);
  const uint64_t end = std::min(object.num_chunks, request.from_chunk() + wanted);
  for (uint64_t i = request.from_chunk(); i < end; ++i) {
    const uint64_t length = ChunkLength(i, total, chunk_bytes_);
    zmq::message_t data(length);
    TRIB_RETURN_IF_ERROR(object.source->Read(i * chunk_bytes_, data.data(), length)
                             .WithContext(name_ + ": object '" + request.object_id() + "'"));
    Envelope envelope = NewEnvelope(name_);
    v1::BulkChunkHeader* header = envelope.mutable_bulk_chunk_header();
    header->set_object_id(request.object_id());
    header->set_chunk_index(i);
    header->set_num_chunks(object.num_chunks);
    header->set_offset(i * chunk_bytes_);
    header->set_size(static_cast<uint32_t>(length));
    header->set_total_size(total);
    header->set_chunk_size(chunk_bytes_);
    header->set_chunk_checksum(object.chunk_checksums[i]);
    header->set_object_checksum(object.object_checksum);
    TRIB_RETURN_IF_ERROR(send(std::move(envelope), std::move(data)));
  }
  return Status::OK();
}

Status BulkSender::Serve(Server& server, const Incoming& request) const {
  TRIB_RETURN_IF_ERROR(ExpectBody(request.message.envelope, Envelope::kBulkRequest, request.peer.Describe()));
  Status status = HandleRequest(request.message.envelope.bulk_request(), [&](Envelope envelope, zmq::message_t data) {
    std::vector<zmq::message_t> bulk;
    bulk.push_back(std::move(data));
    return server.Reply(request, std::move(envelope), std::move(bulk));
  });
  if (!status.ok() && !IsTransportFailure(status)) {
    server.Reply(request, ErrorEnvelope(name_, 0, status)).IgnoreError();
  }
  return status;
}

Status BulkSender::Serve(Client& client, const Message& request) const {
  TRIB_RETURN_IF_ERROR(ExpectBody(request.envelope, Envelope::kBulkRequest, "server " + client.endpoint()));
  const uint64_t request_id = request.envelope.message_id();
  Status status = HandleRequest(request.envelope.bulk_request(), [&](Envelope envelope, zmq::message_t data) {
    envelope.set_in_reply_to(request_id);
    std::vector<zmq::message_t> bulk;
    bulk.push_back(std::move(data));
    return client.Send(envelope, std::move(bulk));
  });
  if (!status.ok() && !IsTransportFailure(status)) client.Send(ErrorEnvelope(name_, request_id, status)).IgnoreError();
  return status;
}

// ---------------------------------------------------------------------------------------------

Status BufferSink::Prepare(uint64_t total_size) {
  if (total_size > max_size_) {
    return Status::InvalidArgument("bulk object of " + std::to_string(total_size) +
                                   " bytes exceeds the buffer limit of " + std::to_string(max_size_));
  }
  data_.assign(static_cast<size_t>(total_size), '\0');
  return Status::OK();
}

Status BufferSink::Write(uint64_t offset, const void* data, size_t n) {
  if (offset > data_.size() || n > data_.size() - offset)
    return Status::Internal("bulk write past the end of the buffer");
  if (n > 0) std::memcpy(data_.data() + offset, data, n);
  return Status::OK();
}

FileSink::~FileSink() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink((path_ + ".partial").c_str());
  }
}

Status FileSink::Prepare(uint64_t total_size) {
  const std::string partial = path_ + ".partial";
  fd_ = ::open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) return Status::IOError(partial + ": cannot create: " + std::strerror(errno));
  if (::ftruncate(fd_, static_cast<off_t>(total_size)) != 0) {
    return Status::IOError(partial + ": cannot size to " + std::to_string(total_size) +
                           " bytes: " + std::strerror(errno));
  }
  return Status::OK();
}

Status FileSink::Write(uint64_t offset, const void* data, size_t n) {
  size_t done = 0;
  while (done < n) {
    const ssize_t wrote =
        ::pwrite(fd_, static_cast<const char*>(data) + done, n - done, static_cast<off_t>(offset + done));
    if (wrote < 0) {
      if (errno == EINTR) continue;
      return Status::IOError(path_ + ".partial: write at " + std::to_string(offset + done) + ": " +
                             std::strerror(errno));
    }
    done += static_cast<size_t>(wrote);
  }
  return Status::OK();
}

Status FileSink::Commit() {
  const std::string partial = path_ + ".partial";
  if (::fsync(fd_) != 0) return Status::IOError(partial + ": fsync: " + std::strerror(errno));
  ::close(fd_);
  fd_ = -1;
  if (::rename(partial.c_str(), path_.c_str()) != 0) {
    return Status::IOError(partial + ": cannot rename to " + path_ + ": " + std::strerror(errno));
  }
  return Status::OK();
}

// ---------------------------------------------------------------------------------------------

BulkReceiver::BulkReceiver(std::string object_id, BulkSink* sink, uint32_t window, std::string peer)
    : object_id_(std::move(object_id)), sink_(sink), window_(std::max<uint32_t>(window, 1)), peer_(std::move(peer)) {}

std::string BulkReceiver::Where(uint64_t chunk) const {
  std::string where = "object '" + object_id_ + "' chunk " + std::to_string(chunk);
  if (num_chunks_) where += "/" + std::to_string(*num_chunks_);
  return where + " from '" + peer_ + "'";
}

std::optional<v1::BulkRequest> BulkReceiver::NextRequest() {
  if (complete()) return std::nullopt;
  const uint64_t limit = num_chunks_.value_or(std::numeric_limits<uint64_t>::max());
  if (requested_end_ >= limit) return std::nullopt;
  // Refill when at most half the window is still in flight: fewer, larger requests.
  if (requested_end_ - next_chunk_ > window_ / 2) return std::nullopt;
  const uint64_t end = std::min(next_chunk_ + window_, limit);
  if (end <= requested_end_) return std::nullopt;
  v1::BulkRequest request;
  request.set_object_id(object_id_);
  request.set_from_chunk(requested_end_);
  request.set_max_chunks(static_cast<uint32_t>(end - requested_end_));
  requested_end_ = end;
  return request;
}

Status BulkReceiver::OnChunk(const v1::BulkChunkHeader& header, const zmq::message_t& data) {
  const uint64_t index = header.chunk_index();
  if (header.object_id() != object_id_) {
    return Status::InvalidArgument(Where(index) + ": chunk belongs to object '" + header.object_id() + "'");
  }
  if (!num_chunks_) {
    if (header.chunk_size() == 0) return Status::Corruption(Where(index) + ": chunk_size is 0");
    if (header.num_chunks() != NumChunks(header.total_size(), header.chunk_size())) {
      return Status::Corruption(Where(index) + ": " + std::to_string(header.num_chunks()) + " chunks do not fit " +
                                std::to_string(header.total_size()) + " bytes in chunks of " +
                                std::to_string(header.chunk_size()));
    }
    if (header.object_checksum().size() != kObjectChecksumBytes) {
      return Status::Corruption(Where(index) + ": object checksum has " +
                                std::to_string(header.object_checksum().size()) + " bytes, expected " +
                                std::to_string(kObjectChecksumBytes));
    }
    TRIB_RETURN_IF_ERROR(sink_->Prepare(header.total_size()).WithContext(Where(index)));
    num_chunks_ = header.num_chunks();
    total_size_ = header.total_size();
    chunk_size_ = header.chunk_size();
    object_checksum_ = header.object_checksum();
    requested_end_ = std::min(requested_end_, *num_chunks_);
  } else if (header.num_chunks() != *num_chunks_ || header.total_size() != total_size_ ||
             header.chunk_size() != chunk_size_ || header.object_checksum() != object_checksum_) {
    return Status::Corruption(Where(index) +
                              ": the object changed during the transfer (size, chunking or checksum differ)");
  }
  if (index >= *num_chunks_) return Status::Corruption(Where(index) + ": chunk index is past the end");
  if (index != next_chunk_) return Status::OK();  // duplicate or out of order: the re-request covers it

  const uint64_t length = ChunkLength(index, total_size_, chunk_size_);
  if (header.offset() != index * chunk_size_ || header.size() != length || data.size() != length) {
    return Status::Corruption(Where(index) + ": offset/size " + std::to_string(header.offset()) + "/" +
                              std::to_string(header.size()) + " (data " + std::to_string(data.size()) +
                              " bytes) do not match the expected " + std::to_string(index * chunk_size_) + "/" +
                              std::to_string(length));
  }
  const std::string actual = ChunkChecksum(data.data(), data.size());
  if (header.chunk_checksum() != actual) {
    return Status::Corruption(Where(index) + ": checksum mismatch (received data hashes to " + ToHex(actual) +
                              ", header says " + ToHex(header.chunk_checksum()) + ")");
  }
  TRIB_RETURN_IF_ERROR(sink_->Write(header.offset(), data.data(), data.size()).WithContext(Where(index)));
  hasher_.Update(data.data(), data.size());
  ++next_chunk_;
  bytes_received_ += length;
  return Status::OK();
}

Status BulkReceiver::Finish() {
  if (!complete()) {
    return Status::FailedPrecondition("object '" + object_id_ + "': only " + std::to_string(next_chunk_) +
                                      " chunks received");
  }
  const std::string actual = hasher_.Finish();
  if (actual != object_checksum_) {
    return Status::Corruption("object '" + object_id_ + "' from '" + peer_ + "': whole-object checksum mismatch (" +
                              ToHex(actual) + " vs announced " + ToHex(object_checksum_) + ")");
  }
  if (!expected_checksum_.empty() && actual != expected_checksum_) {
    return Status::Corruption("object '" + object_id_ + "' from '" + peer_ + "': checksum " + ToHex(actual) +
                              " is not the expected " + ToHex(expected_checksum_));
  }
  return sink_->Commit().WithContext("object '" + object_id_ + "'");
}

// ---------------------------------------------------------------------------------------------

Status FetchObject(Client& client, const std::string& object_id, BulkSink* sink, const FetchOptions& options,
                   const std::function<void(Message&&)>& on_other) {
  using Clock = std::chrono::steady_clock;
  const std::string peer = "server " + client.endpoint();
  BulkReceiver receiver(object_id, sink, options.window, peer);
  if (!options.expected_checksum.empty()) receiver.ExpectObjectChecksum(options.expected_checksum);
  std::unordered_set<uint64_t> request_ids;
  int attempts_without_progress = 0;
  int corrupt_retries = 0;
  uint64_t corrupt_chunk = std::numeric_limits<uint64_t>::max();
  auto last_progress = Clock::now();

  while (!receiver.complete()) {
    while (std::optional<v1::BulkRequest> request = receiver.NextRequest()) {
      Envelope envelope = NewEnvelope(options.sender);
      *envelope.mutable_bulk_request() = *request;
      request_ids.insert(envelope.message_id());
      TRIB_RETURN_IF_ERROR(client.Send(envelope).WithContext("fetching object '" + object_id + "'"));
    }
    const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - last_progress).count();
    const int wait_ms = static_cast<int>(std::max<int64_t>(0, options.chunk_timeout_ms - waited));
    Result<Message> message = client.Receive(wait_ms);
    if (!message.ok() && message.status().code() == StatusCode::kTimeout) {
      if (++attempts_without_progress >= options.max_attempts) {
        return Status::Timeout("fetching object '" + object_id + "' from " + peer + ": no chunk for " +
                               std::to_string(options.chunk_timeout_ms) + " ms, " +
                               std::to_string(attempts_without_progress) + " times (have " +
                               std::to_string(receiver.next_chunk()) + " chunks)");
      }
      spdlog::info("fetching object '{}' from {}: no chunk for {} ms, re-requesting from chunk {}", object_id, peer,
                   options.chunk_timeout_ms, receiver.next_chunk());
      receiver.ResetInFlight();
      last_progress = Clock::now();
      continue;
    }
    Status status = message.status();
    if (status.ok()) {
      const Envelope& envelope = message->envelope;
      if (envelope.body_case() == Envelope::kBulkChunkHeader && envelope.bulk_chunk_header().object_id() == object_id) {
        const uint64_t before = receiver.next_chunk();
        status = receiver.OnChunk(envelope.bulk_chunk_header(), message->bulk[0]);
        if (status.ok() && receiver.next_chunk() > before) {
          attempts_without_progress = 0;
          last_progress = Clock::now();
        }
      } else if (envelope.body_case() == Envelope::kError && request_ids.count(envelope.in_reply_to()) != 0) {
        return StatusFromError(envelope.error(), peer).WithContext("fetching object '" + object_id + "'");
      } else {
        if (on_other) {
          on_other(std::move(*message));
        } else {
          spdlog::debug("fetching object '{}': dropping unrelated '{}'", object_id, BodyName(envelope.body_case()));
        }
        continue;
      }
    }
    if (!status.ok()) {
      // A corrupt (or undecodable) chunk: re-request it a few times; persistent corruption fails.
      if (status.code() != StatusCode::kCorruption && status.code() != StatusCode::kInvalidArgument) return status;
      if (corrupt_chunk != receiver.next_chunk()) {
        corrupt_chunk = receiver.next_chunk();
        corrupt_retries = 0;
      }
      if (++corrupt_retries > options.max_corrupt_retries) return status;
      spdlog::warn("{}; re-requesting it (retry {} of {})", status.message(), corrupt_retries,
                   options.max_corrupt_retries);
      receiver.ResetInFlight();
    }
  }
  return receiver.Finish();
}

}  // namespace tributary::transport
