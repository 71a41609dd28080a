// Multistream receiver: one reader thread per connection writes each authenticated chunk at its offset and acks
// it; the calling thread waits for full coverage (transport/multistream.h).
#include <sys/socket.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

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
      : key_(key), options_(options), fds_(fds), ledger_(options.transfer_id, options.max_bytes, fds.size()) {}

  Result<MultistreamReceived> Run();

 private:
  std::string Where(size_t i) const {
    return "multistream transfer " + std::to_string(options_.transfer_id) + " from peer '" + options_.peer + "' conn " +
           std::to_string(i);
  }
  void ReaderLoop(size_t i);
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
  wire::ReceiveLedger ledger_;  // the header checks and coverage
  std::string out_;
  int acks_pending_ = 0;
  int readers_left_ = 0;
  std::atomic<bool> stop_{false};
  MultistreamStats stats_;
  Status error_;
};

bool Receiver::Accept(size_t i, const wire::RawFrame& f, const std::string& nonce, std::string* plain, bool* ack) {
  const auto& h = f.header;
  *ack = false;
  const Result<wire::ReceiveLedger::Accepted> accepted = ledger_.Accept(i, h, nonce);
  if (!accepted.ok()) {
    Fatal(accepted.status().WithContext(Where(i)));
    return false;
  }
  switch (*accepted) {
    case wire::ReceiveLedger::Accepted::kHello:
      if (out_.empty()) out_.resize(ledger_.size());  // the first hello (a size is never 0)
      return true;
    case wire::ReceiveLedger::Accepted::kDuplicate:
      ++stats_.chunks;
      ++stats_.duplicate_chunks;
      break;
    case wire::ReceiveLedger::Accepted::kNewBytes:
      ++stats_.chunks;
      std::memcpy(out_.data() + h.offset, plain->data(), h.len);  // authenticated bytes: a partial overlap is equal
      break;
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
        if (stop_ || ledger_.complete()) return;  // done: the sender closed
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
    const bool in_time =
        cv_.wait_until(lock, deadline, [&] { return !error_.ok() || (ledger_.complete() && acks_pending_ == 0); });
    if (!in_time) {
      Fatal(Status::Timeout("multistream transfer " + std::to_string(options_.transfer_id) + " from peer '" +
                            options_.peer + "': " + std::to_string(ledger_.have_bytes()) + " of " +
                            std::to_string(ledger_.size()) + " bytes after " + std::to_string(options_.timeout_ms) +
                            " ms"));
    }
    stats_.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    // Complete: keep acking resent duplicates until the sender, holding every ack, closes (bounded).
    if (error_.ok()) cv_.wait_for(lock, std::chrono::seconds(5), [&] { return readers_left_ == 0; });
    stop_ = true;
  }
  for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
  for (auto& t : threads) t.join();
  if (!error_.ok()) return error_;
  stats_.payload_bytes = ledger_.size();
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
