// The retrying WorkClient over real loopback sockets against a scripted server (a Server driven by the
// test thread while the request waits on another): a fresh message id per attempt, late replies to
// earlier attempts skipped, Error replies as their Status, BulkRequests served mid-request with the
// reply timeout restarted, and the stop flag and give-up predicate ending the request.
#include "transport/work_client.h"

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/transport/loopback_util.h"

namespace tributary::transport {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kReplyTimeoutMs = 400;
constexpr int kWaitMs = 10000;  // generous: a failure, not a timing assertion

int64_t MsSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

// A server the test answers by hand, and a WorkClient on a Client connected to it.
class WorkClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = Server::Bind(testing::kLoopbackAny, testing::InsecureServerOptions());
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
    auto client = Client::Connect(server_->endpoint(), testing::InsecureClientOptions());
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    client_ = std::move(*client);
    sender_ = std::make_unique<BulkSender>("test uploads", /*chunk_bytes=*/1024, /*max_window=*/4);
  }

  void TearDown() override {
    stop_ = true;  // a request still running (after a failed assertion) ends
    if (future_.valid()) future_.wait();
  }

  WorkClientOptions Options(int reply_timeout_ms) {
    WorkClientOptions options;
    options.name = "test worker";
    options.peer = "test server";
    options.sender = "w1";
    options.reply_timeout_ms = reply_timeout_ms;
    options.retry_pause_ms = 50;
    options.poll_ms = 20;
    options.stopping = [this] { return stop_.load(); };
    return options;
  }

  // Starts Request on its own thread (the WorkClient is used by that thread only until it returns).
  void StartRequest(const Envelope& request, const std::function<bool()>& give_up = nullptr,
                    int reply_timeout_ms = kReplyTimeoutMs) {
    work_ = std::make_unique<WorkClient>(client_.get(), sender_.get(), Options(reply_timeout_ms));
    future_ = std::async(std::launch::async, [this, request, give_up] {
      return work_->Request(request, "job j1: CatchUpRequest", give_up);
    });
  }
  bool Returned() { return future_.wait_for(std::chrono::milliseconds(0)) == std::future_status::ready; }
  // The request's result, once it returns (Timeout when it does not within kWaitMs).
  Result<Message> Get() {
    if (future_.wait_for(std::chrono::milliseconds(kWaitMs)) != std::future_status::ready)
      return Status::Timeout("the request did not return");
    return future_.get();
  }

  // Receives until a message with `body` arrives (nullopt after timeout_ms); every message received is
  // counted in received_.
  std::optional<Incoming> WaitFor(Envelope::BodyCase body, int timeout_ms = kWaitMs) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (Clock::now() < deadline) {
      auto in = server_->Receive(20);
      if (!in.ok()) continue;
      ++received_[in->message.envelope.body_case()];
      if (in->message.envelope.body_case() == body) return std::move(*in);
    }
    return std::nullopt;
  }

  static Envelope CatchUpRequest() {
    Envelope request = NewEnvelope("w1");
    request.mutable_catch_up_request()->set_job_id("j1");
    request.mutable_catch_up_request()->set_worker_id("w1");
    request.mutable_catch_up_request()->set_to_round(3);
    return request;
  }
  static Envelope CatchUpReply(const std::string& job_id) {
    Envelope reply = NewEnvelope("server");
    reply.mutable_catch_up_reply()->set_job_id(job_id);
    reply.mutable_catch_up_reply()->set_last_committed_round(3);
    return reply;
  }
  std::unique_ptr<Server> server_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<BulkSender> sender_;
  std::unique_ptr<WorkClient> work_;
  std::atomic<bool> stop_{false};
  std::future<Result<Message>> future_;
  std::map<Envelope::BodyCase, int> received_;
};

TEST_F(WorkClientTest, RetriesAfterATimeoutWithAFreshMessageId) {
  const Envelope request = CatchUpRequest();
  StartRequest(request);
  auto first = WaitFor(Envelope::kCatchUpRequest);
  ASSERT_TRUE(first.has_value());
  const auto unanswered = Clock::now();
  auto second = WaitFor(Envelope::kCatchUpRequest);  // no reply to the first: it times out and is sent again
  ASSERT_TRUE(second.has_value());
  EXPECT_GE(MsSince(unanswered), kReplyTimeoutMs - 50) << "retried before the reply timeout";
  const uint64_t id1 = first->message.envelope.message_id();
  const uint64_t id2 = second->message.envelope.message_id();
  EXPECT_NE(id1, request.message_id());
  EXPECT_NE(id2, request.message_id());
  EXPECT_NE(id1, id2);
  EXPECT_EQ(first->message.envelope.catch_up_request().SerializeAsString(),
            request.catch_up_request().SerializeAsString());
  EXPECT_EQ(second->message.envelope.catch_up_request().SerializeAsString(),
            request.catch_up_request().SerializeAsString());
  EXPECT_EQ(second->message.envelope.sender(), "w1");

  ASSERT_TRUE(server_->Reply(*second, CatchUpReply("j1")).ok());
  Result<Message> reply = Get();
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->envelope.in_reply_to(), id2);
  EXPECT_EQ(reply->envelope.catch_up_reply().job_id(), "j1");
}

TEST_F(WorkClientTest, ALateReplyToAnEarlierAttemptIsSkipped) {
  StartRequest(CatchUpRequest());
  auto first = WaitFor(Envelope::kCatchUpRequest);
  ASSERT_TRUE(first.has_value());
  auto second = WaitFor(Envelope::kCatchUpRequest);
  ASSERT_TRUE(second.has_value());
  // The first attempt's answer arrives while the second waits: it must not be taken for the second's.
  ASSERT_TRUE(server_->Reply(*first, CatchUpReply("stale")).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_FALSE(Returned()) << "took the stale reply";
  ASSERT_TRUE(server_->Reply(*second, CatchUpReply("fresh")).ok());
  Result<Message> reply = Get();
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->envelope.catch_up_reply().job_id(), "fresh");
  EXPECT_EQ(reply->envelope.in_reply_to(), second->message.envelope.message_id());
}

TEST_F(WorkClientTest, AnErrorReplyBecomesItsStatusWithoutARetry) {
  StartRequest(CatchUpRequest());
  auto request = WaitFor(Envelope::kCatchUpRequest);
  ASSERT_TRUE(request.has_value());
  ASSERT_TRUE(server_
                  ->Reply(*request, ErrorEnvelope("server", request->message.envelope.message_id(),
                                                  Status::NotFound("job 'j1' is not known")))
                  .ok());
  Result<Message> reply = Get();
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), StatusCode::kNotFound) << reply.status().ToString();
  EXPECT_NE(reply.status().message().find("job j1: CatchUpRequest"), std::string::npos) << reply.status().ToString();
  EXPECT_NE(reply.status().message().find("job 'j1' is not known"), std::string::npos) << reply.status().ToString();
  EXPECT_FALSE(WaitFor(Envelope::kCatchUpRequest, 3 * kReplyTimeoutMs).has_value()) << "a NotFound was retried";
}

TEST_F(WorkClientTest, AnUnavailableErrorReplyIsRetried) {
  StartRequest(CatchUpRequest());
  auto first = WaitFor(Envelope::kCatchUpRequest);
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(server_
                  ->Reply(*first, ErrorEnvelope("server", first->message.envelope.message_id(),
                                                Status::Unavailable("not ready yet")))
                  .ok());
  auto second = WaitFor(Envelope::kCatchUpRequest);
  ASSERT_TRUE(second.has_value());
  EXPECT_NE(second->message.envelope.message_id(), first->message.envelope.message_id());
  ASSERT_TRUE(server_->Reply(*second, CatchUpReply("j1")).ok());
  Result<Message> reply = Get();
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->envelope.catch_up_reply().job_id(), "j1");
}

TEST_F(WorkClientTest, ServesBulkRequestsMeanwhileAndEachRestartsTheReplyTimeout) {
  // An object of 5 chunks the server pulls one chunk at a time, one every 600 ms: the whole pull (~3 s)
  // outlasts the 1 s reply timeout several times over, but no gap between chunk requests does.
  constexpr int kTimeoutMs = 1000;
  constexpr int kGapMs = 600;
  auto data = std::make_shared<std::string>(5 * 1024 - 100, '\0');
  for (size_t i = 0; i < data->size(); ++i) (*data)[i] = static_cast<char>(i * 7 + 3);
  ASSERT_TRUE(sender_->AddObject("upload/j1/3/w1", std::make_shared<MemorySource>(data)).ok());
  Envelope upload = NewEnvelope("w1");
  upload.mutable_upload_update()->set_job_id("j1");
  upload.mutable_upload_update()->set_round(3);
  upload.mutable_upload_update()->set_payload_object_id("upload/j1/3/w1");
  StartRequest(upload, nullptr, kTimeoutMs);
  auto request = WaitFor(Envelope::kUploadUpdate);
  ASSERT_TRUE(request.has_value());

  BufferSink sink;
  BulkReceiver receiver("upload/j1/3/w1", &sink, /*window=*/1, "test worker");
  receiver.ExpectObjectChecksum(sender_->ObjectChecksumOf("upload/j1/3/w1"));
  const auto pull_started = Clock::now();
  while (!receiver.complete()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(kGapMs));
    auto next = receiver.NextRequest();
    ASSERT_TRUE(next.has_value());
    Envelope pull = NewEnvelope("server");
    *pull.mutable_bulk_request() = *next;
    ASSERT_TRUE(server_->Send(request->peer.routing_id, pull).ok());
    auto chunk = WaitFor(Envelope::kBulkChunkHeader, 5000);
    ASSERT_TRUE(chunk.has_value()) << "the BulkRequest was not served";
    ASSERT_EQ(chunk->message.bulk.size(), 1u);
    ASSERT_TRUE(receiver.OnChunk(chunk->message.envelope.bulk_chunk_header(), chunk->message.bulk[0]).ok());
  }
  ASSERT_TRUE(receiver.Finish().ok());
  EXPECT_EQ(sink.data(), *data);
  EXPECT_EQ(receiver.num_chunks(), std::optional<uint64_t>(5));
  EXPECT_GT(MsSince(pull_started), 2 * kTimeoutMs);
  std::this_thread::sleep_for(std::chrono::milliseconds(kGapMs));

  // Still the first attempt: no UploadUpdate was sent again, and the answer to it is the reply.
  EXPECT_EQ(received_[Envelope::kUploadUpdate], 1) << "the upload was retried during the pull";
  ASSERT_FALSE(Returned());
  Envelope ack = NewEnvelope("server");
  ack.mutable_upload_ack()->set_accepted(true);
  ASSERT_TRUE(server_->Reply(*request, ack).ok());
  Result<Message> reply = Get();
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_TRUE(reply->envelope.upload_ack().accepted());
  EXPECT_EQ(reply->envelope.in_reply_to(), request->message.envelope.message_id());
}

TEST_F(WorkClientTest, WithoutBulkRequestsTheSameWaitTimesOut) {
  // The control for the test above: the same 1 s timeout without chunk requests resends the request.
  constexpr int kTimeoutMs = 1000;
  StartRequest(CatchUpRequest(), nullptr, kTimeoutMs);
  ASSERT_TRUE(WaitFor(Envelope::kCatchUpRequest).has_value());
  const auto sent = Clock::now();
  ASSERT_TRUE(WaitFor(Envelope::kCatchUpRequest, 3 * kTimeoutMs).has_value());
  EXPECT_GE(MsSince(sent), kTimeoutMs - 50);
}

TEST_F(WorkClientTest, TheStopFlagEndsTheWait) {
  StartRequest(CatchUpRequest(), nullptr, /*reply_timeout_ms=*/60000);
  ASSERT_TRUE(WaitFor(Envelope::kCatchUpRequest).has_value());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_FALSE(Returned());
  const auto stopped = Clock::now();
  stop_ = true;
  Result<Message> reply = Get();
  EXPECT_LT(MsSince(stopped), 2000) << "the wait outlived the stop flag";
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), StatusCode::kUnavailable) << reply.status().ToString();
  EXPECT_NE(reply.status().message().find("test worker is stopping"), std::string::npos) << reply.status().ToString();
}

TEST_F(WorkClientTest, GiveUpEndsTheRetries) {
  std::atomic<bool> give_up{false};
  StartRequest(CatchUpRequest(), [&] { return give_up.load(); });
  ASSERT_TRUE(WaitFor(Envelope::kCatchUpRequest).has_value());
  give_up = true;  // e.g. the round was committed meanwhile: no further attempt
  Result<Message> reply = Get();
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), StatusCode::kFailedPrecondition) << reply.status().ToString();
  EXPECT_NE(reply.status().message().find("no longer needed"), std::string::npos) << reply.status().ToString();
  EXPECT_FALSE(WaitFor(Envelope::kCatchUpRequest, 2 * kReplyTimeoutMs).has_value()) << "retried after giving up";
}

TEST_F(WorkClientTest, GiveUpBeforeTheFirstAttemptSendsNothing) {
  StartRequest(CatchUpRequest(), [] { return true; });
  Result<Message> reply = Get();
  EXPECT_EQ(reply.status().code(), StatusCode::kFailedPrecondition) << reply.status().ToString();
  EXPECT_FALSE(WaitFor(Envelope::kCatchUpRequest, kReplyTimeoutMs).has_value());
}

}  // namespace
}  // namespace tributary::transport
