// Frame format of the multi-connection transfer (transport/multistream.h, docs/multistream.md). Exposed so tests can
// craft, reorder, replay and tamper with frames on a raw socket.
//
// Frame = header (52 bytes, little-endian) + ciphertext (len + 16 bytes):
//   u32 magic "TMS1" | u8 type | u8 reserved | u16 connection | u64 transfer_id | u64 offset | u32 len | 24 B nonce
// The first 28 header bytes are the AEAD's additional data, so every field is authenticated; the nonce is random.
//   hello: offset = total size, len 0      data: the chunk [offset, offset + len)      ack: the acked chunk, len 0
// (an ack's len field is the acked chunk's length; its ciphertext is only the 16-byte tag).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_set>
#include <vector>

#include "base/status.h"
#include "transport/multistream.h"

namespace tributary::transport::multistream_wire {

inline constexpr uint32_t kMagic = 0x31534D54;  // "TMS1" little-endian
inline constexpr size_t kHeaderBytes = 52;
inline constexpr size_t kAadBytes = 28;
inline constexpr size_t kNonceBytes = 24;
inline constexpr size_t kTagBytes = 16;
inline constexpr uint32_t kMaxChunkBytes = uint32_t{16} << 20;

enum class FrameType : uint8_t { kHello = 1, kData = 2, kAck = 3 };

struct FrameHeader {
  FrameType type = FrameType::kData;
  uint16_t connection = 0;
  uint64_t transfer_id = 0;
  uint64_t offset = 0;
  uint32_t len = 0;  // plaintext bytes (data) or the acked length (ack)
};

// header + sealed payload (payload_len bytes at payload; empty for hello and ack).
std::string SealFrame(const MultistreamKey& key, const FrameHeader& header, const void* payload, size_t payload_len);

// A frame read off the wire, not yet opened.
struct RawFrame {
  FrameHeader header;
  std::string header_bytes;  // kHeaderBytes
  std::string ciphertext;
};

// Parses and opens a frame; plaintext gets the payload. PermissionDenied when authentication fails.
Status OpenFrame(const MultistreamKey& key, const RawFrame& frame, std::string* plaintext);

// The nonce of a frame (24 bytes), for replay detection.
std::string FrameNonce(const RawFrame& frame);

// The receiver's checks of an authenticated frame's header against its transfer, and which bytes it holds. No
// sockets, threads or locks (the receiver calls it under its mutex), so the fuzz harness drives it directly.
class ReceiveLedger {
 public:
  ReceiveLedger(uint64_t transfer_id, uint64_t max_bytes, size_t connections)
      : transfer_id_(transfer_id), max_bytes_(max_bytes), hello_(connections, false) {}

  enum class Accepted { kHello, kNewBytes, kDuplicate };
  // One opened frame read on connection `connection` (the socket's index; the header's own connection field is
  // not trusted), `nonce` its FrameNonce. A hello announces the size (the first one fixes it, later ones must
  // repeat it); a data frame must follow its connection's hello and lie inside [0, size). Every error is fatal to
  // the transfer: PermissionDenied (another transfer, a replayed nonce), InvalidArgument (the announced size),
  // Corruption (any other frame).
  Result<Accepted> Accept(size_t connection, const FrameHeader& header, const std::string& nonce);

  uint64_t size() const { return size_; }  // 0 until the first hello
  uint64_t have_bytes() const { return have_bytes_; }
  bool complete() const { return size_ != 0 && have_bytes_ == size_; }

 private:
  // Adds [begin, end) to the covered set; returns how many of its bytes were new.
  uint64_t AddCoverage(uint64_t begin, uint64_t end);

  const uint64_t transfer_id_;
  const uint64_t max_bytes_;
  std::vector<bool> hello_;
  uint64_t size_ = 0;
  std::map<uint64_t, uint64_t> have_;  // covered [start, end), merged
  uint64_t have_bytes_ = 0;
  std::unordered_set<std::string> nonces_;
};

// Writes all bytes (MSG_NOSIGNAL). IOError on failure.
Status WriteAll(int fd, const void* data, size_t n);
// Reads one frame. Polls so that `stop` ends the wait between frames; NotFound on a clean EOF between frames.
Status ReadFrame(int fd, const std::atomic<bool>& stop, RawFrame* frame);

}  // namespace tributary::transport::multistream_wire
