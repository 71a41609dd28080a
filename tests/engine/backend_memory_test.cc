// The memory half of the backend contract (engine/buffer.h, engine/backend.h): buffer types, owning
// buffers, the backend's memory operations, arenas on a buffer type, the model's precomputed tensor
// lookup and logits read-back, and the whole training / generation path on non-host memory
// (tests/engine/fake_device.h) giving the CPU backend's bits.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "engine/arena.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/model/generate.h"
#include "engine/model/llama_model.h"
#include "engine/text/tokenizer.h"
#include "engine/train/trainer.h"
#include "tests/common/tiny_llama.h"
#include "tests/engine/fake_device.h"

namespace tributary {
namespace {

bool Aligned(const void* p, size_t alignment) {
  return reinterpret_cast<uintptr_t>(p) % alignment == 0;
}

TEST(BufferTest, HostTypeGivesAlignedZeroedMemory) {
  const BufferType& host = HostBufferType();
  EXPECT_TRUE(host.IsHost());
  EXPECT_EQ(host.Alignment(), 64u);
  EXPECT_STREQ(host.Name(), "host");
  EXPECT_EQ(&host, &CpuBackend().buffer_type());
  for (size_t bytes : {size_t{0}, size_t{1}, size_t{63}, size_t{64}, size_t{1000}}) {
    Buffer b(host, bytes);
    ASSERT_NE(b.data(), nullptr);
    EXPECT_TRUE(Aligned(b.data(), 64)) << bytes;
    EXPECT_EQ(b.bytes(), bytes);
    EXPECT_TRUE(b.is_host());
    const size_t rounded = bytes == 0 ? 64 : (bytes + 63) / 64 * 64;
    for (size_t i = 0; i < rounded; ++i) ASSERT_EQ(b.as<unsigned char>()[i], 0) << bytes << " byte " << i;
  }
}

TEST(BufferTest, MovesAndReserve) {
  Buffer a(HostBufferType(), 128);
  a.as<float>()[3] = 7.0f;
  void* data = a.data();
  Buffer b(std::move(a));
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(b.data(), data);
  Buffer c;
  c = std::move(b);
  EXPECT_EQ(c.as<float>()[3], 7.0f);
  c.Reserve(HostBufferType(), 64);  // fits: kept as is
  EXPECT_EQ(c.data(), data);
  EXPECT_EQ(c.as<float>()[3], 7.0f);
  c.Reserve(HostBufferType(), 4096);  // grows
  EXPECT_GE(c.bytes(), 4096u);
  c.Reserve(FakeDeviceBufferType::Get(), 16);  // another memory: reallocated there
  EXPECT_EQ(c.type(), &FakeDeviceBufferType::Get());
  EXPECT_FALSE(c.is_host());
  EXPECT_TRUE(Aligned(c.data(), 256));
}

TEST(BackendMemoryTest, CpuBackendCopiesRoundTrip) {
  CpuBackend be;
  std::vector<float> host(1000);
  for (size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(i) * 0.5f - 3.0f;
  const size_t bytes = host.size() * sizeof(float);
  Buffer a(be.buffer_type(), bytes), b(be.buffer_type(), bytes);
  be.CopyHostToBackend(a.data(), host.data(), bytes);
  be.CopyBackendToBackend(b.data(), a.data(), bytes);
  be.Memset(a.data(), 0, bytes);
  std::vector<float> back(host.size(), -1.0f), zeros(host.size(), -1.0f);
  be.CopyBackendToHost(back.data(), b.data(), bytes);
  be.CopyBackendToHost(zeros.data(), a.data(), bytes);
  be.Synchronize();
  EXPECT_EQ(back, host);
  EXPECT_EQ(zeros, std::vector<float>(host.size(), 0.0f));
}

std::shared_ptr<TensorTable> PaddedTable() {
  auto t = std::make_shared<TensorTable>();
  t->Add("w", {3, 5});  // 15 elements + 1 padding
  t->Add("b", {7});     // 7 + 9 padding
  return t;
}

TEST(ArenaMemoryTest, CpuArenaIsHostZeroedAndCopiesRoundTrip) {
  auto t = PaddedTable();
  Arena a(t, CpuBackend().buffer_type());
  EXPECT_TRUE(a.is_host());
  EXPECT_EQ(&a.buffer_type(), &HostBufferType());
  EXPECT_TRUE(Aligned(a.data(), 64));
  EXPECT_EQ(a.bytes(), 32 * sizeof(float));
  for (int64_t i = 0; i < a.size(); ++i) ASSERT_EQ(a.data()[i], 0.0f);
  std::vector<float> host(static_cast<size_t>(a.size()));
  for (size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(i + 1);
  a.CopyFromHost(host.data());
  EXPECT_EQ(a.tensor("b")[0], 17.0f);
  std::vector<float> back(host.size());
  a.CopyToHost(back.data());
  EXPECT_EQ(back, host);
  a.Zero();
  a.CopyToHost(back.data());
  EXPECT_EQ(back, std::vector<float>(host.size(), 0.0f));
  EXPECT_TRUE(Arena().is_host());  // an empty arena counts as host
}

TEST(ArenaMemoryTest, DeviceArenaCopiesThroughItsBufferType) {
  auto t = PaddedTable();
  Arena host(t), device(t, FakeDeviceBufferType::Get()), device2(t, FakeDeviceBufferType::Get()), back(t);
  EXPECT_FALSE(device.is_host());
  EXPECT_TRUE(Aligned(device.data(), 256));
  for (int64_t i = 0; i < 15; ++i) host.tensor(size_t{0})[i] = static_cast<float>(i) - 7.5f;
  const int64_t copies = FakeDeviceBufferType::Get().host_copies;
  device.CopyFrom(host);     // host -> device
  device2.CopyFrom(device);  // device -> device
  back.CopyFrom(device2);    // device -> host
  EXPECT_EQ(FakeDeviceBufferType::Get().host_copies - copies, 2);
  EXPECT_EQ(std::memcmp(back.data(), host.data(), host.bytes()), 0);
}

TEST(LlamaModelMemoryTest, LayerTensorsEqualTheNameLookup) {
  for (bool bias : {false, true}) {
    LlamaConfig c;
    c.num_hidden_layers = 3;
    c.attention_bias = bias;
    auto model = LlamaModel::Create(c);
    ASSERT_TRUE(model.ok());
    for (Arena* arena : {&(*model)->params(), &(*model)->grads()})
      for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        const LlamaLayerTensors t = (*model)->LayerTensors(*arena, l);
        EXPECT_EQ(t.input_norm, arena->tensor(p + "input_layernorm.weight"));
        EXPECT_EQ(t.q, arena->tensor(p + "self_attn.q_proj.weight"));
        EXPECT_EQ(t.q_bias, arena->tensor(p + "self_attn.q_proj.bias"));
        EXPECT_EQ(t.k, arena->tensor(p + "self_attn.k_proj.weight"));
        EXPECT_EQ(t.k_bias, arena->tensor(p + "self_attn.k_proj.bias"));
        EXPECT_EQ(t.v, arena->tensor(p + "self_attn.v_proj.weight"));
        EXPECT_EQ(t.v_bias, arena->tensor(p + "self_attn.v_proj.bias"));
        EXPECT_EQ(t.o, arena->tensor(p + "self_attn.o_proj.weight"));
        EXPECT_EQ(t.post_norm, arena->tensor(p + "post_attention_layernorm.weight"));
        EXPECT_EQ(t.gate, arena->tensor(p + "mlp.gate_proj.weight"));
        EXPECT_EQ(t.up, arena->tensor(p + "mlp.up_proj.weight"));
        EXPECT_EQ(t.down, arena->tensor(p + "mlp.down_proj.weight"));
        EXPECT_EQ(t.q_bias != nullptr, bias);
      }
  }
}

TEST(LlamaModelMemoryTest, ReadLogitsCopiesRowsOfTheLastForward) {
  LlamaConfig c;
  auto model = LlamaModel::Create(c);
  ASSERT_TRUE(model.ok());
  (*model)->InitRandom(3, 0.2f);
  const std::vector<int32_t> tokens = {1, 5, 9, 200, 7, 3};
  ASSERT_TRUE((*model)->ForwardLogits(tokens.data(), 2, 3).ok());
  std::vector<float> rows(2 * c.vocab_size);
  (*model)->ReadLogits(3, 2, rows.data());
  EXPECT_EQ(std::memcmp(rows.data(), (*model)->Logits() + 3 * c.vocab_size, rows.size() * sizeof(float)), 0);
}

std::vector<SequenceRow> ByteRows(int n, int64_t seq_len) {
  std::vector<Example> examples;
  for (int i = 0; i < n; ++i) {
    Example ex;
    ex.instruction = "Count to " + std::to_string(i % 7) + "?";
    ex.output = std::string(static_cast<size_t>(i % 7 + 1), 'x');
    examples.push_back(ex);
  }
  ByteTokenizer tok;
  auto tokenized = TokenizeExamples(examples, tok, TokenizeOptions{});
  EXPECT_TRUE(tokenized.ok());
  return BuildRows(*tokenized, seq_len, /*pack=*/false, ByteTokenizer::kPadId);
}

std::vector<float> HostParams(const LlamaModel& model) {
  std::vector<float> out(static_cast<size_t>(model.params().size()));
  model.params().CopyToHost(out.data());
  return out;
}

// Training steps (forward, backward, clipping, AdamW) and generation on non-host memory through the
// Backend give exactly the CPU backend's bits.
TEST(FakeDeviceTest, TrainingAndGenerationMatchTheCpuBackendBitForBit) {
  const std::vector<SequenceRow> rows = ByteRows(16, 24);
  auto device_backend = std::make_shared<FakeDeviceBackend>();
  std::vector<std::vector<float>> params;
  std::vector<std::vector<int32_t>> generated;
  for (std::shared_ptr<Backend> backend : {CpuBackend::Shared(), std::shared_ptr<Backend>(device_backend)}) {
    auto model = LlamaModel::Create(testutil::TinyByteLlama(64), backend);
    ASSERT_TRUE(model.ok());
    (*model)->InitRandom(9);
    EXPECT_EQ((*model)->params().is_host(), backend == CpuBackend::Shared());
    auto optimizer = CreateOptimizer(OptimizerOptions{}, (*model)->params().table_ptr(), backend);
    ASSERT_TRUE(optimizer.ok());
    EXPECT_EQ(&(*optimizer)->state(0)->buffer_type(), &backend->buffer_type());
    TrainLoopOptions loop;
    loop.steps = 3;
    loop.batch_size = 4;
    loop.grad_accum = 2;
    loop.max_grad_norm = 0.5;
    loop.schedule.lr = 3e-3;
    int64_t next_row = 0;
    ASSERT_TRUE(TrainSteps(**model, **optimizer, rows, loop, &next_row).ok());
    params.push_back(HostParams(**model));
    GenerateOptions gen;
    gen.max_new_tokens = 6;
    gen.eos_token_id = -1;
    auto out = Generate(**model, {1, 70, 71, 72}, gen);
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    generated.push_back(*out);
  }
  ASSERT_EQ(params[0].size(), params[1].size());
  EXPECT_EQ(std::memcmp(params[0].data(), params[1].data(), params[0].size() * sizeof(float)), 0);
  EXPECT_EQ(generated[0], generated[1]);
  EXPECT_GT(device_backend->host_copies(), 0);  // inputs went in and logits came out through the backend
}

TEST(FakeDeviceTest, GradAccumulatorAndScaleRunOnTheBackend) {
  auto t = PaddedTable();
  auto be = std::make_shared<FakeDeviceBackend>();
  Arena micro(t, be->buffer_type()), mean(t, be->buffer_type());
  std::vector<float> host(static_cast<size_t>(micro.size()), 0.0f);
  for (int i = 0; i < 15; ++i) host[i] = static_cast<float>(i);
  micro.CopyFromHost(host.data());
  GradAccumulator acc(t, be);
  acc.Add(micro);
  acc.Add(micro);
  acc.TakeMean(mean);
  ScaleArena(mean, 2.0, be.get());
  EXPECT_EQ(ClipGradNorm(mean, 0.0, be.get()), std::sqrt(4.0 * 1015.0));  // sum of (2i)^2, exact in fp64
  std::vector<float> back(host.size());
  mean.CopyToHost(back.data());
  for (int i = 0; i < 15; ++i) EXPECT_EQ(back[i], 2.0f * static_cast<float>(i));
}

}  // namespace
}  // namespace tributary
