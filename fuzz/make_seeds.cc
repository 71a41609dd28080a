// Writes the binary seeds of fuzz/corpus/ (scripts/fuzz --seeds regenerates them): valid messages,
// payloads and files built with the project's own encoders, so each harness starts from inputs that
// pass every check and mutates from there. The text seeds (YAML, JSON) are copies of examples/ and
// test fixtures. Usage: fuzz_make_seeds CORPUS_DIR
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/io/safetensors.h"
#include "federation/fedkseed_method.h"
#include "federation/outer_codec.h"
#include "federation/secagg_messages.h"
#include "peft/payload.h"
#include "transport/bulk.h"
#include "transport/message.h"

using namespace tributary;
using namespace tributary::transport;
namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

namespace {

fs::path g_root;

void Write(const std::string& harness, const std::string& name, const Bytes& bytes) {
  fs::create_directories(g_root / harness);
  std::ofstream out(g_root / harness / name, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

void PutU16(Bytes* out, size_t v) {
  out->push_back(static_cast<uint8_t>(v));
  out->push_back(static_cast<uint8_t>(v >> 8));
}
void PutLe(Bytes* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutField(Bytes* out, const std::string& bytes) {
  PutU16(out, bytes.size());
  out->insert(out->end(), bytes.begin(), bytes.end());
}

// envelope_fuzz's input: flags (bit 1: the harness writes the header), frame 0, bulk frames.
void EnvelopeSeed(const std::string& name, const Envelope& envelope, bool to_client, const std::string& bulk = "",
                  bool with_bulk = false) {
  Bytes in{static_cast<uint8_t>((to_client ? 1 : 0) | 2 | (with_bulk ? 4 : 0))};
  PutField(&in, envelope.SerializeAsString());
  if (with_bulk) PutField(&in, bulk);
  Write("envelope", name, in);
}

void Envelopes() {
  Envelope hb = NewEnvelope("w1");
  hb.mutable_heartbeat()->set_worker_id("w1");
  hb.mutable_heartbeat()->set_state("training");
  hb.mutable_heartbeat()->set_job_id("job-1");
  EnvelopeSeed("heartbeat", hb, false);
  Envelope reg = NewEnvelope("w1");
  reg.mutable_register_worker()->set_worker_id("w1");
  (*reg.mutable_register_worker()->mutable_applied_rounds())["job-1"] = 3;
  EnvelopeSeed("register", reg, false);
  Envelope up = NewEnvelope("w1");
  up.mutable_upload_update()->set_job_id("job-1");
  up.mutable_upload_update()->set_payload(std::string(40, '\x01'));
  EnvelopeSeed("upload", up, false);
  Envelope err = ErrorEnvelope("coordinator", 7, Status::InvalidArgument("bad"));
  EnvelopeSeed("error", err, true);
  Envelope chunk = NewEnvelope("coordinator");
  chunk.mutable_bulk_chunk_header()->set_object_id("obj");
  chunk.mutable_bulk_chunk_header()->set_size(5);
  EnvelopeSeed("bulk_chunk", chunk, true, "hello", true);
  // Frame 0 exactly as a sender encodes it (the harness writes no header of its own).
  auto frame = EncodeControlFrame(hb, 0, Limits{});
  if (frame.ok()) {
    Bytes in{0};
    PutField(&in, frame.value().to_string());
    Write("envelope", "heartbeat_raw", in);
  }
}

// bulk_fuzz's input: window, then op records; a three-chunk object sent in order, then Finish.
void Bulk() {
  const std::string object = "the quick brown fox jumps";
  const uint32_t chunk_size = 10;
  Bytes in{4, 0};
  for (uint64_t i = 0; i * chunk_size < object.size(); ++i) {
    const std::string chunk = object.substr(i * chunk_size, chunk_size);
    v1::BulkChunkHeader header;
    header.set_object_id("obj");
    header.set_chunk_index(i);
    header.set_num_chunks((object.size() + chunk_size - 1) / chunk_size);
    header.set_offset(i * chunk_size);
    header.set_size(static_cast<uint32_t>(chunk.size()));
    header.set_total_size(object.size());
    header.set_chunk_size(chunk_size);
    header.set_chunk_checksum(ChunkChecksum(chunk.data(), chunk.size()));
    header.set_object_checksum(ObjectChecksum(object.data(), object.size()));
    in.push_back(2);
    PutField(&in, header.SerializeAsString());
    PutField(&in, chunk);
  }
  in.push_back(3);
  Write("bulk", "three_chunks", in);
}

void Payloads() {
  for (const WireDtype dtype : {WireDtype::kFp32, WireDtype::kBf16}) {
    Payload p;
    p.round = 5;
    p.dtype = dtype;
    p.gamma = {{0.5f, -1.25f, 3.0f}, {}, {1e-3f, 2.0f, -0.0f, 7.5f}};
    auto bytes = SerializePayload(p);
    if (!bytes.ok()) continue;
    Bytes in;
    PutU16(&in, 3);  // blocks
    PutU16(&in, 4);  // K
    PutU16(&in, 0);  // n
    in.insert(in.end(), bytes.value().begin(), bytes.value().end());
    Write("payload", std::string("ferret_") + WireDtypeName(dtype), in);
  }
  std::vector<float> values(70);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i) * 0.25f - 3.0f;
  for (const OuterCodec codec : {OuterCodec::kFp32, OuterCodec::kBf16, OuterCodec::kInt8, OuterCodec::kFp4}) {
    Bytes encoded;
    if (!EncodeOuter(codec, values, &encoded).ok()) continue;
    Bytes in;
    PutU16(&in, 0);
    PutU16(&in, 0);
    PutU16(&in, values.size());
    in.insert(in.end(), encoded.begin(), encoded.end());
    Write("payload", std::string("outer_") + OuterCodecName(codec), in);
  }
  FedKSeedPayload scalars;
  scalars.round = 5;
  scalars.scalars = {0.5f, 0.0f, -1.25f, 0.0f};
  const std::vector<uint8_t> fedkseed = SerializeFedKSeedPayload(scalars);
  Bytes in;
  PutU16(&in, 0);
  PutU16(&in, 4);  // K
  PutU16(&in, 0);
  in.insert(in.end(), fedkseed.begin(), fedkseed.end());
  Write("payload", "fedkseed", in);
}

void SecAgg() {
  AdvertiseKeysMsg adv;
  adv.session = 9;
  adv.client_id = 2;
  adv.mask_public_key.fill(3);
  adv.encryption_public_key.fill(4);
  Write("secagg", "advertise_keys", adv.Serialize());
  KeyDirectoryMsg dir;
  dir.session = 9;
  dir.participants = {1, 2, 3};
  dir.neighbours = {adv};
  Write("secagg", "key_directory", dir.Serialize());
  ShareKeysMsg share;
  share.session = 9;
  share.client_id = 2;
  share.boxes = {{1, Bytes(kSecAggSealedSharesBytes, 5)}, {3, Bytes(kSecAggSealedSharesBytes, 6)}};
  Write("secagg", "share_keys", share.Serialize());
  ForwardedSharesMsg fwd;
  fwd.session = 9;
  fwd.boxes = share.boxes;
  Write("secagg", "forwarded_shares", fwd.Serialize());
  MaskedInputMsg masked;
  masked.session = 9;
  masked.client_id = 2;
  masked.masked = {1, 2, 0xffffffffu, 4};
  Write("secagg", "masked_input", masked.Serialize());
  UnmaskRequestMsg req;
  req.session = 9;
  req.survivors = {1, 2};
  req.dropped = {3};
  Write("secagg", "unmask_request", req.Serialize());
  UnmaskResponseMsg resp;
  resp.session = 9;
  resp.client_id = 2;
  resp.shares = {RevealedShare{1, SecAggShareKind::kSelfSeed, {}}, RevealedShare{3, SecAggShareKind::kMaskKey, {}}};
  Write("secagg", "unmask_response", resp.Serialize());
}

// multistream_fuzz's input: connections, then records. A sealed frame (op 1) of transfer 42 whose len is its
// payload's length (op bits 2 and 3): the harness seals it with its key, so these pass authentication.
void SealedFrame(Bytes* in, uint8_t type, uint16_t connection, uint64_t offset, const std::string& payload) {
  in->push_back(1 | 4 | 8);
  in->push_back(type);
  PutLe(in, connection, 2);
  PutLe(in, offset, 8);
  PutLe(in, 0, 4);  // len: replaced by the payload's length
  PutField(in, payload);
}

void Multistream() {
  const std::string data(300, 'm');
  // One connection: hello (size 300), three chunks, the last sent again (a replay).
  Bytes one{0};
  SealedFrame(&one, 1, 0, data.size(), "");
  for (uint64_t at = 0; at < data.size(); at += 100) SealedFrame(&one, 2, 0, at, data.substr(at, 100));
  one.push_back(2);
  Write("multistream", "one_connection", one);
  // Two connections, each with its hello; overlapping chunks (a resend after a failed connection).
  Bytes two{1};
  SealedFrame(&two, 1, 0, data.size(), "");
  SealedFrame(&two, 1, 1, data.size(), "");
  SealedFrame(&two, 2, 0, 0, data.substr(0, 200));
  SealedFrame(&two, 2, 1, 100, data.substr(100, 200));
  SealedFrame(&two, 2, 1, 0, data.substr(0, 50));
  SealedFrame(&two, 3, 0, 0, "");  // an ack: the receiver never gets one
  Write("multistream", "two_connections", two);
  // A hello, then a chunk with one bit flipped (fails authentication), then the chunk itself.
  Bytes tampered{0};
  SealedFrame(&tampered, 1, 0, 64, "");
  SealedFrame(&tampered, 2, 0, 0, std::string(64, 't'));
  tampered.push_back(3);
  PutLe(&tampered, 500, 2);
  tampered.push_back(2);
  Write("multistream", "tampered", tampered);
  // Raw headers: a data frame over the 16 MiB cap, then one with a bad magic.
  Bytes raw{0, 0};
  Bytes header;
  PutLe(&header, 0x31534D54, 4);
  header.push_back(2);
  header.push_back(0);
  PutLe(&header, 0, 2);
  PutLe(&header, 42, 8);
  PutLe(&header, 0, 8);
  PutLe(&header, (uint64_t{16} << 20) + 1, 4);
  header.resize(52, 0);
  PutField(&raw, std::string(header.begin(), header.end()));
  header[0] = 'X';
  raw.push_back(0);
  PutField(&raw, std::string(header.begin(), header.end()));
  Write("multistream", "raw_headers", raw);
}

void Safetensors() {
  const fs::path tmp = fs::temp_directory_path() / "fuzz_make_seeds.safetensors";
  const std::vector<float> f = {1.0f, -2.0f, 0.5f, 3.0f, 0.0f, 8.0f};
  const std::vector<int32_t> ints = {1, -2, 3};
  const std::vector<SafetensorsWriteTensor> tensors = {
      {"a.weight", SafetensorsDType::kF32, {2, 3}, f.data(), nullptr},
      {"b.weight", SafetensorsDType::kBF16, {6}, f.data(), nullptr},
      {"c.half", SafetensorsDType::kF16, {3, 2}, f.data(), nullptr},
      {"ids", SafetensorsDType::kI32, {3}, nullptr, ints.data()},
  };
  if (!WriteSafetensors(tmp.string(), tensors, {{"format", "pt"}}).ok()) return;
  std::ifstream in(tmp, std::ios::binary);
  Write("safetensors", "four_tensors", Bytes(std::istreambuf_iterator<char>(in), {}));
  fs::remove(tmp);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  g_root = argv[1];
  Envelopes();
  Bulk();
  Payloads();
  SecAgg();
  Safetensors();
  Multistream();
  return 0;
}
