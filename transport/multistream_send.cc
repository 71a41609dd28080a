// Multistream sender: one writer and one ack reader thread per connection; the calling thread watches for
// completion, stalls and the deadline (transport/multistream.h).
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <spdlog/spdlog.h>

#include "transport/multistream.h"
#include "transport/multistream_wire.h"

namespace tributary::transport {
namespace {

namespace wire = multistream_wire;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

struct SendConn {
  int fd = -1;
  std::deque<ByteRange> queue;             // not yet sent
  std::map<uint64_t, ByteRange> inflight;  // sent, not acknowledged (by offset)
  bool dead = false;
  bool has_ack = false;
  Clock::time_point started{};        // first chunk sent
  Clock::time_point last_progress{};  // last ack, or when inflight became non-empty
  double goodput = 0;                 // EWMA bytes/s
};

class Sender {
 public:
  Sender(const std::vector<int>& fds, const MultistreamKey& key, const char* data, uint64_t size,
         const MultistreamOptions& options)
      : key_(key), data_(data), size_(size), options_(options), conns_(fds.size()) {
    for (size_t i = 0; i < fds.size(); ++i) conns_[i].fd = fds[i];
  }

  Result<MultistreamStats> Run();

 private:
  std::string Where(size_t i) const {
    return "multistream transfer " + std::to_string(options_.transfer_id) + " to peer '" + options_.peer + "' conn " +
           std::to_string(i);
  }
  void WriterLoop(size_t i);
  void AckLoop(size_t i);
  bool NextRange(size_t i, ByteRange* range);
  void OnAck(size_t i, const wire::FrameHeader& ack);
  void FailConn(size_t i, const std::string& why, bool stalled);
  void CheckStalls(Clock::time_point now);
  double StallSeconds(size_t i) const;
  void Fatal(Status st) {
    if (error_.ok()) error_ = std::move(st);
    cv_.notify_all();
  }
  void Teardown(std::vector<std::thread>* threads);

  const MultistreamKey key_;
  const char* data_;
  const uint64_t size_;
  const MultistreamOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<SendConn> conns_;
  std::map<uint64_t, uint64_t> planned_;  // offset -> len of every chunk
  std::set<uint64_t> acked_;
  uint64_t acked_bytes_ = 0;
  bool done_ = false;
  int readers_left_ = 0;
  size_t max_inflight_ = 1;
  Clock::time_point start_{};
  Clock::time_point last_stall_kill_{};
  std::atomic<bool> stop_{false};
  MultistreamStats stats_;
  Status error_;
};

bool Sender::NextRange(size_t i, ByteRange* range) {
  auto pop = [&](std::deque<ByteRange>& q, bool back) {
    while (!q.empty()) {
      const ByteRange r = back ? q.back() : q.front();
      back ? q.pop_back() : q.pop_front();
      if (acked_.count(r.offset) == 0) {
        *range = r;
        return true;
      }
    }
    return false;
  };
  if (pop(conns_[i].queue, false)) return true;
  // Idle: take an unsent range from the tail of the longest queue, so a fast connection is never idle while a
  // slow one still holds work.
  size_t victim = i;
  for (size_t j = 0; j < conns_.size(); ++j) {
    if (!conns_[j].dead && conns_[j].queue.size() > conns_[victim].queue.size()) victim = j;
  }
  return victim != i && pop(conns_[victim].queue, true);
}

void Sender::WriterLoop(size_t i) {
  SendConn& c = conns_[i];
  const wire::FrameHeader hello{wire::FrameType::kHello, static_cast<uint16_t>(i), options_.transfer_id, size_, 0};
  const std::string hello_frame = wire::SealFrame(key_, hello, nullptr, 0);
  if (Status st = wire::WriteAll(c.fd, hello_frame.data(), hello_frame.size()); !st.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    FailConn(i, "hello: " + st.message(), false);
    return;
  }
  while (true) {
    ByteRange r;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        if (done_ || c.dead || !error_.ok()) return true;
        return c.inflight.size() < max_inflight_ && NextRange(i, &r);
      });
      if (done_ || c.dead || !error_.ok()) return;
      const auto now = Clock::now();
      if (c.inflight.empty()) c.last_progress = now;
      if (c.started == Clock::time_point{}) c.started = now;
      c.inflight[r.offset] = r;
      ++stats_.chunks;
    }
    const wire::FrameHeader h{wire::FrameType::kData, static_cast<uint16_t>(i), options_.transfer_id, r.offset,
                              static_cast<uint32_t>(r.len)};
    const std::string frame = wire::SealFrame(key_, h, data_ + r.offset, r.len);
    if (Status st = wire::WriteAll(c.fd, frame.data(), frame.size()); !st.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!done_) FailConn(i, st.message(), false);
      return;
    }
  }
}

void Sender::AckLoop(size_t i) {
  wire::RawFrame f;
  std::string plain;
  while (true) {
    Status st = wire::ReadFrame(conns_[i].fd, stop_, &f);
    if (st.ok()) st = wire::OpenFrame(key_, f, &plain);
    std::lock_guard<std::mutex> lock(mu_);
    if (!st.ok()) {
      --readers_left_;
      cv_.notify_all();
      if (done_ || stop_) return;
      if (st.code() == StatusCode::kPermissionDenied || st.IsCorruption()) return Fatal(st.WithContext(Where(i)));
      return FailConn(i, st.IsNotFound() ? "closed by the peer" : st.message(), false);
    }
    const auto& h = f.header;
    const auto planned = planned_.find(h.offset);
    if (h.type != wire::FrameType::kAck || h.transfer_id != options_.transfer_id || planned == planned_.end() ||
        planned->second != h.len) {
      --readers_left_;
      return Fatal(Status::Corruption(Where(i) + ": unexpected frame from the receiver (type " +
                                      std::to_string(static_cast<int>(h.type)) + ", offset " +
                                      std::to_string(h.offset) + ")"));
    }
    OnAck(i, h);
  }
}

void Sender::OnAck(size_t i, const wire::FrameHeader& ack) {
  SendConn& c = conns_[i];
  const auto now = Clock::now();
  const double dt = Seconds(now - (c.has_ack ? c.last_progress : c.started));
  if (dt > 0) {
    const double sample = static_cast<double>(ack.len) / dt;
    c.goodput = c.has_ack ? 0.8 * c.goodput + 0.2 * sample : sample;
  }
  c.has_ack = true;
  c.last_progress = now;
  if (acked_.insert(ack.offset).second) acked_bytes_ += ack.len;
  for (auto& other : conns_) other.inflight.erase(ack.offset);  // a resent copy elsewhere needs no ack any more
  cv_.notify_all();
}

void Sender::FailConn(size_t i, const std::string& why, bool stalled) {
  SendConn& c = conns_[i];
  if (c.dead) return;
  c.dead = true;
  ++(stalled ? stats_.connections_stalled : stats_.connections_failed);
  ::shutdown(c.fd, SHUT_RDWR);  // wakes this connection's threads
  std::vector<ByteRange> orphans;
  for (const auto& [offset, r] : c.inflight) orphans.push_back(r);
  const size_t unacked = orphans.size();
  stats_.chunks_resent += unacked;
  orphans.insert(orphans.end(), c.queue.begin(), c.queue.end());
  c.inflight.clear();
  c.queue.clear();
  std::vector<size_t> live;
  for (size_t j = 0; j < conns_.size(); ++j) {
    if (!conns_[j].dead) live.push_back(j);
  }
  spdlog::warn("{}: {}; moving its {} ranges ({} sent and unacknowledged) to {} other connections", Where(i), why,
               orphans.size(), unacked, live.size());
  if (live.empty()) {
    return Fatal(Status::Unavailable(Where(i) + ": " + why + "; all " + std::to_string(conns_.size()) +
                                     " connections are gone"));
  }
  for (const ByteRange& r : orphans) {
    const size_t to = *std::min_element(
        live.begin(), live.end(), [&](size_t a, size_t b) { return conns_[a].queue.size() < conns_[b].queue.size(); });
    conns_[to].queue.push_back(r);
  }
  cv_.notify_all();
}

double Sender::StallSeconds(size_t i) const {
  // Expected chunk time from the lower of this connection's EWMA and its fair share of the aggregate goodput so
  // far (bursts of acks inflate a single connection's samples); before any ack, the caller's estimate.
  double estimate = conns_[i].has_ack ? conns_[i].goodput : 0;
  const double elapsed = Seconds(Clock::now() - start_);
  const auto live = std::count_if(conns_.begin(), conns_.end(), [](const SendConn& c) { return !c.dead; });
  if (acked_bytes_ > 0 && elapsed > 0 && live > 0) {
    const double share = static_cast<double>(acked_bytes_) / elapsed / static_cast<double>(live);
    estimate = estimate > 0 ? std::min(estimate, share) : share;
  }
  if (estimate <= 0 && i < options_.initial_goodput.size()) estimate = options_.initial_goodput[i];
  if (estimate <= 0) return options_.first_ack_timeout_ms / 1000.0;
  return std::max(4.0 * options_.chunk_bytes / estimate, options_.min_stall_ms / 1000.0);
}

void Sender::CheckStalls(Clock::time_point now) {
  const auto live = std::count_if(conns_.begin(), conns_.end(), [](const SendConn& c) { return !c.dead; });
  if (live <= 1) return;  // never give up on the last connection for slowness alone
  for (size_t i = 0; i < conns_.size(); ++i) {
    const SendConn& c = conns_[i];
    if (c.dead || c.inflight.empty()) continue;
    const double limit = StallSeconds(i);
    // One stall per stall period: when many stall at once the path is congested, and killing more would not help.
    if (Seconds(now - c.last_progress) > limit && Seconds(now - last_stall_kill_) > limit) {
      last_stall_kill_ = now;
      FailConn(i, "no progress for " + std::to_string(static_cast<int>(limit * 1000)) + " ms (stalled)", true);
      return;
    }
  }
}

void Sender::Teardown(std::vector<std::thread>* threads) {
  std::unique_lock<std::mutex> lock(mu_);
  done_ = true;
  cv_.notify_all();
  // Success: half-close and wait (bounded) for the receiver to close, so no final ack is cut off by a reset.
  if (error_.ok()) {
    for (auto& c : conns_) ::shutdown(c.fd, SHUT_WR);
    cv_.wait_for(lock, std::chrono::seconds(2), [&] { return readers_left_ == 0; });
  }
  stop_ = true;
  for (auto& c : conns_) ::shutdown(c.fd, SHUT_RDWR);
  lock.unlock();
  for (auto& t : *threads) t.join();
}

Result<MultistreamStats> Sender::Run() {
  const auto start = Clock::now();
  start_ = start;
  max_inflight_ = static_cast<size_t>(std::max(1, options_.max_inflight_chunks));
  const auto plan = PlanMultistreamChunks(size_, options_.initial_goodput, options_.chunk_bytes, conns_.size());
  for (size_t i = 0; i < plan.size(); ++i) {
    for (const ByteRange& r : plan[i]) {
      conns_[i].queue.push_back(r);
      planned_[r.offset] = r.len;
    }
  }
  readers_left_ = static_cast<int>(conns_.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < conns_.size(); ++i) {
    threads.emplace_back([this, i] { WriterLoop(i); });
    threads.emplace_back([this, i] { AckLoop(i); });
  }
  const auto deadline = start + std::chrono::milliseconds(options_.timeout_ms);
  {
    std::unique_lock<std::mutex> lock(mu_);
    while (error_.ok() && acked_bytes_ < size_) {
      const auto now = Clock::now();
      if (now > deadline) {
        error_ = Status::Timeout("multistream transfer " + std::to_string(options_.transfer_id) + " to peer '" +
                                 options_.peer + "': " + std::to_string(acked_bytes_) + " of " + std::to_string(size_) +
                                 " bytes acknowledged after " + std::to_string(options_.timeout_ms) + " ms");
        break;
      }
      CheckStalls(now);
      cv_.wait_for(lock, std::chrono::milliseconds(20));
    }
  }
  stats_.seconds = Seconds(Clock::now() - start);
  Teardown(&threads);
  if (!error_.ok()) return error_;
  stats_.payload_bytes = size_;
  for (const auto& c : conns_) stats_.goodput.push_back(c.goodput);
  return stats_;
}

}  // namespace

Result<MultistreamStats> SendMultistream(const std::vector<int>& fds, const MultistreamKey& key, const void* data,
                                         uint64_t size, const MultistreamOptions& options) {
  if (fds.empty() || fds.size() > 64) {
    return Status::InvalidArgument("multistream to peer '" + options.peer + "': needs 1..64 connections, got " +
                                   std::to_string(fds.size()));
  }
  if (size == 0 || options.chunk_bytes == 0 || options.chunk_bytes > multistream_wire::kMaxChunkBytes) {
    return Status::InvalidArgument("multistream to peer '" + options.peer +
                                   "': size must be > 0 and chunk_bytes in 1.." +
                                   std::to_string(multistream_wire::kMaxChunkBytes));
  }
  Sender sender(fds, key, static_cast<const char*>(data), size, options);
  return sender.Run();
}

}  // namespace tributary::transport
