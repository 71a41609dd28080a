// The envelope decoder (transport/message.h DecodeFrames): what every byte a peer sends goes through first.
//
// Input: flags u8 | frame 0 (u16 length, bytes) | up to 5 bulk frames (u16 length, bytes each).
//   flags bit 0: direction (0 to a server, 1 to a client)
//   flags bit 1: prefix frame 0 with a correct 12-byte header for its bytes and the frame count, so the
//                fuzzer reaches the protobuf and the body checks instead of stopping at the magic
//   flags bits 2-4: number of bulk frames (0..5; the limit is 4, so 5 tests the refusal)
//   flags bit 5: small limits (256-byte envelope, 64-byte bulk frames), to reach the size refusals
#include <cstdint>
#include <cstring>
#include <vector>

#include <zmq.hpp>

#include "fuzz/fuzz_input.h"
#include "transport/message.h"

using namespace tributary;
using namespace tributary::transport;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::FuzzInput in(data, size);
  const uint8_t flags = in.U8();
  const Direction direction = (flags & 1) != 0 ? Direction::kToClient : Direction::kToServer;
  const bool fix_header = (flags & 2) != 0;
  const size_t bulk_frames = std::min<size_t>((flags >> 2) & 7, 5);
  Limits limits;
  if ((flags & 32) != 0) {
    limits.max_control_bytes = 256;
    limits.max_bulk_frame_bytes = 64;
  }

  const auto head = in.Field();
  std::vector<uint8_t> frame0;
  if (fix_header) {
    const uint32_t body = static_cast<uint32_t>(head.size());
    const uint32_t count = static_cast<uint32_t>(bulk_frames);
    frame0.insert(frame0.end(), kFrameMagic, kFrameMagic + 4);
    for (int i = 0; i < 4; ++i) frame0.push_back(static_cast<uint8_t>(body >> (8 * i)));
    for (int i = 0; i < 4; ++i) frame0.push_back(static_cast<uint8_t>(count >> (8 * i)));
  }
  frame0.insert(frame0.end(), head.begin(), head.end());

  std::vector<zmq::message_t> frames;
  frames.emplace_back(frame0.data(), frame0.size());
  for (size_t i = 0; i < bulk_frames; ++i) {
    const auto bytes = in.Field();
    frames.emplace_back(bytes.data(), bytes.size());
  }

  Message message;
  uint64_t message_id = 0;
  const Status status = DecodeFrames(frames, limits, direction, "fuzz-peer", &message, &message_id);
  if (!status.ok()) return 0;
  // What a receiver does next with any decoded message: name it, check it, read an Error body.
  const Envelope& envelope = message.envelope;
  (void)BodyName(envelope.body_case());
  ExpectBody(envelope, Envelope::kHeartbeat, "fuzz-peer").IgnoreError();
  if (envelope.body_case() == Envelope::kError) {
    StatusFromError(envelope.error(), "fuzz-peer").IgnoreError();
  }
  return 0;
}
