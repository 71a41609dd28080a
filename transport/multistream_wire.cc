#include "transport/multistream_wire.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include <sodium.h>

namespace tributary::transport::multistream_wire {
namespace {

void PutLe(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t GetLe(const std::string& in, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{static_cast<uint8_t>(in[at + i])} << (8 * i);
  return v;
}

// Waits until fd is readable; Unavailable when stop was set, IOError on a poll error.
Status WaitReadable(int fd, const std::atomic<bool>& stop) {
  while (!stop.load()) {
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, 50);
    if (r > 0) return Status::OK();
    if (r < 0 && errno != EINTR) return Status::IOError(std::string("poll: ") + std::strerror(errno));
  }
  return Status::Unavailable("stopped");
}

// Reads exactly n bytes. NotFound on EOF before the first byte when eof_ok, IOError otherwise.
Status ReadExact(int fd, const std::atomic<bool>& stop, char* out, size_t n, bool eof_ok) {
  size_t got = 0;
  while (got < n) {
    TRIB_RETURN_IF_ERROR(WaitReadable(fd, stop));
    const ssize_t r = ::recv(fd, out + got, n - got, 0);
    if (r == 0) {
      return got == 0 && eof_ok ? Status::NotFound("connection closed")
                                : Status::IOError("connection closed mid-frame");
    }
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return Status::IOError(std::string("recv: ") + std::strerror(errno));
    }
    got += static_cast<size_t>(r);
  }
  return Status::OK();
}

}  // namespace

std::string SealFrame(const MultistreamKey& key, const FrameHeader& header, const void* payload, size_t payload_len) {
  std::string out;
  out.reserve(kHeaderBytes + payload_len + kTagBytes);
  PutLe(&out, kMagic, 4);
  out.push_back(static_cast<char>(header.type));
  out.push_back(0);
  PutLe(&out, header.connection, 2);
  PutLe(&out, header.transfer_id, 8);
  PutLe(&out, header.offset, 8);
  PutLe(&out, header.len, 4);
  unsigned char nonce[kNonceBytes];
  randombytes_buf(nonce, sizeof(nonce));
  out.append(reinterpret_cast<const char*>(nonce), sizeof(nonce));
  out.resize(kHeaderBytes + payload_len + kTagBytes);
  unsigned long long sealed = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      reinterpret_cast<unsigned char*>(out.data() + kHeaderBytes), &sealed, static_cast<const unsigned char*>(payload),
      payload_len, reinterpret_cast<const unsigned char*>(out.data()), kAadBytes, nullptr, nonce, key.data());
  return out;
}

Status OpenFrame(const MultistreamKey& key, const RawFrame& frame, std::string* plaintext) {
  const size_t ct_len = frame.ciphertext.size();
  plaintext->resize(ct_len - kTagBytes);
  unsigned long long opened = 0;
  const auto* nonce = reinterpret_cast<const unsigned char*>(frame.header_bytes.data() + kAadBytes);
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          reinterpret_cast<unsigned char*>(plaintext->data()), &opened, nullptr,
          reinterpret_cast<const unsigned char*>(frame.ciphertext.data()), ct_len,
          reinterpret_cast<const unsigned char*>(frame.header_bytes.data()), kAadBytes, nonce, key.data()) != 0) {
    return Status::PermissionDenied("frame at offset " + std::to_string(frame.header.offset) +
                                    " failed authentication (tampered, or a different key)");
  }
  return Status::OK();
}

std::string FrameNonce(const RawFrame& frame) {
  return frame.header_bytes.substr(kAadBytes, kNonceBytes);
}

Status WriteAll(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::IOError(std::string("send: ") + std::strerror(errno));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status::OK();
}

Status ReadFrame(int fd, const std::atomic<bool>& stop, RawFrame* frame) {
  frame->header_bytes.resize(kHeaderBytes);
  TRIB_RETURN_IF_ERROR(ReadExact(fd, stop, frame->header_bytes.data(), kHeaderBytes, /*eof_ok=*/true));
  const std::string& h = frame->header_bytes;
  if (GetLe(h, 0, 4) != kMagic) return Status::Corruption("bad frame magic (not a multistream peer?)");
  const auto type = static_cast<uint8_t>(h[4]);
  if (type < 1 || type > 3) return Status::Corruption("unknown frame type " + std::to_string(type));
  frame->header.type = static_cast<FrameType>(type);
  frame->header.connection = static_cast<uint16_t>(GetLe(h, 6, 2));
  frame->header.transfer_id = GetLe(h, 8, 8);
  frame->header.offset = GetLe(h, 16, 8);
  frame->header.len = static_cast<uint32_t>(GetLe(h, 24, 4));
  const bool data = frame->header.type == FrameType::kData;
  if (data && frame->header.len > kMaxChunkBytes) {
    return Status::Corruption("chunk of " + std::to_string(frame->header.len) + " bytes exceeds the limit");
  }
  frame->ciphertext.resize((data ? frame->header.len : 0) + kTagBytes);
  return ReadExact(fd, stop, frame->ciphertext.data(), frame->ciphertext.size(), /*eof_ok=*/false);
}

}  // namespace tributary::transport::multistream_wire
