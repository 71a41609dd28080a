// Multistream receiver: one reader thread per connection writes each authenticated chunk at its offset and acks
// it; the calling thread waits for full coverage (transport/multistream.h).
#include <sys/socket.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_set>

#include <spdlog/spdlog.h>

#include "transport/multistream.h"
#include "transport/multistream_wire.h"

namespace tributary::transport {
namespace {

namespace wire = multistream_wire;
using Clock = std::chrono::steady_clock;

class Receiver {
 public:
  Receiver(const std::vector<int>& fds, const MultistreamKey& key, const MultistreamOptions& options)
      : key_(key), options_(options), fds_(fds), hello_(fds.size(), false) {}

  Result<MultistreamReceived> Run();

 private:
  std::string Where(size_t i) const {
    return "multistream transfer " + std::to_string(options_.transfer_id) + " from peer '" + options_.peer + "' conn " +
           std::to_string(i);
  }
  void ReaderLoop(size_t i);
  // Adds [begin, end) to the covered set; returns how many of its bytes were new.
  uint64_t AddCoverage(uint64_t begin, uint64_t end);
  // Checks and stores one opened frame; false (with error_ set) on a fatal protocol error. *ack: send an ack.
  bool Accept(size_t i, const wire::RawFrame& f, const std::string& nonce, std::string* plain, bool* ack);
  void Fatal(Status st) {
    if (error_.ok()) error_ = std::move(st);
    cv_.notify_all();
  }

  const MultistreamKey key_;
  const MultistreamOptions options_;
  const std::vector<int> fds_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<bool> hello_;
  std::string out_;
  uint64_t size_ = 0;
  std::map<uint64_t, uint64_t> have_;  // covered [start, end), merged
  uint64_t have_bytes_ = 0;
  std::unordered_set<std::string> nonces_;
  int acks_pending_ = 0;
  int readers_left_ = 0;
  std::atomic<bool> stop_{false};
  MultistreamStats stats_;
  Status error_;
};

uint64_t Receiver::AddCoverage(uint64_t begin, uint64_t end) {
  // Merge with every interval that touches [begin, end), counting the bytes they already covered.
  uint64_t already = 0;
  auto it = have_.upper_bound(begin);
  if (it != have_.begin() && std::prev(it)->second >= begin) --it;
  uint64_t merged_begin = begin, merged_end = end;
  while (it != have_.end() && it->first <= end) {
    already += std::min(end, it->second) > std::max(begin, it->first)
                   ? std::min(end, it->second) - std::max(begin, it->first)
                   : 0;
    merged_begin = std::min(merged_begin, it->first);
    merged_end = std::max(merged_end, it->second);
    it = have_.erase(it);
  }
  have_[merged_begin] = merged_end;
  const uint64_t added = (end - begin) - already;
  have_bytes_ += added;
  return added;
}

bool Receiver::Accept(size_t i, const wire::RawFrame& f, const std::string& nonce, std::string* plain, bool* ack) {
  const auto& h = f.header;
  *ack = false;
  if (h.transfer_id != options_.transfer_id) {
    Fatal(Status::PermissionDenied(Where(i) + ": frame of transfer " + std::to_string(h.transfer_id)));
    return false;
  }
  if (!nonces_.insert(nonce).second) {
    Fatal(Status::PermissionDenied(Where(i) + ": replayed frame at offset " + std::to_string(h.offset)));
    return false;
  }
  if (h.type == wire::FrameType::kHello) {
    if (h.offset == 0 || h.offset > options_.max_bytes || (size_ != 0 && h.offset != size_)) {
      Fatal(Status::InvalidArgument(Where(i) + ": announced size " + std::to_string(h.offset) + " is invalid (limit " +
                                    std::to_string(options_.max_bytes) + ", agreed " + std::to_string(size_) + ")"));
      return false;
    }
    if (size_ == 0) {
      size_ = h.offset;
      out_.resize(size_);
    }
    hello_[i] = true;
    return true;
  }
  if (h.type != wire::FrameType::kData || !hello_[i] || h.offset > size_ || h.len > size_ - h.offset || h.len == 0) {
    Fatal(Status::Corruption(Where(i) + ": unexpected frame (type " + std::to_string(static_cast<int>(h.type)) +
                             ", offset " + std::to_string(h.offset) + ", len " + std::to_string(h.len) + ")"));
    return false;
  }
  ++stats_.chunks;
  if (AddCoverage(h.offset, h.offset + h.len) == 0) {
    ++stats_.duplicate_chunks;
  } else {
    std::memcpy(out_.data() + h.offset, plain->data(), h.len);  // authenticated bytes: a partial overlap is equal
  }
  ++acks_pending_;
  *ack = true;
  cv_.notify_all();
  return true;
}

void Receiver::ReaderLoop(size_t i) {
  wire::RawFrame f;
  std::string plain;
  while (true) {
    Status st = wire::ReadFrame(fds_[i], stop_, &f);
    if (st.ok()) st = wire::OpenFrame(key_, f, &plain);
    bool ack = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!st.ok()) {
        --readers_left_;
        cv_.notify_all();
        if (stop_ || (size_ != 0 && have_bytes_ == size_)) return;  // done: the sender closed
        if (st.code() == StatusCode::kPermissionDenied || st.IsCorruption()) return Fatal(st.WithContext(Where(i)));
        ++stats_.connections_failed;
        spdlog::warn("{}: {}", Where(i), st.IsNotFound() ? "closed by the peer" : st.message());
        if (readers_left_ == 0) Fatal(Status::Unavailable(Where(i) + ": all connections are gone"));
        return;
      }
      if (!Accept(i, f, wire::FrameNonce(f), &plain, &ack)) {
        --readers_left_;
        return;
      }
    }
    if (!ack) continue;
    if (options_.on_chunk) options_.on_chunk(i, ByteRange{f.header.offset, f.header.len});
    const wire::FrameHeader a{wire::FrameType::kAck, static_cast<uint16_t>(i), options_.transfer_id, f.header.offset,
                              f.header.len};
    const std::string frame = wire::SealFrame(key_, a, nullptr, 0);
    const Status sent = wire::WriteAll(fds_[i], frame.data(), frame.size());
    std::lock_guard<std::mutex> lock(mu_);
    --acks_pending_;
    cv_.notify_all();
    if (!sent.ok()) spdlog::debug("{}: ack not sent: {}", Where(i), sent.message());
  }
}

Result<MultistreamReceived> Receiver::Run() {
  const auto start = Clock::now();
  readers_left_ = static_cast<int>(fds_.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < fds_.size(); ++i) threads.emplace_back([this, i] { ReaderLoop(i); });
  {
    std::unique_lock<std::mutex> lock(mu_);
    const auto deadline = start + std::chrono::milliseconds(options_.timeout_ms);
    const bool in_time = cv_.wait_until(
        lock, deadline, [&] { return !error_.ok() || (size_ != 0 && have_bytes_ == size_ && acks_pending_ == 0); });
    if (!in_time) {
      Fatal(Status::Timeout("multistream transfer " + std::to_string(options_.transfer_id) + " from peer '" +
                            options_.peer + "': " + std::to_string(have_bytes_) + " of " + std::to_string(size_) +
                            " bytes after " + std::to_string(options_.timeout_ms) + " ms"));
    }
    stats_.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    // Complete: keep acking resent duplicates until the sender, holding every ack, closes (bounded).
    if (error_.ok()) cv_.wait_for(lock, std::chrono::seconds(5), [&] { return readers_left_ == 0; });
    stop_ = true;
  }
  for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
  for (auto& t : threads) t.join();
  if (!error_.ok()) return error_;
  stats_.payload_bytes = size_;
  return MultistreamReceived{std::move(out_), stats_};
}

}  // namespace

Result<MultistreamReceived> ReceiveMultistream(const std::vector<int>& fds, const MultistreamKey& key,
                                               const MultistreamOptions& options) {
  if (fds.empty() || fds.size() > 64) {
    return Status::InvalidArgument("multistream from peer '" + options.peer + "': needs 1..64 connections, got " +
                                   std::to_string(fds.size()));
  }
  Receiver receiver(fds, key, options);
  return receiver.Run();
}

}  // namespace tributary::transport
