#include "engine/io/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

#include "base/half.h"

namespace tributary {
namespace {

namespace fs = std::filesystem;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("trib_st_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  // Writes u64 header length + header + data verbatim (independent of WriteSafetensors).
  std::string WriteRaw(const std::string& name, const std::string& header, const std::string& data) {
    const std::string path = Path(name);
    std::ofstream out(path, std::ios::binary);
    const uint64_t n = header.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << header << data;
    return path;
  }

  fs::path dir_;
};

template <typename T>
std::string Bytes(std::initializer_list<T> values) {
  std::string s;
  for (T v : values) s.append(reinterpret_cast<const char*>(&v), sizeof(T));
  return s;
}

TEST(HalfTest, BF16KnownValues) {
  EXPECT_EQ(FloatToBF16(1.0f), 0x3f80);
  EXPECT_EQ(FloatToBF16(-2.0f), 0xc000);
  EXPECT_EQ(BF16ToFloat(0x3f81), 1.0078125f);
  EXPECT_EQ(BF16ToFloat(0x4049), 3.140625f);
  // 1 + 2^-8 is halfway between 0x3f80 and 0x3f81: ties to even (0x3f80).
  EXPECT_EQ(FloatToBF16(1.00390625f), 0x3f80);
  // 1 + 3 * 2^-8 is halfway between 0x3f81 and 0x3f82: ties to even (0x3f82).
  EXPECT_EQ(FloatToBF16(1.01171875f), 0x3f82);
  EXPECT_EQ(FloatToBF16(1.0f + 0x1.0p-8f + 0x1.0p-20f), 0x3f81);  // just above halfway rounds up
  EXPECT_TRUE(std::isnan(BF16ToFloat(FloatToBF16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(FloatToBF16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(FloatToBF16(-0.0f), 0x8000);
}

TEST(HalfTest, F16KnownValues) {
  EXPECT_EQ(FloatToF16(1.0f), 0x3c00);
  EXPECT_EQ(FloatToF16(-2.0f), 0xc000);
  EXPECT_EQ(FloatToF16(65504.0f), 0x7bff);  // largest finite half
  EXPECT_EQ(FloatToF16(65520.0f), 0x7c00);  // halfway to 65536: rounds to even = inf
  EXPECT_EQ(FloatToF16(65519.0f), 0x7bff);
  EXPECT_EQ(F16ToFloat(0x3555), 0.333251953125f);
  EXPECT_EQ(F16ToFloat(0x0001), 0x1.0p-24f);            // smallest subnormal
  EXPECT_EQ(F16ToFloat(0x03ff), 1023.0f * 0x1.0p-24f);  // largest subnormal
  EXPECT_EQ(F16ToFloat(0x0400), 0x1.0p-14f);            // smallest normal
  EXPECT_EQ(FloatToF16(1.5f * 0x1.0p-25f), 0x0001);     // 0.75 ulp rounds up to the smallest subnormal
  EXPECT_EQ(FloatToF16(0x1.0p-25f), 0x0000);            // exactly half an ulp: ties to even (0)
  EXPECT_EQ(FloatToF16(1e-9f), 0x0000);
  EXPECT_EQ(FloatToF16(-1e-9f), 0x8000);
  EXPECT_TRUE(std::isinf(F16ToFloat(0x7c00)));
  EXPECT_TRUE(std::isnan(F16ToFloat(0x7e00)));
  EXPECT_EQ(FloatToF16(1.0f + 0x1.0p-11f), 0x3c00);  // halfway between 1 and 1+2^-10: even
  EXPECT_EQ(FloatToF16(1.0f + 3 * 0x1.0p-11f), 0x3c02);
}

TEST(HalfTest, EveryHalfBitPatternRoundTrips) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const uint16_t bits = static_cast<uint16_t>(h);
    const bool f16_nan = (bits & 0x7c00) == 0x7c00 && (bits & 0x3ff) != 0;
    if (!f16_nan) {
      ASSERT_EQ(FloatToF16(F16ToFloat(bits)), bits) << h;
    }
    const bool bf16_nan = (bits & 0x7f80) == 0x7f80 && (bits & 0x7f) != 0;
    if (!bf16_nan) {
      ASSERT_EQ(FloatToBF16(BF16ToFloat(bits)), bits) << h;
    }
  }
}

TEST_F(SafetensorsTest, ReadsHandWrittenFileOfEveryDtype) {
  // Offsets laid out by hand: F16 [2] at 0..4, BF16 [2] at 4..8, F32 [1] at 8..12, I32 [1] at 12..16,
  // F64 [1] at 16..24, I64 [2] at 24..40, U8 [3] at 40..43, I8 [1] 43..44, BOOL [1] 44..45.
  const std::string header = R"({"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},)"
                             R"("b":{"dtype":"BF16","shape":[1,2],"data_offsets":[4,8]},)"
                             R"("f":{"dtype":"F32","shape":[],"data_offsets":[8,12]},)"
                             R"("i":{"dtype":"I32","shape":[1],"data_offsets":[12,16]},)"
                             R"("d":{"dtype":"F64","shape":[1],"data_offsets":[16,24]},)"
                             R"("l":{"dtype":"I64","shape":[2],"data_offsets":[24,40]},)"
                             R"("u":{"dtype":"U8","shape":[3],"data_offsets":[40,43]},)"
                             R"("s":{"dtype":"I8","shape":[1],"data_offsets":[43,44]},)"
                             R"("t":{"dtype":"BOOL","shape":[1],"data_offsets":[44,45]},)"
                             R"("__metadata__":{"format":"pt"}})";
  const std::string data = Bytes<uint16_t>({0x3c00, 0xc000}) + Bytes<uint16_t>({0x3f80, 0x4049}) +
                           Bytes<float>({-0.75f}) + Bytes<int32_t>({123}) + Bytes<double>({2.5}) +
                           Bytes<int64_t>({-7, 1ll << 40}) + std::string("\x01\x02\xff", 3) + std::string("\xfe", 1) +
                           std::string("\x01", 1);
  auto file = SafetensorsFile::Open(WriteRaw("all.safetensors", header, data));
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ(file->metadata().at("format"), "pt");
  ASSERT_EQ(file->tensors().size(), 9u);
  EXPECT_EQ(file->tensors()[0].name, "h");  // file order
  EXPECT_EQ(file->Find("b")->shape, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(*file->ReadFloatVector("h"), (std::vector<float>{1.0f, -2.0f}));
  EXPECT_EQ(*file->ReadFloatVector("b"), (std::vector<float>{1.0f, 3.140625f}));
  EXPECT_EQ(*file->ReadFloatVector("f"), (std::vector<float>{-0.75f}));
  EXPECT_EQ(*file->ReadFloatVector("i"), (std::vector<float>{123.0f}));
  EXPECT_EQ(*file->ReadFloatVector("d"), (std::vector<float>{2.5f}));
  EXPECT_EQ(*file->ReadInt64Vector("l"), (std::vector<int64_t>{-7, 1ll << 40}));
  EXPECT_EQ(*file->ReadInt64Vector("u"), (std::vector<int64_t>{1, 2, 255}));
  EXPECT_EQ(*file->ReadInt64Vector("s"), (std::vector<int64_t>{-2}));
  EXPECT_EQ(*file->ReadFloatVector("t"), (std::vector<float>{1.0f}));
  EXPECT_FALSE(file->ReadInt64Vector("h").ok());
  EXPECT_FALSE(file->ReadFloatVector("nope").ok());
  std::vector<float> wrong(3);
  Status st = file->ReadAsFloat("h", wrong.data(), 3);
  EXPECT_TRUE(st.IsInvalidArgument());
  EXPECT_NE(st.message().find("'h'"), std::string::npos) << st.message();
}

TEST_F(SafetensorsTest, WriteReadRoundTrip) {
  std::vector<float> a(1000), b = {0.1f, -3.5f, 1e-6f, 70000.0f, -0.0f, 2.0f};
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (float& x : a) x = dist(rng);
  const std::vector<int64_t> ints = {5, -6, 1ll << 50};
  std::vector<SafetensorsWriteTensor> tensors(5);
  tensors[0] = {"a.f32", SafetensorsDType::kF32, {10, 100}, a.data(), nullptr};
  tensors[1] = {"b.bf16", SafetensorsDType::kBF16, {2, 3}, b.data(), nullptr};
  tensors[2] = {"b.f16", SafetensorsDType::kF16, {6}, b.data(), nullptr};
  tensors[3] = {"ints", SafetensorsDType::kI64, {3}, nullptr, ints.data()};
  tensors[4] = {"empty", SafetensorsDType::kF32, {0, 4}, a.data(), nullptr};
  const std::string path = Path("rt.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, tensors, {{"format", "pt"}, {"note", "x"}}).ok());
  {
    std::ifstream in(path, std::ios::binary);
    uint64_t n = 0;
    in.read(reinterpret_cast<char*>(&n), 8);
    EXPECT_EQ(n % 8, 0u);  // header padded to 8 bytes
  }
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ(file->metadata().at("note"), "x");
  EXPECT_EQ(*file->ReadFloatVector("a.f32"), a);
  auto bf = *file->ReadFloatVector("b.bf16");
  auto hf = *file->ReadFloatVector("b.f16");
  for (size_t i = 0; i < b.size(); ++i) {
    EXPECT_EQ(bf[i], BF16ToFloat(FloatToBF16(b[i])));
    EXPECT_EQ(hf[i], F16ToFloat(FloatToF16(b[i])));
  }
  EXPECT_TRUE(std::isinf(hf[3]));  // 70000 overflows fp16
  EXPECT_EQ(*file->ReadInt64Vector("ints"), ints);
  EXPECT_EQ(file->Find("empty")->numel, 0);
  EXPECT_TRUE(file->ReadFloatVector("empty")->empty());
  EXPECT_EQ(file->Find("b.bf16")->shape, (std::vector<int64_t>{2, 3}));
  // No temporary file is left behind.
  int count = 0;
  for (const auto& e : fs::directory_iterator(dir_)) count += e.is_regular_file();
  EXPECT_EQ(count, 1);
}

TEST_F(SafetensorsTest, WriterRejectsBadInput) {
  float x = 1.0f;
  int32_t i = 1;
  EXPECT_TRUE(WriteSafetensors(Path("a"), {{"t", SafetensorsDType::kI32, {1}, &x, nullptr}}).IsInvalidArgument());
  EXPECT_TRUE(WriteSafetensors(Path("a"), {{"t", SafetensorsDType::kI32, {1}, &x, &i}}).IsInvalidArgument());
  EXPECT_TRUE(WriteSafetensors(Path("a"), {{"t", SafetensorsDType::kF32, {1}, &x, nullptr},
                                           {"t", SafetensorsDType::kF32, {1}, &x, nullptr}})
                  .IsInvalidArgument());
  EXPECT_TRUE(WriteSafetensors((dir_ / "no_such_dir" / "a").string(), {}).IsIOError());
}

struct BadCase {
  const char* label;
  std::string header;
  std::string data;
  const char* expect;  // substring of the message
};

TEST_F(SafetensorsTest, CorruptFilesGiveOneLineErrors) {
  const std::string d8(8, '\0');
  const std::vector<BadCase> cases = {
      {"invalid json", R"({"w":{"dtype":"F32",)", d8, "invalid JSON"},
      {"not object", R"([1,2])", d8, "not a JSON object"},
      {"unknown dtype", R"({"w":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}})", d8,
       "unsupported dtype 'F8_E4M3'"},
      {"out of range", R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", d8, "beyond the data section"},
      {"size mismatch", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", d8,
       "do not match dtype F32 x shape [3]"},
      {"overlap",
       R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"v":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       d8, "overlaps"},
      {"begin after end", R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", d8, "> end"},
      {"negative shape", R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", d8, "non-negative"},
      {"missing offsets", R"({"w":{"dtype":"F32","shape":[1]}})", d8, "data_offsets"},
      {"bad metadata", R"({"__metadata__":{"a":1}})", d8, "__metadata__"},
      {"huge shape", R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", d8, "too large"},
  };
  for (const auto& c : cases) {
    const std::string path = WriteRaw("bad.safetensors", c.header, c.data);
    auto file = SafetensorsFile::Open(path);
    ASSERT_FALSE(file.ok()) << c.label;
    const std::string& msg = file.status().message();
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.label << ": " << msg;
    EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << c.label << ": " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << c.label << ": " << msg;
    // Bad input (the CLI's exit 4, docs/cli.md), not a damaged store.
    EXPECT_TRUE(file.status().IsInvalidArgument()) << c.label << ": " << file.status().ToString();
    if (std::string(c.label) != "invalid json" && std::string(c.label) != "not object" &&
        std::string(c.label) != "bad metadata") {
      EXPECT_NE(msg.find("'w'"), std::string::npos) << c.label << " names the tensor: " << msg;
    }
  }
}

TEST_F(SafetensorsTest, TruncatedFiles) {
  {
    std::ofstream out(Path("short"), std::ios::binary);
    out << "abc";
  }
  auto r = SafetensorsFile::Open(Path("short"));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsInvalidArgument());
  EXPECT_NE(r.status().message().find("truncated"), std::string::npos);
  // Header length larger than the file.
  const std::string header = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  const std::string path = WriteRaw("long_header", header, "");
  {
    std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
    const uint64_t n = 1ull << 40;
    f.write(reinterpret_cast<const char*>(&n), 8);
  }
  r = SafetensorsFile::Open(path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("exceeds the file size"), std::string::npos) << r.status().message();
  // Data section cut short.
  r = SafetensorsFile::Open(WriteRaw("short_data", header, "\x01\x02"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("beyond the data section"), std::string::npos) << r.status().message();
  EXPECT_TRUE(SafetensorsFile::Open(Path("missing")).status().IsNotFound());
}

// Random truncations and byte flips of a valid file must give an error or a readable file, never a crash.
TEST_F(SafetensorsTest, FuzzTruncationsAndByteFlips) {
  std::vector<float> a(37, 0.5f), b(11, -1.0f);
  std::vector<SafetensorsWriteTensor> tensors = {{"model.a", SafetensorsDType::kBF16, {37}, a.data(), nullptr},
                                                 {"model.b", SafetensorsDType::kF32, {11, 1}, b.data(), nullptr}};
  const std::string good_path = Path("good.safetensors");
  ASSERT_TRUE(WriteSafetensors(good_path, tensors, {{"format", "pt"}}).ok());
  std::string good;
  {
    std::ifstream in(good_path, std::ios::binary);
    good.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::mt19937_64 rng(12345);
  int failures = 0, successes = 0;
  const std::string path = Path("fuzz.safetensors");
  for (int iter = 0; iter < 400; ++iter) {
    std::string bytes = good;
    if (iter % 2 == 0) {
      bytes.resize(rng() % good.size());
    } else {
      const int flips = 1 + static_cast<int>(rng() % 4);
      // Bias flips towards the length prefix and the header, where they matter.
      const size_t span = (rng() % 4 == 0) ? bytes.size() : std::min<size_t>(bytes.size(), 8 + 150);
      for (int k = 0; k < flips; ++k) bytes[rng() % span] = static_cast<char>(rng() & 0xff);
    }
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
    auto file = SafetensorsFile::Open(path);
    if (!file.ok()) {
      ++failures;
      EXPECT_EQ(file.status().message().find('\n'), std::string::npos);
      EXPECT_NE(file.status().message().find("fuzz.safetensors"), std::string::npos) << file.status().message();
      continue;
    }
    ++successes;
    for (const auto& t : file->tensors()) {
      auto v = file->ReadFloatVector(t.name);
      EXPECT_TRUE(v.ok()) << v.status().ToString();
    }
  }
  EXPECT_GT(failures, 100);
  EXPECT_GT(successes, 10);  // flips inside the data section leave a valid file
}

}  // namespace
}  // namespace tributary
