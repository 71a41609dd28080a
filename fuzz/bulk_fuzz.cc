// The bulk chunk reader (transport/bulk.h BulkReceiver): a sequence of chunk messages from a peer that
// may lie about sizes, offsets, counts and checksums.
//
// Input: window u8 | then records until the input ends, each: op u8 |
//   op % 4 == 0: NextRequest()                  op % 4 == 1: ResetInFlight()
//   op % 4 == 2: a chunk: BulkChunkHeader protobuf (u16 length, bytes), data (u16 length, bytes);
//                op bit 2 sets object_id to the receiver's, op bit 3 sets chunk_checksum to the data's
//                real checksum (so the fuzzer gets past the BLAKE2b check and into the writes)
//   op % 4 == 3: Finish() when complete
// The sink holds at most 1 MiB: a peer announcing more must be refused, not allocated.
#include <cstdint>

#include <zmq.hpp>

#include "fuzz/fuzz_input.h"
#include "transport/bulk.h"

using namespace tributary;
using namespace tributary::transport;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::FuzzInput in(data, size);
  const uint32_t window = 1 + in.U8() % 16;
  BufferSink sink(uint64_t{1} << 20);
  BulkReceiver receiver("obj", &sink, window, "fuzz-peer");
  int steps = 0;
  while (in.remaining() > 0 && ++steps <= 256) {
    const uint8_t op = in.U8();
    switch (op % 4) {
      case 0: (void)receiver.NextRequest(); break;
      case 1: receiver.ResetInFlight(); break;
      case 2: {
        const auto header_bytes = in.Field();
        const auto chunk = in.Field();
        v1::BulkChunkHeader header;
        if (!header.ParseFromArray(header_bytes.data(), static_cast<int>(header_bytes.size()))) break;
        if ((op & 4) != 0) header.set_object_id("obj");
        if ((op & 8) != 0) header.set_chunk_checksum(ChunkChecksum(chunk.data(), chunk.size()));
        const zmq::message_t frame(chunk.data(), chunk.size());
        receiver.OnChunk(header, frame).IgnoreError();
        break;
      }
      default:
        if (receiver.complete()) receiver.Finish().IgnoreError();
        break;
    }
  }
  return 0;
}
