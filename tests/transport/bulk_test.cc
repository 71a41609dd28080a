// Chunked bulk transfer over real CURVE sockets: integrity, corruption, resume after restart.
#include "transport/bulk.h"

#include <atomic>
#include <cstring>
#include <fstream>
#include <limits>
#include <mutex>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "base/file_util.h"
#include "tests/transport/loopback_util.h"

namespace tributary::transport {
namespace {

using testing::CurveSetup;
using testing::MakeCurveSetup;

std::shared_ptr<std::string> RandomBytes(size_t size, uint32_t seed) {
  auto data = std::make_shared<std::string>(size, '\0');
  std::mt19937_64 rng(seed);
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    const uint64_t word = rng();
    std::memcpy(data->data() + i, &word, 8);
  }
  for (; i < size; ++i) (*data)[i] = static_cast<char>(rng());
  return data;
}

// Serves BulkRequests (and answers heartbeats) on its own thread until destroyed.
class BulkServerThread {
 public:
  BulkServerThread(std::unique_ptr<Server> server, const BulkSender* sender)
      : server_(std::move(server)), sender_(sender), thread_([this] { Run(); }) {}
  ~BulkServerThread() { Stop(); }

  const std::string& endpoint() const { return endpoint_cache_; }
  void Stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    server_.reset();  // closes the port
  }
  // Stops serving (and closes the socket) once this many chunks were sent.
  void StopAfterChunks(uint64_t chunks) { stop_after_chunks_.store(chunks); }
  uint64_t chunks_sent() const { return chunks_sent_.load(); }
  std::vector<v1::BulkRequest> requests() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return requests_;
  }
  // Pushes a control message to every peer that sent a request, between chunks.
  void PushDuringTransfer(Envelope envelope) {
    std::lock_guard<std::mutex> lock(mutex_);
    push_ = std::move(envelope);
  }

 private:
  void Run() {
    while (!stop_.load()) {
      Result<Incoming> request = server_->Receive(20);
      if (!request.ok()) continue;
      const Envelope& envelope = request->message.envelope;
      if (envelope.body_case() == Envelope::kHeartbeat) {
        Envelope ack = NewEnvelope("bulk-server");
        ack.mutable_heartbeat_ack()->set_sequence(envelope.heartbeat().sequence());
        server_->Reply(*request, ack).IgnoreError();
        continue;
      }
      if (envelope.body_case() != Envelope::kBulkRequest) continue;
      std::optional<Envelope> push;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        requests_.push_back(envelope.bulk_request());
        push.swap(push_);
      }
      Status status = sender_->HandleRequest(envelope.bulk_request(), [&](Envelope chunk, zmq::message_t data) {
        if (chunks_sent_.load() >= stop_after_chunks_.load()) return Status::Unavailable("stopping");
        std::vector<zmq::message_t> bulk;
        bulk.push_back(std::move(data));
        TRIB_RETURN_IF_ERROR(server_->Reply(*request, std::move(chunk), std::move(bulk)));
        chunks_sent_.fetch_add(1);
        if (push) {  // a control message interleaved after the first chunk
          server_->Send(request->peer.routing_id, *push).IgnoreError();
          push.reset();
        }
        return Status::OK();
      });
      if (!status.ok() && status.code() != StatusCode::kUnavailable) {
        server_->Reply(*request, ErrorEnvelope("bulk-server", 0, status)).IgnoreError();
      }
      if (chunks_sent_.load() >= stop_after_chunks_.load()) return;  // "crash" mid-transfer
    }
  }

  std::unique_ptr<Server> server_;
  const BulkSender* sender_;
  std::string endpoint_cache_ = server_->endpoint();
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> chunks_sent_{0};
  std::atomic<uint64_t> stop_after_chunks_{std::numeric_limits<uint64_t>::max()};
  mutable std::mutex mutex_;
  std::vector<v1::BulkRequest> requests_;
  std::optional<Envelope> push_;
  std::thread thread_;
};

struct Fixture {
  CurveSetup setup = MakeCurveSetup();
  std::unique_ptr<Server> NewServer(const std::string& endpoint = testing::kLoopbackAny) {
    return Server::Bind(endpoint, testing::SecureServerOptions(setup)).value();
  }
  std::unique_ptr<Client> NewClient(const std::string& endpoint) {
    return Client::Connect(endpoint, testing::SecureClientOptions(setup, setup.client)).value();
  }
};

TEST(BulkTest, Transfers20MiBWithVerifiedChunks) {
  Fixture f;
  const auto data = RandomBytes(20 << 20, 1);
  BulkSender sender("coordinator");
  ASSERT_TRUE(sender.AddObject("snapshot-r7", std::make_shared<MemorySource>(data)).ok());
  EXPECT_EQ(sender.ObjectChecksumOf("snapshot-r7"), ObjectChecksum(data->data(), data->size()));
  BulkServerThread server(f.NewServer(), &sender);
  std::unique_ptr<Client> client = f.NewClient(server.endpoint());

  BufferSink sink;
  FetchOptions options;
  options.expected_checksum = ObjectChecksum(data->data(), data->size());
  const Status status = FetchObject(*client, "snapshot-r7", &sink, options);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_TRUE(sink.data() == *data);
  EXPECT_EQ(server.chunks_sent(), 20u);
  // Pulled in windows: no single request asked for more than the window.
  for (const v1::BulkRequest& request : server.requests()) EXPECT_LE(request.max_chunks(), options.window);
}

TEST(BulkTest, FileSinkCommitsOnlyVerifiedObjectsAndFileSourceServes) {
  Fixture f;
  testing::TempDir dir;
  const auto data = RandomBytes((3 << 20) + 12345, 2);
  const std::string source_path = dir.path() + "/weights.bin";
  ASSERT_TRUE(WriteFileAtomic(source_path, *data).ok());
  BulkSender sender("coordinator", 256 * 1024);
  ASSERT_TRUE(sender.AddObject("weights", FileSource::Open(source_path).value()).ok());
  BulkServerThread server(f.NewServer(), &sender);
  std::unique_ptr<Client> client = f.NewClient(server.endpoint());

  const std::string target = dir.path() + "/received.bin";
  {
    FileSink sink(target);
    const Status status = FetchObject(*client, "weights", &sink, FetchOptions{});
    ASSERT_TRUE(status.ok()) << status.ToString();
  }
  EXPECT_TRUE(ReadFileToString(target).value() == *data);
  EXPECT_FALSE(ReadFileToString(target + ".partial").ok());
}

TEST(BulkTest, EdgeSizesIncludingEmpty) {
  Fixture f;
  constexpr uint32_t kChunk = 4096;
  BulkSender sender("coordinator", kChunk);
  const std::vector<size_t> sizes = {0, 1, kChunk - 1, kChunk, kChunk + 1, 5 * kChunk};
  std::vector<std::shared_ptr<std::string>> objects;
  for (size_t i = 0; i < sizes.size(); ++i) {
    objects.push_back(RandomBytes(sizes[i], 10 + static_cast<uint32_t>(i)));
    ASSERT_TRUE(sender.AddObject("obj" + std::to_string(i), std::make_shared<MemorySource>(objects.back())).ok());
  }
  BulkServerThread server(f.NewServer(), &sender);
  std::unique_ptr<Client> client = f.NewClient(server.endpoint());
  for (size_t i = 0; i < sizes.size(); ++i) {
    BufferSink sink;
    FetchOptions options;
    options.window = 2;
    const Status status = FetchObject(*client, "obj" + std::to_string(i), &sink, options);
    ASSERT_TRUE(status.ok()) << sizes[i] << ": " << status.ToString();
    EXPECT_TRUE(sink.data() == *objects[i]) << sizes[i];
  }
}

TEST(BulkTest, PersistentlyCorruptChunkIsReportedWithObjectAndChunk) {
  Fixture f;
  constexpr uint32_t kChunk = 64 * 1024;
  auto data = RandomBytes(10 * kChunk, 3);
  BulkSender sender("coordinator", kChunk);
  ASSERT_TRUE(sender.AddObject("delta-w3", std::make_shared<MemorySource>(data)).ok());
  (*data)[3 * kChunk + 17] ^= 0x40;  // bit rot after the checksums were computed
  BulkServerThread server(f.NewServer(), &sender);
  std::unique_ptr<Client> client = f.NewClient(server.endpoint());

  testing::TempDir dir;
  const std::string target = dir.path() + "/delta.bin";
  {
    FileSink sink(target);
    const Status status = FetchObject(*client, "delta-w3", &sink, FetchOptions{});
    EXPECT_TRUE(status.IsCorruption()) << status.ToString();
    EXPECT_NE(status.message().find("object 'delta-w3' chunk 3/10"), std::string::npos) << status.message();
    EXPECT_NE(status.message().find("checksum mismatch"), std::string::npos) << status.message();
  }
  // Nothing unverified is left behind under either name.
  EXPECT_FALSE(ReadFileToString(target).ok());
  EXPECT_FALSE(ReadFileToString(target + ".partial").ok());
}

// Corrupts the bytes of one chunk on its first read after registration only (a flipped bit in
// transit that a retry fixes).
class FlakySource : public BulkSource {
 public:
  FlakySource(std::shared_ptr<const std::string> data, uint64_t bad_offset)
      : inner_(data), size_(data->size()), bad_offset_(bad_offset) {}
  uint64_t size() const override { return size_; }
  Status Read(uint64_t offset, void* out, size_t n) const override {
    TRIB_RETURN_IF_ERROR(inner_.Read(offset, out, n));
    if (offset == bad_offset_ && reads_of_bad_.fetch_add(1) == 1) static_cast<char*>(out)[0] ^= 1;
    return Status::OK();
  }
  int reads_of_bad() const { return reads_of_bad_.load(); }

 private:
  MemorySource inner_;
  uint64_t size_;
  uint64_t bad_offset_;
  mutable std::atomic<int> reads_of_bad_{0};
};

TEST(BulkTest, TransientCorruptionIsDetectedAndRetried) {
  testing::LogCapture log;  // first: outlives every thread that may log
  Fixture f;
  constexpr uint32_t kChunk = 32 * 1024;
  const auto data = RandomBytes(8 * kChunk, 4);
  auto source = std::make_shared<FlakySource>(data, 5 * kChunk);
  BulkSender sender("coordinator", kChunk);
  ASSERT_TRUE(sender.AddObject("snap", source).ok());
  BulkServerThread server(f.NewServer(), &sender);
  std::unique_ptr<Client> client = f.NewClient(server.endpoint());
  BufferSink sink;
  const Status status = FetchObject(*client, "snap", &sink, FetchOptions{});
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_TRUE(sink.data() == *data);
  EXPECT_GE(source->reads_of_bad(), 3);  // registration, the corrupt send, the retry
  EXPECT_TRUE(log.Contains("object 'snap' chunk 5/8"));
}

TEST(BulkTest, UnknownObjectIsNotFound) {
  Fixture f;
  BulkSender sender("coordinator");
  BulkServerThread server(f.NewServer(), &sender);
  std::unique_ptr<Client> client = f.NewClient(server.endpoint());
  BufferSink sink;
  const Status status = FetchObject(*client, "nope", &sink, FetchOptions{});
  EXPECT_TRUE(status.IsNotFound()) << status.ToString();
  EXPECT_NE(status.message().find("'nope'"), std::string::npos) << status.message();
}

TEST(BulkTest, ResumesFromFirstMissingChunkAfterServerRestart) {
  Fixture f;
  constexpr uint32_t kChunk = 256 * 1024;
  const auto data = RandomBytes(40 * kChunk, 5);  // 10 MiB
  BulkSender sender("coordinator", kChunk);
  ASSERT_TRUE(sender.AddObject("snapshot", std::make_shared<MemorySource>(data)).ok());

  auto first = std::make_unique<BulkServerThread>(f.NewServer(), &sender);
  const std::string endpoint = first->endpoint();
  first->StopAfterChunks(13);  // the server "crashes" after 13 chunks
  std::unique_ptr<Client> client = f.NewClient(endpoint);

  std::unique_ptr<BulkServerThread> second;
  std::thread restarter([&] {
    while (first->chunks_sent() < 13) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    first->Stop();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // down for a moment
    second = std::make_unique<BulkServerThread>(f.NewServer(endpoint), &sender);
  });

  BufferSink sink;
  FetchOptions options;
  options.window = 4;
  options.chunk_timeout_ms = 300;
  options.max_attempts = 40;  // tolerate a slow restart on a loaded machine
  const Status status = FetchObject(*client, "snapshot", &sink, options);
  restarter.join();
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_TRUE(sink.data() == *data);
  // The restarted server was asked to resume, not to start over.
  ASSERT_NE(second, nullptr);
  const std::vector<v1::BulkRequest> resumed = second->requests();
  ASSERT_FALSE(resumed.empty());
  // Chunks still in flight when the first server died (at most one window) are lost with it, so the
  // resume point is within a window of what the first server sent, and never the start. The DEALER
  // may also deliver window requests it queued while disconnected, so look at the lowest one.
  uint64_t from = resumed.front().from_chunk();
  for (const auto& request : resumed) from = std::min<uint64_t>(from, request.from_chunk());
  const uint64_t sent_before_crash = first->chunks_sent();
  EXPECT_GT(from, 0u);
  EXPECT_GE(from + options.window, sent_before_crash);
  EXPECT_LE(from, sent_before_crash);
  EXPECT_LE(second->chunks_sent(), 40u - from + options.window);
}

TEST(BulkTest, ControlMessagesInterleaveWithChunks) {
  Fixture f;
  const auto data = RandomBytes(8 << 20, 6);
  BulkSender sender("coordinator");
  ASSERT_TRUE(sender.AddObject("snapshot", std::make_shared<MemorySource>(data)).ok());
  BulkServerThread server(f.NewServer(), &sender);
  Envelope round_start = NewEnvelope("coordinator");
  round_start.mutable_round_start()->set_job_id("j1");
  round_start.mutable_round_start()->set_round(3);
  server.PushDuringTransfer(round_start);
  std::unique_ptr<Client> client = f.NewClient(server.endpoint());

  std::vector<Envelope> others;
  BufferSink sink;
  const Status status = FetchObject(*client, "snapshot", &sink, FetchOptions{},
                                    [&](Message&& message) { others.push_back(message.envelope); });
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_TRUE(sink.data() == *data);
  ASSERT_EQ(others.size(), 1u);
  EXPECT_EQ(others[0].round_start().round(), 3u);
}

TEST(BulkTest, ManyClientThreadsFetchConcurrently) {
  Fixture f;
  constexpr int kClients = 6;
  const auto data = RandomBytes(3 << 20, 7);
  BulkSender sender("coordinator", 256 * 1024);
  ASSERT_TRUE(sender.AddObject("snapshot", std::make_shared<MemorySource>(data)).ok());
  BulkServerThread server(f.NewServer(), &sender);
  std::atomic<int> good{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      std::unique_ptr<Client> client = f.NewClient(server.endpoint());
      BufferSink sink;
      FetchOptions options;
      options.window = 4;
      if (FetchObject(*client, "snapshot", &sink, options).ok() && sink.data() == *data) good.fetch_add(1);
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(good.load(), kClients);
}

TEST(BulkTest, ReceiverRejectsInconsistentChunkHeaders) {
  BufferSink sink;
  BulkReceiver receiver("obj", &sink, 4, "peer-z");
  const std::string bytes = "0123456789";
  v1::BulkChunkHeader header;
  header.set_object_id("obj");
  header.set_chunk_index(0);
  header.set_num_chunks(2);
  header.set_offset(0);
  header.set_size(8);
  header.set_total_size(10);
  header.set_chunk_size(8);
  header.set_chunk_checksum(ChunkChecksum(bytes.data(), 8));
  header.set_object_checksum(ObjectChecksum(bytes.data(), bytes.size()));
  std::optional<v1::BulkRequest> request = receiver.NextRequest();
  ASSERT_TRUE(request.has_value());
  EXPECT_EQ(request->from_chunk(), 0u);

  v1::BulkChunkHeader wrong_count = header;
  wrong_count.set_num_chunks(3);
  Status status = receiver.OnChunk(wrong_count, zmq::message_t(bytes.data(), 8));
  EXPECT_TRUE(status.IsCorruption()) << status.ToString();

  ASSERT_TRUE(receiver.OnChunk(header, zmq::message_t(bytes.data(), 8)).ok());
  EXPECT_EQ(receiver.next_chunk(), 1u);
  // A duplicate is ignored, not an error.
  EXPECT_TRUE(receiver.OnChunk(header, zmq::message_t(bytes.data(), 8)).ok());
  EXPECT_EQ(receiver.next_chunk(), 1u);

  v1::BulkChunkHeader last = header;
  last.set_chunk_index(1);
  last.set_offset(8);
  last.set_size(2);
  last.set_chunk_checksum(ChunkChecksum(bytes.data() + 8, 2));
  v1::BulkChunkHeader changed = last;
  changed.set_total_size(11);
  status = receiver.OnChunk(changed, zmq::message_t(bytes.data() + 8, 2));
  EXPECT_NE(status.message().find("changed during the transfer"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("peer-z"), std::string::npos) << status.message();

  ASSERT_TRUE(receiver.OnChunk(last, zmq::message_t(bytes.data() + 8, 2)).ok());
  ASSERT_TRUE(receiver.complete());
  receiver.ExpectObjectChecksum(ObjectChecksum("other", 5));
  status = receiver.Finish();
  EXPECT_TRUE(status.IsCorruption()) << status.ToString();
}

}  // namespace
}  // namespace tributary::transport
