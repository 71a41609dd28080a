// Framing: encoding, and rejection of every kind of malformed message without a crash.
#include "transport/message.h"

#include <cstring>
#include <random>

#include <gtest/gtest.h>

#include "tests/transport/loopback_util.h"

namespace tributary::transport {
namespace {

using testing::SampleEnvelope;

std::vector<zmq::message_t> Frames(const Envelope& envelope, size_t bulk_frames = 0, const Limits& limits = {}) {
  std::vector<zmq::message_t> frames;
  frames.push_back(EncodeControlFrame(envelope, bulk_frames, limits).value());
  return frames;
}

// Frame 0 with an arbitrary header and body.
zmq::message_t RawFrame(const char magic[4], uint32_t declared_length, uint32_t declared_bulk,
                        const std::string& body) {
  zmq::message_t frame(kFrameHeaderBytes + body.size());
  auto* data = static_cast<uint8_t*>(frame.data());
  std::memcpy(data, magic, 4);
  for (int i = 0; i < 4; ++i) data[4 + i] = static_cast<uint8_t>(declared_length >> (8 * i));
  for (int i = 0; i < 4; ++i) data[8 + i] = static_cast<uint8_t>(declared_bulk >> (8 * i));
  if (!body.empty()) std::memcpy(data + kFrameHeaderBytes, body.data(), body.size());
  return frame;
}

Status Decode(std::vector<zmq::message_t>& frames, Direction direction = Direction::kToServer,
              const Limits& limits = {}) {
  Message out;
  return DecodeFrames(frames, limits, direction, "peer-x", &out);
}

TEST(MessageTest, EveryBodyTypeRoundTripsThroughFrames) {
  for (Envelope::BodyCase body : testing::AllBodyCases()) {
    const Envelope sent = SampleEnvelope(body);
    ASSERT_EQ(sent.body_case(), body);
    std::vector<zmq::message_t> frames = Frames(sent);
    const Direction direction = BodyAllowed(body, Direction::kToServer) ? Direction::kToServer : Direction::kToClient;
    if (body == Envelope::kBulkChunkHeader) {
      // A chunk header must be followed by its data frame, of the announced size.
      Envelope chunk = sent;
      chunk.mutable_bulk_chunk_header()->set_size(3);
      frames = Frames(chunk, 1);
      frames.emplace_back("abc", 3);
      Message out;
      ASSERT_TRUE(DecodeFrames(frames, {}, direction, "peer", &out).ok());
      EXPECT_TRUE(testing::SameEnvelope(out.envelope, chunk));
      ASSERT_EQ(out.bulk.size(), 1u);
      EXPECT_EQ(out.bulk[0].to_string(), "abc");
      continue;
    }
    Message out;
    const Status status = DecodeFrames(frames, {}, direction, "peer", &out);
    ASSERT_TRUE(status.ok()) << BodyName(body) << ": " << status.ToString();
    EXPECT_TRUE(testing::SameEnvelope(out.envelope, sent)) << BodyName(body);
  }
}

TEST(MessageTest, EncodeSetsMissingProtocolVersion) {
  Envelope envelope;
  envelope.mutable_heartbeat()->set_worker_id("w");
  std::vector<zmq::message_t> frames = Frames(envelope);
  Message out;
  ASSERT_TRUE(DecodeFrames(frames, {}, Direction::kToServer, "p", &out).ok());
  EXPECT_EQ(out.envelope.protocol_version(), kProtocolVersion);
}

TEST(MessageTest, RejectsTruncatedHeaderAndBadMagic) {
  std::vector<zmq::message_t> frames;
  frames.emplace_back("TRB", 3);
  Status status = Decode(frames);
  EXPECT_TRUE(status.IsInvalidArgument());
  EXPECT_NE(status.message().find("peer-x"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("truncated"), std::string::npos) << status.message();

  frames.clear();
  frames.push_back(RawFrame("HTTP", 0, 0, ""));
  status = Decode(frames);
  EXPECT_NE(status.message().find("bad magic"), std::string::npos) << status.message();

  frames.clear();
  status = Decode(frames);
  EXPECT_NE(status.message().find("empty"), std::string::npos) << status.message();
}

TEST(MessageTest, RejectsLengthMismatchAndTruncatedEnvelope) {
  const Envelope envelope = SampleEnvelope(Envelope::kHeartbeat);
  const std::string body = envelope.SerializeAsString();
  std::vector<zmq::message_t> frames;
  frames.push_back(RawFrame(kFrameMagic, static_cast<uint32_t>(body.size()), 0, body.substr(0, body.size() - 5)));
  Status status = Decode(frames);
  EXPECT_NE(status.message().find("truncated"), std::string::npos) << status.message();

  // The header agrees with a cut-off envelope: the protobuf itself is malformed.
  const std::string cut = body.substr(0, body.size() - 3);
  frames.clear();
  frames.push_back(RawFrame(kFrameMagic, static_cast<uint32_t>(cut.size()), 0, cut));
  status = Decode(frames);
  EXPECT_TRUE(status.IsInvalidArgument());
  EXPECT_NE(status.message().find("malformed"), std::string::npos) << status.message();
}

TEST(MessageTest, RejectsOversizedBeforeParsing) {
  Limits limits;
  limits.max_control_bytes = 1024;
  // Declared length far over the limit with no body behind it: refused from the header alone.
  std::vector<zmq::message_t> frames;
  frames.push_back(RawFrame(kFrameMagic, 0xFFFFFFF0u, 0, ""));
  Status status = Decode(frames, Direction::kToServer, limits);
  EXPECT_NE(status.message().find("oversized"), std::string::npos) << status.message();

  Envelope big = NewEnvelope("w");
  big.mutable_upload_update()->set_payload(std::string(4096, 'x'));
  frames = Frames(big);  // encoded under the default limit
  status = Decode(frames, Direction::kToServer, limits);
  EXPECT_NE(status.message().find("oversized"), std::string::npos) << status.message();

  // The sender refuses to encode what the receiver would refuse.
  EXPECT_FALSE(EncodeControlFrame(big, 0, limits).ok());

  Limits bulk_limits;
  bulk_limits.max_bulk_frame_bytes = 16;
  Envelope chunk = SampleEnvelope(Envelope::kBulkChunkHeader);
  chunk.mutable_bulk_chunk_header()->set_size(32);
  frames = Frames(chunk, 1);
  frames.emplace_back(std::string(32, 'c').data(), 32);
  status = Decode(frames, Direction::kToClient, bulk_limits);
  EXPECT_NE(status.message().find("oversized bulk frame"), std::string::npos) << status.message();
}

// A heartbeat as a worker sends it: a replica state and a calibration per job it holds.
Envelope WorkerHeartbeat(int jobs) {
  Envelope envelope = NewEnvelope("worker-0123456789");
  v1::Heartbeat* heartbeat = envelope.mutable_heartbeat();
  heartbeat->set_worker_id("worker-0123456789");
  heartbeat->set_state("training");
  heartbeat->set_job_id("job-20261207-0001");
  for (int j = 0; j < jobs; ++j) {
    v1::ReplicaState* replica = heartbeat->add_replicas();
    replica->set_worker_id("worker-0123456789");
    replica->set_job_id("job-20261207-" + std::to_string(1000 + j));
    replica->set_round(123456);
    replica->set_weights_hash("0123456789abcdef");
    v1::JobCalibration* calibration = heartbeat->add_calibrations();
    calibration->set_job_id(replica->job_id());
    calibration->set_tokens_per_s(12345.5);
    calibration->set_measured_unix_ms(1796630400000);
  }
  return envelope;
}

TEST(MessageTest, SmallControlMessagesHaveSmallCaps) {
  const Limits limits;
  EXPECT_EQ(limits.MaxEnvelopeBytes(Envelope::kHeartbeat), kDefaultMaxHeartbeatBytes);
  EXPECT_EQ(limits.MaxEnvelopeBytes(Envelope::kRegisterWorker), kDefaultMaxRegisterBytes);
  EXPECT_EQ(limits.MaxEnvelopeBytes(Envelope::kGetJob), kDefaultMaxQueryBytes);
  EXPECT_EQ(limits.MaxEnvelopeBytes(Envelope::kWorkerLogLines), kDefaultMaxMediumBytes);
  EXPECT_EQ(limits.MaxEnvelopeBytes(Envelope::kUploadUpdate), kDefaultMaxControlBytes);
  EXPECT_EQ(limits.MaxEnvelopeBytes(Envelope::kGetJobReply), kDefaultMaxControlBytes);
  Limits tight;
  tight.max_control_bytes = 1000;  // a smaller overall limit bounds every type
  EXPECT_EQ(tight.MaxEnvelopeBytes(Envelope::kHeartbeat), 1000u);

  // A worker holding 100 jobs fits easily (~100 bytes per job); a 50 MB-style replica list does not.
  std::vector<zmq::message_t> frames = Frames(WorkerHeartbeat(100));
  EXPECT_TRUE(Decode(frames).ok());
  Limits generous;
  generous.max_heartbeat_bytes = generous.max_control_bytes;
  const Envelope huge = WorkerHeartbeat(5000);
  const size_t huge_bytes = huge.ByteSizeLong();
  ASSERT_GT(huge_bytes, kDefaultMaxHeartbeatBytes);
  EXPECT_FALSE(EncodeControlFrame(huge, 0, limits).ok());  // the sender refuses it too
  frames = Frames(huge, 0, generous);
  const Status status = Decode(frames);
  EXPECT_TRUE(status.IsInvalidArgument());
  // One line naming the peer, the type, its size and the cap.
  EXPECT_NE(status.message().find("peer 'peer-x'"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("oversized 'heartbeat'"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find(std::to_string(huge_bytes) + " bytes"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("limit of " + std::to_string(kDefaultMaxHeartbeatBytes)), std::string::npos)
      << status.message();

  // A query padded to 100 KiB is refused; an upload of 1 MiB still gets through.
  Envelope query = NewEnvelope("cli");
  query.mutable_get_job()->set_job_id(std::string(100 * 1024, 'j'));
  Limits loose_queries;
  loose_queries.max_query_bytes = size_t{1} << 20;
  frames = Frames(query, 0, loose_queries);
  EXPECT_NE(Decode(frames).message().find("oversized 'get_job'"), std::string::npos);
  Envelope upload = NewEnvelope("w");
  upload.mutable_upload_update()->set_payload(std::string(1 << 20, 'u'));
  frames = Frames(upload);
  EXPECT_TRUE(Decode(frames).ok());
}

TEST(MessageTest, PeekBodyCaseReadsTheBodyTypeWithoutParsing) {
  for (Envelope::BodyCase body : testing::AllBodyCases()) {
    const std::string bytes = SampleEnvelope(body).SerializeAsString();
    EXPECT_EQ(PeekBodyCase(bytes.data(), bytes.size()), body) << BodyName(body);
  }
  EXPECT_EQ(PeekBodyCase("", 0), Envelope::BODY_NOT_SET);
  const std::string garbage(64, '\xff');
  EXPECT_EQ(PeekBodyCase(garbage.data(), garbage.size()), Envelope::BODY_NOT_SET);
  std::string truncated = SampleEnvelope(Envelope::kHeartbeat).SerializeAsString();
  truncated.resize(truncated.size() - 3);
  EXPECT_EQ(PeekBodyCase(truncated.data(), truncated.size()), Envelope::BODY_NOT_SET);
}

TEST(MessageTest, RejectsMissingAndUnexpectedFrames) {
  Envelope chunk = SampleEnvelope(Envelope::kBulkChunkHeader);
  std::vector<zmq::message_t> frames = Frames(chunk, 1);  // declares a data frame, sends none
  Status status = Decode(frames, Direction::kToClient);
  EXPECT_NE(status.message().find("missing frames"), std::string::npos) << status.message();

  frames = Frames(chunk, 0);  // a chunk header without its data
  status = Decode(frames, Direction::kToClient);
  EXPECT_NE(status.message().find("exactly 1 data frame"), std::string::npos) << status.message();

  chunk.mutable_bulk_chunk_header()->set_size(10);
  frames = Frames(chunk, 1);
  frames.emplace_back("short", 5);  // data frame shorter than announced
  status = Decode(frames, Direction::kToClient);
  EXPECT_TRUE(status.IsCorruption()) << status.ToString();

  frames = Frames(SampleEnvelope(Envelope::kHeartbeat), 1);
  frames.emplace_back("junk", 4);
  status = Decode(frames);
  EXPECT_NE(status.message().find("unexpected bulk frames"), std::string::npos) << status.message();

  frames = Frames(SampleEnvelope(Envelope::kHeartbeat), 100);
  status = Decode(frames);
  EXPECT_NE(status.message().find("limit"), std::string::npos) << status.message();
}

TEST(MessageTest, RejectsWrongOrFutureProtocolVersion) {
  Envelope envelope = SampleEnvelope(Envelope::kHeartbeat);
  envelope.set_protocol_version(kProtocolVersion + 6);
  std::vector<zmq::message_t> frames = Frames(envelope);
  Status status = Decode(frames);
  EXPECT_TRUE(status.IsInvalidArgument());
  EXPECT_NE(status.message().find("protocol_version " + std::to_string(kProtocolVersion + 6)), std::string::npos)
      << status.message();
  EXPECT_NE(status.message().find("peer-x"), std::string::npos);
}

TEST(MessageTest, RejectsOtherProtobufTypesAndEmptyBodies) {
  // A valid protobuf of another type (a bare Heartbeat, not an Envelope): no version, no body.
  v1::Heartbeat heartbeat;
  heartbeat.set_worker_id("w1");
  heartbeat.set_state("idle");
  const std::string body = heartbeat.SerializeAsString();
  std::vector<zmq::message_t> frames;
  frames.push_back(RawFrame(kFrameMagic, static_cast<uint32_t>(body.size()), 0, body));
  EXPECT_TRUE(Decode(frames).IsInvalidArgument());

  Envelope empty = NewEnvelope("w");
  frames = Frames(empty);
  Status status = Decode(frames);
  EXPECT_NE(status.message().find("no body"), std::string::npos) << status.message();
}

TEST(MessageTest, RejectsBodyTypeForTheWrongDirection) {
  std::vector<zmq::message_t> frames = Frames(SampleEnvelope(Envelope::kRegisterAck));
  Status status = Decode(frames, Direction::kToServer);
  EXPECT_NE(status.message().find("unexpected message type 'register_ack'"), std::string::npos) << status.message();

  frames = Frames(SampleEnvelope(Envelope::kHeartbeat));
  status = Decode(frames, Direction::kToClient);
  EXPECT_TRUE(status.IsInvalidArgument());

  const Envelope ack = SampleEnvelope(Envelope::kHeartbeatAck);
  EXPECT_TRUE(ExpectBody(ack, Envelope::kHeartbeatAck, "p").ok());
  status = ExpectBody(ack, Envelope::kRegisterAck, "coordinator");
  EXPECT_NE(status.message().find("expected a 'register_ack' message, got 'heartbeat_ack'"), std::string::npos)
      << status.message();
  const Envelope error = ErrorEnvelope("c", 1, Status::NotFound("job 'j1' does not exist"));
  status = ExpectBody(error, Envelope::kGetJobReply, "coordinator");
  EXPECT_TRUE(status.IsNotFound());
  EXPECT_NE(status.message().find("job 'j1' does not exist"), std::string::npos);
}

TEST(MessageTest, RandomGarbageNeverCrashesAndIsRejected) {
  std::mt19937 rng(7);
  const std::string valid = SampleEnvelope(Envelope::kUploadUpdate).SerializeAsString();
  int accepted = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::vector<zmq::message_t> frames;
    std::string body = valid;
    // Flip a few random bytes of a valid envelope, or use pure noise.
    if (iter % 2 == 0) {
      for (int k = 0; k < 1 + iter % 5; ++k) body[rng() % body.size()] = static_cast<char>(rng());
    } else {
      body.resize(rng() % 200);
      for (char& c : body) c = static_cast<char>(rng());
    }
    const uint32_t declared = iter % 7 == 0 ? static_cast<uint32_t>(rng()) : static_cast<uint32_t>(body.size());
    frames.push_back(RawFrame(kFrameMagic, declared, static_cast<uint32_t>(iter % 3 == 0 ? rng() % 3 : 0), body));
    for (uint32_t extra = 0; extra < static_cast<uint32_t>(iter % 3 == 0 ? rng() % 3 : 0); ++extra) {
      frames.emplace_back("x", 1);
    }
    Message out;
    const Status status = DecodeFrames(frames, {}, Direction::kToServer, "fuzz", &out);
    if (status.ok()) {
      ++accepted;
      // Whatever got through is a well-formed envelope of an allowed type.
      EXPECT_EQ(out.envelope.protocol_version(), kProtocolVersion);
      EXPECT_TRUE(BodyAllowed(out.envelope.body_case(), Direction::kToServer));
    } else {
      EXPECT_NE(status.message().find("fuzz"), std::string::npos) << status.message();
    }
  }
  EXPECT_LT(accepted, 3000);
}

TEST(MessageTest, BodyNamesAndDirections) {
  EXPECT_EQ(BodyName(Envelope::kRegisterWorker), "register_worker");
  EXPECT_EQ(BodyName(Envelope::BODY_NOT_SET), "none");
  for (Envelope::BodyCase body : testing::AllBodyCases()) {
    // Every type can be received by at least one side.
    EXPECT_TRUE(BodyAllowed(body, Direction::kToServer) || BodyAllowed(body, Direction::kToClient)) << BodyName(body);
  }
  EXPECT_TRUE(BodyAllowed(Envelope::kBulkRequest, Direction::kToServer));
  EXPECT_TRUE(BodyAllowed(Envelope::kBulkRequest, Direction::kToClient));
}

TEST(MessageTest, MessageIdsAreUniqueAndNonZero) {
  const Envelope a = NewEnvelope("x");
  const Envelope b = NewEnvelope("x");
  EXPECT_NE(a.message_id(), 0u);
  EXPECT_NE(a.message_id(), b.message_id());
}

}  // namespace
}  // namespace tributary::transport
