#include "transport/multistream_wire.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>

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

uint64_t ReceiveLedger::AddCoverage(uint64_t begin, uint64_t end) {
  // Merge with every interval that touches [begin, end), counting the bytes they already covered.
  uint64_t already = 0;
  auto it = have_.upper_bound(begin);
  if (it != have_.begin() && std::prev(it)->second >= begin) --it;
  uint64_t merged_begin = begin, merged_end = end;
  while (it != have_.end() && it->first <= end) {
    already += std::min(end, it->second) > std::max(begin, it->first)
                   ? std::min(end, it->second) - std::max(begin, it->first)
                   : 0;
    merged_begin = std::min(merged_begin, it->first);
    merged_end = std::max(merged_end, it->second);
    it = have_.erase(it);
  }
  have_[merged_begin] = merged_end;
  const uint64_t added = (end - begin) - already;
  have_bytes_ += added;
  return added;
}

Result<ReceiveLedger::Accepted> ReceiveLedger::Accept(size_t connection, const FrameHeader& h,
                                                      const std::string& nonce) {
  if (connection >= hello_.size()) {
    return Status::InvalidArgument("connection " + std::to_string(connection) + " of " + std::to_string(hello_.size()));
  }
  if (h.transfer_id != transfer_id_)
    return Status::PermissionDenied("frame of transfer " + std::to_string(h.transfer_id));
  if (!nonces_.insert(nonce).second) {
    return Status::PermissionDenied("replayed frame at offset " + std::to_string(h.offset));
  }
  if (h.type == FrameType::kHello) {
    if (h.offset == 0 || h.offset > max_bytes_ || (size_ != 0 && h.offset != size_)) {
      return Status::InvalidArgument("announced size " + std::to_string(h.offset) + " is invalid (limit " +
                                     std::to_string(max_bytes_) + ", agreed " + std::to_string(size_) + ")");
    }
    if (size_ == 0) size_ = h.offset;
    hello_[connection] = true;
    return Accepted::kHello;
  }
  if (h.type != FrameType::kData || !hello_[connection] || h.offset > size_ || h.len > size_ - h.offset || h.len == 0) {
    return Status::Corruption("unexpected frame (type " + std::to_string(static_cast<int>(h.type)) + ", offset " +
                              std::to_string(h.offset) + ", len " + std::to_string(h.len) + ")");
  }
  return AddCoverage(h.offset, h.offset + h.len) == 0 ? Accepted::kDuplicate : Accepted::kNewBytes;
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
