#include "federation/secagg_messages.h"

#include <bit>
#include <cstring>
#include <string>

namespace tributary {
namespace {

static_assert(std::endian::native == std::endian::little, "secure aggregation messages assume a little-endian host");

enum class MsgType : uint8_t {
  kAdvertiseKeys = 1,
  kKeyDirectory = 2,
  kShareKeys = 3,
  kForwardedShares = 4,
  kMaskedInput = 5,
  kUnmaskRequest = 6,
  kUnmaskResponse = 7,
};
constexpr uint8_t kVersion = 1;
constexpr size_t kHeaderBytes = 2 + 1 + 1 + 8;

class Writer {
 public:
  Writer(MsgType type, uint64_t session) {
    bytes_.push_back('S');
    bytes_.push_back('A');
    bytes_.push_back(kVersion);
    bytes_.push_back(static_cast<uint8_t>(type));
    U64(session);
  }
  void U8(uint8_t v) { bytes_.push_back(v); }
  void U32(uint32_t v) { Raw(&v, sizeof(v)); }
  void U64(uint64_t v) { Raw(&v, sizeof(v)); }
  void Count(size_t n) { U32(static_cast<uint32_t>(n)); }
  void Raw(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    bytes_.insert(bytes_.end(), p, p + n);
  }
  template <size_t N>
  void Array(const std::array<uint8_t, N>& a) {
    Raw(a.data(), N);
  }
  std::vector<uint8_t> Take() { return std::move(bytes_); }

 private:
  std::vector<uint8_t> bytes_;
};

class Reader {
 public:
  Reader(std::span<const uint8_t> bytes, const char* name) : bytes_(bytes), name_(name) {}

  // Checks the header; the session goes to *session.
  Status Header(MsgType type, uint64_t* session) {
    if (bytes_.size() < kHeaderBytes)
      return Error(std::to_string(bytes_.size()) + " bytes, shorter than the " + std::to_string(kHeaderBytes) +
                   "-byte header");
    if (bytes_[0] != 'S' || bytes_[1] != 'A') return Error("not a secure aggregation message (bad magic)");
    if (bytes_[2] != kVersion) return Error("version " + std::to_string(bytes_[2]) + ", expected 1");
    if (bytes_[3] != static_cast<uint8_t>(type))
      return Error("message type " + std::to_string(bytes_[3]) + ", expected " +
                   std::to_string(static_cast<int>(type)));
    pos_ = 4;
    return U64(session);
  }
  Status U8(uint8_t* v) { return Raw(v, 1); }
  Status U32(uint32_t* v) { return Raw(v, 4); }
  Status U64(uint64_t* v) { return Raw(v, 8); }
  template <size_t N>
  Status Array(std::array<uint8_t, N>* a) {
    return Raw(a->data(), N);
  }
  // A list count whose items take at least `min_item_bytes` each (so a forged count cannot make us
  // allocate more than the message could hold).
  Status Count(size_t min_item_bytes, size_t* n) {
    uint32_t count = 0;
    TRIB_RETURN_IF_ERROR(U32(&count));
    if (static_cast<uint64_t>(count) * min_item_bytes > bytes_.size() - pos_)
      return Error("list of " + std::to_string(count) + " items does not fit in the " +
                   std::to_string(bytes_.size() - pos_) + " bytes left");
    *n = count;
    return Status::OK();
  }
  Status Raw(void* out, size_t n) {
    if (bytes_.size() - pos_ < n)
      return Error("truncated at byte " + std::to_string(pos_) + " of " + std::to_string(bytes_.size()));
    if (n == 0) return Status::OK();
    std::memcpy(out, bytes_.data() + pos_, n);
    pos_ += n;
    return Status::OK();
  }
  Status Done() const {
    if (pos_ != bytes_.size()) return Error(std::to_string(bytes_.size() - pos_) + " trailing bytes after the message");
    return Status::OK();
  }
  Status Error(const std::string& what) const { return Status::InvalidArgument(std::string(name_) + ": " + what); }

 private:
  std::span<const uint8_t> bytes_;
  const char* name_;
  size_t pos_ = 0;
};

void WriteKeys(Writer& w, const AdvertiseKeysMsg& m) {
  w.U32(m.client_id);
  w.Array(m.mask_public_key);
  w.Array(m.encryption_public_key);
}
Status ReadKeys(Reader& r, AdvertiseKeysMsg* m) {
  TRIB_RETURN_IF_ERROR(r.U32(&m->client_id));
  TRIB_RETURN_IF_ERROR(r.Array(&m->mask_public_key));
  return r.Array(&m->encryption_public_key);
}
constexpr size_t kKeysBytes = 4 + 2 * kSecAggKeyBytes;

void WriteBoxes(Writer& w, const std::vector<EncryptedShares>& boxes) {
  w.Count(boxes.size());
  for (const EncryptedShares& b : boxes) {
    w.U32(b.peer_id);
    w.Count(b.box.size());
    w.Raw(b.box.data(), b.box.size());
  }
}
Status ReadBoxes(Reader& r, std::vector<EncryptedShares>* boxes) {
  size_t n = 0;
  TRIB_RETURN_IF_ERROR(r.Count(8, &n));
  boxes->resize(n);
  for (EncryptedShares& b : *boxes) {
    TRIB_RETURN_IF_ERROR(r.U32(&b.peer_id));
    size_t size = 0;
    TRIB_RETURN_IF_ERROR(r.Count(1, &size));
    b.box.resize(size);
    TRIB_RETURN_IF_ERROR(r.Raw(b.box.data(), size));
  }
  return Status::OK();
}

void WriteIds(Writer& w, const std::vector<uint32_t>& ids) {
  w.Count(ids.size());
  w.Raw(ids.data(), ids.size() * sizeof(uint32_t));
}
Status ReadIds(Reader& r, std::vector<uint32_t>* ids) {
  size_t n = 0;
  TRIB_RETURN_IF_ERROR(r.Count(sizeof(uint32_t), &n));
  ids->resize(n);
  return r.Raw(ids->data(), n * sizeof(uint32_t));
}

}  // namespace

std::vector<uint8_t> AdvertiseKeysMsg::Serialize() const {
  Writer w(MsgType::kAdvertiseKeys, session);
  WriteKeys(w, *this);
  return w.Take();
}

Result<AdvertiseKeysMsg> AdvertiseKeysMsg::Parse(std::span<const uint8_t> bytes) {
  Reader r(bytes, "AdvertiseKeys");
  AdvertiseKeysMsg m;
  TRIB_RETURN_IF_ERROR(r.Header(MsgType::kAdvertiseKeys, &m.session));
  TRIB_RETURN_IF_ERROR(ReadKeys(r, &m));
  TRIB_RETURN_IF_ERROR(r.Done());
  return m;
}

std::vector<uint8_t> KeyDirectoryMsg::Serialize() const {
  Writer w(MsgType::kKeyDirectory, session);
  WriteIds(w, participants);
  w.Count(neighbours.size());
  for (const AdvertiseKeysMsg& k : neighbours) WriteKeys(w, k);
  return w.Take();
}

Result<KeyDirectoryMsg> KeyDirectoryMsg::Parse(std::span<const uint8_t> bytes) {
  Reader r(bytes, "KeyDirectory");
  KeyDirectoryMsg m;
  TRIB_RETURN_IF_ERROR(r.Header(MsgType::kKeyDirectory, &m.session));
  TRIB_RETURN_IF_ERROR(ReadIds(r, &m.participants));
  size_t n = 0;
  TRIB_RETURN_IF_ERROR(r.Count(kKeysBytes, &n));
  m.neighbours.resize(n);
  for (AdvertiseKeysMsg& k : m.neighbours) {
    k.session = m.session;
    TRIB_RETURN_IF_ERROR(ReadKeys(r, &k));
  }
  TRIB_RETURN_IF_ERROR(r.Done());
  return m;
}

std::vector<uint8_t> ShareKeysMsg::Serialize() const {
  Writer w(MsgType::kShareKeys, session);
  w.U32(client_id);
  w.Array(seed_commitment);
  WriteBoxes(w, boxes);
  return w.Take();
}

Result<ShareKeysMsg> ShareKeysMsg::Parse(std::span<const uint8_t> bytes) {
  Reader r(bytes, "ShareKeys");
  ShareKeysMsg m;
  TRIB_RETURN_IF_ERROR(r.Header(MsgType::kShareKeys, &m.session));
  TRIB_RETURN_IF_ERROR(r.U32(&m.client_id));
  TRIB_RETURN_IF_ERROR(r.Array(&m.seed_commitment));
  TRIB_RETURN_IF_ERROR(ReadBoxes(r, &m.boxes));
  TRIB_RETURN_IF_ERROR(r.Done());
  return m;
}

std::vector<uint8_t> ForwardedSharesMsg::Serialize() const {
  Writer w(MsgType::kForwardedShares, session);
  WriteBoxes(w, boxes);
  return w.Take();
}

Result<ForwardedSharesMsg> ForwardedSharesMsg::Parse(std::span<const uint8_t> bytes) {
  Reader r(bytes, "ForwardedShares");
  ForwardedSharesMsg m;
  TRIB_RETURN_IF_ERROR(r.Header(MsgType::kForwardedShares, &m.session));
  TRIB_RETURN_IF_ERROR(ReadBoxes(r, &m.boxes));
  TRIB_RETURN_IF_ERROR(r.Done());
  return m;
}

std::vector<uint8_t> MaskedInputMsg::Serialize() const {
  Writer w(MsgType::kMaskedInput, session);
  w.U32(client_id);
  WriteIds(w, masked);  // a list of u32, like ids
  return w.Take();
}

Result<MaskedInputMsg> MaskedInputMsg::Parse(std::span<const uint8_t> bytes) {
  Reader r(bytes, "MaskedInput");
  MaskedInputMsg m;
  TRIB_RETURN_IF_ERROR(r.Header(MsgType::kMaskedInput, &m.session));
  TRIB_RETURN_IF_ERROR(r.U32(&m.client_id));
  TRIB_RETURN_IF_ERROR(ReadIds(r, &m.masked));
  TRIB_RETURN_IF_ERROR(r.Done());
  return m;
}

std::vector<uint8_t> UnmaskRequestMsg::Serialize() const {
  Writer w(MsgType::kUnmaskRequest, session);
  WriteIds(w, survivors);
  WriteIds(w, dropped);
  return w.Take();
}

Result<UnmaskRequestMsg> UnmaskRequestMsg::Parse(std::span<const uint8_t> bytes) {
  Reader r(bytes, "UnmaskRequest");
  UnmaskRequestMsg m;
  TRIB_RETURN_IF_ERROR(r.Header(MsgType::kUnmaskRequest, &m.session));
  TRIB_RETURN_IF_ERROR(ReadIds(r, &m.survivors));
  TRIB_RETURN_IF_ERROR(ReadIds(r, &m.dropped));
  TRIB_RETURN_IF_ERROR(r.Done());
  return m;
}

std::vector<uint8_t> UnmaskResponseMsg::Serialize() const {
  Writer w(MsgType::kUnmaskResponse, session);
  w.U32(client_id);
  w.Count(shares.size());
  for (const RevealedShare& s : shares) {
    w.U32(s.owner_id);
    w.U8(static_cast<uint8_t>(s.kind));
    w.Array(s.share);
  }
  return w.Take();
}

Result<UnmaskResponseMsg> UnmaskResponseMsg::Parse(std::span<const uint8_t> bytes) {
  Reader r(bytes, "UnmaskResponse");
  UnmaskResponseMsg m;
  TRIB_RETURN_IF_ERROR(r.Header(MsgType::kUnmaskResponse, &m.session));
  TRIB_RETURN_IF_ERROR(r.U32(&m.client_id));
  size_t n = 0;
  TRIB_RETURN_IF_ERROR(r.Count(4 + 1 + kShamirShareBytes, &n));
  m.shares.resize(n);
  for (RevealedShare& s : m.shares) {
    TRIB_RETURN_IF_ERROR(r.U32(&s.owner_id));
    uint8_t kind = 0;
    TRIB_RETURN_IF_ERROR(r.U8(&kind));
    if (kind != static_cast<uint8_t>(SecAggShareKind::kSelfSeed) &&
        kind != static_cast<uint8_t>(SecAggShareKind::kMaskKey))
      return r.Error("share of client " + std::to_string(s.owner_id) + " has unknown kind " + std::to_string(kind));
    s.kind = static_cast<SecAggShareKind>(kind);
    TRIB_RETURN_IF_ERROR(r.Array(&s.share));
  }
  TRIB_RETURN_IF_ERROR(r.Done());
  return m;
}

}  // namespace tributary
