#include "transport/message.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/wire_format_lite.h>
#include <sodium.h>

namespace tributary::transport {
namespace {

void PutU32(uint8_t* out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<uint8_t>(value >> (8 * i));
}

uint32_t GetU32(const uint8_t* in) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) value |= static_cast<uint32_t>(in[i]) << (8 * i);
  return value;
}

Status PeerError(std::string_view peer, const std::string& what) {
  return Status::InvalidArgument("peer '" + std::string(peer) + "': " + what);
}

// Message ids start at a random point so ids from a restarted process do not repeat old ones.
uint64_t NextMessageId() {
  static std::atomic<uint64_t> next = [] {
    uint64_t start = 0;
    if (sodium_init() < 0) return uint64_t{1};
    randombytes_buf(&start, sizeof(start));
    return (start >> 1) | 1;  // leave headroom before wrap-around, never 0
  }();
  return next.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

int64_t Limits::SocketMaxFrameBytes() const {
  // libzmq applies ZMQ_MAXMSGSIZE to the CURVE-encrypted frame, which is a little larger than the
  // plaintext: leave room so a message at the application limit is refused by DecodeFrames (with a
  // clear error) rather than by a dropped connection.
  constexpr size_t kMechanismOverhead = 1024;
  const size_t control = max_control_bytes + kFrameHeaderBytes + kMechanismOverhead;
  const size_t bulk = max_bulk_frame_bytes + kMechanismOverhead;
  const size_t largest = control > bulk ? control : bulk;
  if (largest > static_cast<size_t>(std::numeric_limits<int64_t>::max())) return -1;
  return static_cast<int64_t>(largest);
}

size_t Limits::MaxEnvelopeBytes(Envelope::BodyCase body) const {
  size_t cap = max_control_bytes;
  switch (body) {
    case Envelope::kHeartbeat: cap = max_heartbeat_bytes; break;
    case Envelope::kRegisterWorker: cap = max_register_bytes; break;
    case Envelope::kListJobs:
    case Envelope::kGetJob:
    case Envelope::kStopJob:
    case Envelope::kListWorkers:
    case Envelope::kFetchLogs:
    case Envelope::kCatchUpRequest:
    case Envelope::kExportModel:
    case Envelope::kBulkRequest:
    case Envelope::kBulkChunkHeader:
    case Envelope::kMultistreamRequest: cap = max_query_bytes; break;
    case Envelope::kSubmitJob:
    case Envelope::kWorkerLogLines:
    case Envelope::kProbeReport:
    case Envelope::kError: cap = max_medium_bytes; break;
    default: break;
  }
  return std::min(cap, max_control_bytes);
}

Envelope::BodyCase PeekBodyCase(const void* data, size_t size) {
  using google::protobuf::internal::WireFormatLite;
  if (size > static_cast<size_t>(std::numeric_limits<int>::max())) return Envelope::BODY_NOT_SET;
  google::protobuf::io::CodedInputStream in(static_cast<const uint8_t*>(data), static_cast<int>(size));
  const google::protobuf::OneofDescriptor* body = Envelope::descriptor()->FindOneofByName("body");
  Envelope::BodyCase found = Envelope::BODY_NOT_SET;
  while (true) {
    const uint32_t tag = in.ReadTag();
    if (tag == 0) break;  // end of input (or an invalid tag: the parse will say so)
    const int number = WireFormatLite::GetTagFieldNumber(tag);
    const google::protobuf::FieldDescriptor* field = Envelope::descriptor()->FindFieldByNumber(number);
    if (field != nullptr && field->containing_oneof() == body) {
      found = static_cast<Envelope::BodyCase>(number);  // the last one wins, as in a parse
    }
    if (!WireFormatLite::SkipField(&in, tag)) return Envelope::BODY_NOT_SET;
  }
  return found;
}

std::string BodyName(Envelope::BodyCase body) {
  if (body == Envelope::BODY_NOT_SET) return "none";
  const google::protobuf::FieldDescriptor* field = Envelope::descriptor()->FindFieldByNumber(static_cast<int>(body));
  if (field == nullptr) return "unknown(" + std::to_string(static_cast<int>(body)) + ")";
  return field->name();
}

bool BodyAllowed(Envelope::BodyCase body, Direction direction) {
  switch (body) {
    case Envelope::kRegisterWorker:
    case Envelope::kHeartbeat:
    case Envelope::kUploadUpdate:
    case Envelope::kSubmitJob:
    case Envelope::kListJobs:
    case Envelope::kGetJob:
    case Envelope::kStopJob:
    case Envelope::kFetchLogs:
    case Envelope::kCatchUpRequest:
    case Envelope::kExportModel:
    case Envelope::kSecaggRequest:
    case Envelope::kIslandStoreRequest:
    case Envelope::kWorkerLogLines:
    case Envelope::kProbeReport:
    case Envelope::kMultistreamRequest:
    case Envelope::kListWorkers: return direction == Direction::kToServer;
    case Envelope::kRegisterAck:
    case Envelope::kHeartbeatAck:
    case Envelope::kRoundStart:
    case Envelope::kUploadAck:
    case Envelope::kRoundCommitted:
    case Envelope::kSubmitJobReply:
    case Envelope::kListJobsReply:
    case Envelope::kGetJobReply:
    case Envelope::kStopJobReply:
    case Envelope::kFetchLogsReply:
    case Envelope::kCatchUpReply:
    case Envelope::kExportModelReply:
    case Envelope::kSecaggReply:
    case Envelope::kIslandStoreReply:
    case Envelope::kWorkerLogLinesReply:
    case Envelope::kProbeAssignment:
    case Envelope::kMultistreamOffer:
    case Envelope::kListWorkersReply: return direction == Direction::kToClient;
    case Envelope::kBulkRequest:
    case Envelope::kBulkChunkHeader:
    case Envelope::kError: return true;
    case Envelope::BODY_NOT_SET: return false;
  }
  return false;
}

Envelope NewEnvelope(std::string_view sender) {
  Envelope envelope;
  envelope.set_protocol_version(kProtocolVersion);
  envelope.set_message_id(NextMessageId());
  envelope.set_sender(std::string(sender));
  return envelope;
}

Envelope ErrorEnvelope(std::string_view sender, uint64_t request_id, const Status& status) {
  Envelope envelope = NewEnvelope(sender);
  envelope.set_in_reply_to(request_id);
  envelope.mutable_error()->set_code(static_cast<uint32_t>(status.code()));
  envelope.mutable_error()->set_message(status.message());
  return envelope;
}

Status StatusFromError(const v1::Error& error, std::string_view peer) {
  StatusCode code = StatusCode::kInternal;
  if (error.code() >= static_cast<uint32_t>(StatusCode::kInvalidArgument) &&
      error.code() <= static_cast<uint32_t>(StatusCode::kUnimplemented)) {
    code = static_cast<StatusCode>(error.code());
  }
  return Status(code, "peer '" + std::string(peer) + "' answered: " + error.message());
}

Result<zmq::message_t> EncodeControlFrame(const Envelope& envelope, size_t num_bulk_frames, const Limits& limits) {
  const Envelope* to_encode = &envelope;
  Envelope versioned;
  if (envelope.protocol_version() == 0) {
    versioned = envelope;
    versioned.set_protocol_version(kProtocolVersion);
    to_encode = &versioned;
  }
  const size_t body_bytes = to_encode->ByteSizeLong();
  const size_t cap = limits.MaxEnvelopeBytes(envelope.body_case());
  if (body_bytes > cap) {
    return Status::InvalidArgument("envelope '" + BodyName(envelope.body_case()) + "' is " +
                                   std::to_string(body_bytes) + " bytes, over its limit of " + std::to_string(cap) +
                                   " (send large data as bulk chunks)");
  }
  if (num_bulk_frames > std::numeric_limits<uint32_t>::max()) {
    return Status::InvalidArgument("too many bulk frames: " + std::to_string(num_bulk_frames));
  }
  zmq::message_t frame(kFrameHeaderBytes + body_bytes);
  auto* data = static_cast<uint8_t*>(frame.data());
  std::memcpy(data, kFrameMagic, sizeof(kFrameMagic));
  PutU32(data + 4, static_cast<uint32_t>(body_bytes));
  PutU32(data + 8, static_cast<uint32_t>(num_bulk_frames));
  if (!to_encode->SerializeToArray(data + kFrameHeaderBytes, static_cast<int>(body_bytes))) {
    return Status::Internal("failed to serialize envelope '" + BodyName(envelope.body_case()) + "'");
  }
  return frame;
}

Status DecodeFrames(std::vector<zmq::message_t>& frames, const Limits& limits, Direction direction,
                    std::string_view peer, Message* out, uint64_t* message_id) {
  if (message_id != nullptr) *message_id = 0;
  if (frames.empty()) return PeerError(peer, "empty message (no frames)");
  const zmq::message_t& head = frames[0];
  if (head.size() < kFrameHeaderBytes) {
    return PeerError(peer, "truncated message: frame 0 has " + std::to_string(head.size()) +
                               " bytes, the header alone needs " + std::to_string(kFrameHeaderBytes));
  }
  const auto* data = static_cast<const uint8_t*>(head.data());
  if (std::memcmp(data, kFrameMagic, sizeof(kFrameMagic)) != 0) {
    return PeerError(peer, "not a tributary message (bad magic; expected \"TRB1\")");
  }
  const uint32_t body_bytes = GetU32(data + 4);
  const uint32_t declared_bulk = GetU32(data + 8);
  if (body_bytes > limits.max_control_bytes || head.size() - kFrameHeaderBytes > limits.max_control_bytes) {
    return PeerError(peer, "oversized message: envelope of " +
                               std::to_string(std::max<size_t>(body_bytes, head.size() - kFrameHeaderBytes)) +
                               " bytes exceeds the limit of " + std::to_string(limits.max_control_bytes));
  }
  if (body_bytes != head.size() - kFrameHeaderBytes) {
    return PeerError(peer, "truncated message: header declares an envelope of " + std::to_string(body_bytes) +
                               " bytes, frame 0 carries " + std::to_string(head.size() - kFrameHeaderBytes));
  }
  if (declared_bulk > limits.max_bulk_frames) {
    return PeerError(peer, "message declares " + std::to_string(declared_bulk) + " bulk frames, limit is " +
                               std::to_string(limits.max_bulk_frames));
  }
  if (frames.size() - 1 != declared_bulk) {
    return PeerError(peer,
                     std::string(frames.size() - 1 < declared_bulk ? "missing frames" : "unexpected extra frames") +
                         ": header declares " + std::to_string(declared_bulk) + " bulk frames, message has " +
                         std::to_string(frames.size() - 1));
  }
  for (size_t i = 1; i < frames.size(); ++i) {
    if (frames[i].size() > limits.max_bulk_frame_bytes) {
      return PeerError(peer, "oversized bulk frame " + std::to_string(i) + ": " + std::to_string(frames[i].size()) +
                                 " bytes exceeds the limit of " + std::to_string(limits.max_bulk_frame_bytes));
    }
  }

  const Envelope::BodyCase peeked = PeekBodyCase(data + kFrameHeaderBytes, body_bytes);
  if (body_bytes > limits.MaxEnvelopeBytes(peeked)) {
    return PeerError(peer, "oversized '" + BodyName(peeked) + "' message: " + std::to_string(body_bytes) +
                               " bytes exceeds its limit of " + std::to_string(limits.MaxEnvelopeBytes(peeked)));
  }

  Envelope envelope;
  bool parsed = false;
  {
    // Our error names the peer; protobuf's own stderr line (e.g. invalid UTF-8) would let a garbage
    // sender flood the log.
    google::protobuf::LogSilencer silence;
    parsed = envelope.ParseFromArray(data + kFrameHeaderBytes, static_cast<int>(body_bytes));
  }
  if (!parsed) {
    return PeerError(peer, "malformed envelope: " + std::to_string(body_bytes) + " bytes are not a valid protobuf");
  }
  if (message_id != nullptr) *message_id = envelope.message_id();
  const uint32_t version = envelope.protocol_version();
  if (version == 0) return PeerError(peer, "envelope has no protocol_version (not a tributary envelope?)");
  if (version > kProtocolVersion) {
    return PeerError(peer, "speaks protocol_version " + std::to_string(version) + ", newer than this build's " +
                               std::to_string(kProtocolVersion) + " (upgrade this side)");
  }
  if (version < kMinProtocolVersion) {
    return PeerError(peer, "speaks protocol_version " + std::to_string(version) + ", older than the oldest supported " +
                               std::to_string(kMinProtocolVersion) + " (upgrade the peer)");
  }
  const Envelope::BodyCase body = envelope.body_case();
  if (body == Envelope::BODY_NOT_SET) {
    return PeerError(peer, "envelope (message_id " + std::to_string(envelope.message_id()) +
                               ") has no body, or a body type unknown to this build");
  }
  if (!BodyAllowed(body, direction)) {
    return PeerError(peer, "unexpected message type '" + BodyName(body) + "' sent to a " +
                               (direction == Direction::kToServer ? "server" : "client"));
  }
  if (body == Envelope::kBulkChunkHeader) {
    const v1::BulkChunkHeader& chunk = envelope.bulk_chunk_header();
    if (frames.size() != 2) {
      return PeerError(peer, "bulk chunk " + std::to_string(chunk.chunk_index()) + " of object '" + chunk.object_id() +
                                 "' must be followed by exactly 1 data frame, got " +
                                 std::to_string(frames.size() - 1));
    }
    if (frames[1].size() != chunk.size()) {
      return Status::Corruption("peer '" + std::string(peer) + "': object '" + chunk.object_id() + "' chunk " +
                                std::to_string(chunk.chunk_index()) + ": header says " + std::to_string(chunk.size()) +
                                " bytes, data frame has " + std::to_string(frames[1].size()));
    }
  } else if (frames.size() != 1) {
    return PeerError(peer, "message type '" + BodyName(body) + "' carries " + std::to_string(frames.size() - 1) +
                               " unexpected bulk frames");
  }

  out->envelope = std::move(envelope);
  out->bulk.clear();
  for (size_t i = 1; i < frames.size(); ++i) out->bulk.push_back(std::move(frames[i]));
  frames.clear();
  return Status::OK();
}

Status ExpectBody(const Envelope& envelope, Envelope::BodyCase expected, std::string_view peer) {
  if (envelope.body_case() == expected) return Status::OK();
  if (envelope.body_case() == Envelope::kError) return StatusFromError(envelope.error(), peer);
  return PeerError(peer,
                   "expected a '" + BodyName(expected) + "' message, got '" + BodyName(envelope.body_case()) + "'");
}

}  // namespace tributary::transport
