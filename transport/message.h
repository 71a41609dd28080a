// Framing of tributary messages on ZeroMQ multipart messages.
//
// Wire layout of one message (after the ROUTER routing-id frame, which ZeroMQ adds/strips):
//   frame 0   : 12-byte header | serialized tributary.v1.Envelope
//               header = magic "TRB1" | u32 LE envelope length | u32 LE number of bulk frames
//   frame 1.. : raw bulk frames (only a BulkChunkHeader carries one: the chunk's bytes)
// The header lets a receiver reject a message (wrong magic, oversized, frame count mismatch)
// before it parses anything; sockets additionally set ZMQ_MAXMSGSIZE (Limits::SocketMaxFrameBytes)
// so an oversized frame is refused by libzmq before it is allocated.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <zmq.hpp>

#include "base/status.h"
#include "transport/proto/tributary.pb.h"

namespace tributary::transport {

using v1::Envelope;

// Version this build speaks. A peer with a newer version is refused with a clear error.
inline constexpr uint32_t kProtocolVersion = 1;
inline constexpr uint32_t kMinProtocolVersion = 1;

inline constexpr char kFrameMagic[4] = {'T', 'R', 'B', '1'};
inline constexpr size_t kFrameHeaderBytes = 12;

inline constexpr size_t kDefaultMaxControlBytes = size_t{64} << 20;    // one Envelope
inline constexpr size_t kDefaultMaxBulkFrameBytes = size_t{16} << 20;  // one bulk chunk
inline constexpr size_t kDefaultMaxBulkFrames = 4;
// Per-type caps (docs/security.md "Hostile and slow peers"), sized from what the messages carry:
// a heartbeat's replica states (~170 bytes each) and calibrations (~90 bytes) for the jobs a worker
// holds; a registration's capabilities (GPUs, NICs, datasets) and applied rounds per job; a log
// batch at most one job's log ring (1 MiB) or a job spec; queries a few ids.
inline constexpr size_t kDefaultMaxHeartbeatBytes = size_t{256} << 10;
inline constexpr size_t kDefaultMaxRegisterBytes = size_t{1} << 20;
inline constexpr size_t kDefaultMaxQueryBytes = size_t{64} << 10;
inline constexpr size_t kDefaultMaxMediumBytes = size_t{4} << 20;

// Size limits of received messages, checked before anything is allocated or parsed.
struct Limits {
  size_t max_control_bytes = kDefaultMaxControlBytes;       // serialized Envelope, any type
  size_t max_bulk_frame_bytes = kDefaultMaxBulkFrameBytes;  // each raw frame
  size_t max_bulk_frames = kDefaultMaxBulkFrames;
  // Smaller caps by body type (each also bounded by max_control_bytes):
  size_t max_heartbeat_bytes = kDefaultMaxHeartbeatBytes;  // heartbeat
  size_t max_register_bytes = kDefaultMaxRegisterBytes;    // register_worker
  // list/get/stop job, list workers, fetch logs, catch-up, export, bulk request and chunk header,
  // multistream request
  size_t max_query_bytes = kDefaultMaxQueryBytes;
  size_t max_medium_bytes = kDefaultMaxMediumBytes;  // submit_job, worker_log_lines, probe_report, error

  // The cap for one body type: a small control message gets its small cap; uploads, secure
  // aggregation, island store requests and every reply keep max_control_bytes.
  size_t MaxEnvelopeBytes(Envelope::BodyCase body) const;

  // ZMQ_MAXMSGSIZE for a socket using these limits: libzmq checks it per frame and drops the
  // connection of a peer that exceeds it, before the frame is buffered.
  int64_t SocketMaxFrameBytes() const;
};

// One decoded message: the envelope and the raw frames that followed it.
struct Message {
  Envelope envelope;
  std::vector<zmq::message_t> bulk;
};

// Which side receives a message: a Server (ROUTER) accepts requests, a Client (DEALER) replies
// and pushes. Bulk transfer and Error travel both ways (a coordinator may pull a worker's dense
// delta, a worker pulls snapshots).
enum class Direction { kToServer, kToClient };

// Name of a body case for messages ("heartbeat", "bulk_request", "none").
std::string BodyName(Envelope::BodyCase body);
// Whether a body type may be received in the given direction.
bool BodyAllowed(Envelope::BodyCase body, Direction direction);

// A fresh envelope: protocol_version set, a process-unique message_id, the sender's id.
Envelope NewEnvelope(std::string_view sender);
// An Error envelope answering `request_id` (in_reply_to) with the status's code and message.
Envelope ErrorEnvelope(std::string_view sender, uint64_t request_id, const Status& status);
// The Status carried by an Error body, prefixed with the peer ("peer 'x': ...").
Status StatusFromError(const v1::Error& error, std::string_view peer);

// Frame 0 for an envelope (sets protocol_version when it is 0). Fails if the envelope is larger
// than limits.max_control_bytes (the receiver would refuse it).
Result<zmq::message_t> EncodeControlFrame(const Envelope& envelope, size_t num_bulk_frames, const Limits& limits);

// The body type of a serialized Envelope, read from its top-level field tags without parsing the
// fields (so a cap can be applied before the parse). BODY_NOT_SET when none or not wire-valid.
Envelope::BodyCase PeekBodyCase(const void* data, size_t size);

// Validates and decodes frames (frame 0 first; routing id already removed). `peer` names the
// sender in errors. Never crashes on garbage: every failure is an InvalidArgument (or Corruption
// for inconsistent bulk frames) naming the peer. An envelope over its type's cap
// (Limits::MaxEnvelopeBytes) is refused before it is parsed, naming the type, size and cap. Consumes the frames on
// success. When the envelope parsed but failed a later check, *message_id (if given) receives its id so an Error reply
// can name the request it rejects; it is 0 otherwise.
Status DecodeFrames(std::vector<zmq::message_t>& frames, const Limits& limits, Direction direction,
                    std::string_view peer, Message* out, uint64_t* message_id = nullptr);

// Errors unless the envelope carries the expected body ("wrong body type for the context").
Status ExpectBody(const Envelope& envelope, Envelope::BodyCase expected, std::string_view peer);

}  // namespace tributary::transport
