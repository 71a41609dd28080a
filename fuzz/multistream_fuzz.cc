// The multistream frame reader (transport/multistream_wire.h): ReadFrame off a socket, OpenFrame with the
// transfer's key, then the receiver's checks of the header against the transfer (ReceiveLedger: the announced
// size, offset and len inside it, the connection's hello first, the transfer id, replayed nonces).
//
// Input: connections u8 (1 + b % 4) | then records until the input ends, each: op u8 |
//   op % 4 == 0: raw bytes (u16 length, bytes), written to the socket as they are
//   op % 4 == 1: a frame the harness seals with the key (SealFrame), so mutations get past the AEAD:
//                type u8 | connection u16 | transfer_id u64 unless op bit 2 (then the transfer's) | offset u64 |
//                len u32 unless op bit 3 (then the payload's length) | payload (u16 length, bytes)
//   op % 4 == 2: the last sealed frame again (a replay)
//   op % 4 == 3: the last sealed frame with one bit flipped (u16: the bit's index, modulo the frame's bits)
// The stream (at most 64 KiB) is written to one end of a socketpair, which is then shut down; frames are read off
// the other end until an error or EOF. An opened frame goes to the ledger on connection header.connection % n (the
// real receiver uses the socket's index; the field lets the fuzzer pick one). Transfer 42, sizes up to 1 MiB.
// Checked beyond the sanitizers: an accepted chunk lies inside the buffer and its plaintext is len bytes, and
// the ledger's byte count and new/duplicate verdicts match a byte map of what was accepted.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "transport/multistream_wire.h"

using namespace tributary;
using namespace tributary::transport;
namespace wire = tributary::transport::multistream_wire;

namespace {

constexpr uint64_t kTransferId = 42;
constexpr uint64_t kMaxBytes = uint64_t{1} << 20;
constexpr size_t kMaxStream = size_t{64} << 10;

MultistreamKey FixedKey() {
  MultistreamKey key;
  for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<uint8_t>(i);
  return key;
}

[[noreturn]] void Fail(const char* what, const wire::FrameHeader& h) {
  std::fprintf(stderr, "multistream: %s (type %d, offset %llu, len %u)\n", what, static_cast<int>(h.type),
               static_cast<unsigned long long>(h.offset), h.len);
  std::abort();
}

// Builds the byte stream the records describe.
std::string BuildStream(fuzz::FuzzInput& in, const MultistreamKey& key) {
  std::string stream, last;
  while (in.remaining() > 0 && stream.size() < kMaxStream) {
    const uint8_t op = in.U8();
    switch (op % 4) {
      case 0: {
        const auto raw = in.Field();
        stream.append(raw.begin(), raw.end());
        break;
      }
      case 1: {
        wire::FrameHeader h;
        h.type = static_cast<wire::FrameType>(in.U8());
        h.connection = in.U16();
        h.transfer_id = (op & 4) != 0 ? kTransferId : in.U64();
        h.offset = in.U64();
        const uint32_t len = in.U32();
        const auto payload = in.Field();
        h.len = (op & 8) != 0 ? static_cast<uint32_t>(payload.size()) : len;
        last = wire::SealFrame(key, h, payload.data(), payload.size());
        stream += last;
        break;
      }
      case 2: stream += last; break;
      default: {
        const uint16_t bit = in.U16();
        if (last.empty()) break;
        std::string bad = last;
        const size_t at = bit % (bad.size() * 8);
        bad[at / 8] = static_cast<char>(bad[at / 8] ^ (1 << (at % 8)));
        stream += bad;
        break;
      }
    }
  }
  if (stream.size() > kMaxStream) stream.resize(kMaxStream);
  return stream;
}

// Writes without blocking (64 KiB fits a socketpair's default buffer; what would not is dropped), then ends the stream.
void WriteAndClose(int fd, const std::string& stream) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  size_t at = 0;
  while (at < stream.size()) {
    const ssize_t w = ::send(fd, stream.data() + at, stream.size() - at, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    at += static_cast<size_t>(w);
  }
  ::shutdown(fd, SHUT_WR);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const MultistreamKey key = FixedKey();
  fuzz::FuzzInput in(data, size);
  const size_t connections = 1 + in.U8() % 4;
  const std::string stream = BuildStream(in, key);

  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) return 0;
  WriteAndClose(fds[0], stream);

  wire::ReceiveLedger ledger(kTransferId, kMaxBytes, connections);
  std::string out;            // the receiver's buffer, sized by the first hello
  std::vector<bool> covered;  // which of its bytes were accepted
  uint64_t covered_bytes = 0;
  const std::atomic<bool> stop{false};
  wire::RawFrame frame;
  std::string plain;
  while (wire::ReadFrame(fds[1], stop, &frame).ok()) {
    if (!wire::OpenFrame(key, frame, &plain).ok()) continue;  // the receiver fails the transfer; read on anyway
    const wire::FrameHeader& h = frame.header;
    const auto accepted = ledger.Accept(h.connection % connections, h, wire::FrameNonce(frame));
    if (!accepted.ok()) break;  // fatal to the transfer, as in the receiver
    if (*accepted == wire::ReceiveLedger::Accepted::kHello) {
      if (ledger.size() == 0 || ledger.size() > kMaxBytes) Fail("hello accepted with a bad size", h);
      if (out.empty()) {
        out.resize(ledger.size());
        covered.assign(ledger.size(), false);
      } else if (out.size() != ledger.size()) {
        Fail("a later hello changed the size", h);
      }
      continue;
    }
    if (h.type != wire::FrameType::kData || h.len == 0 || plain.size() != h.len || out.empty() ||
        h.offset > out.size() || h.len > out.size() - h.offset) {
      Fail("chunk accepted outside the buffer or with a short plaintext", h);
    }
    std::memcpy(out.data() + h.offset, plain.data(), h.len);
    uint64_t fresh = 0;
    for (uint64_t b = h.offset; b < h.offset + h.len; ++b) {
      if (!covered[b]) {
        covered[b] = true;
        ++fresh;
      }
    }
    covered_bytes += fresh;
    if ((fresh == 0) != (*accepted == wire::ReceiveLedger::Accepted::kDuplicate)) Fail("wrong duplicate verdict", h);
    if (ledger.have_bytes() != covered_bytes) Fail("coverage count differs from the byte map", h);
    if (ledger.complete() != (covered_bytes == out.size())) Fail("wrong completion", h);
  }
  ::close(fds[0]);
  ::close(fds[1]);
  return 0;
}
