#include "base/file_util.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

namespace tributary {
namespace {

namespace fs = std::filesystem;

TEST(FileUtilTest, AtomicWriteAndRead) {
  const fs::path dir = fs::temp_directory_path() / ("trib_fu_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = JoinPath(dir.string(), "a.txt");
  ASSERT_TRUE(WriteFileAtomic(path, std::string("one\0two", 7)).ok());
  ASSERT_TRUE(WriteFileAtomic(path, "replaced").ok());  // overwrite in place
  auto text = ReadFileToString(path);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "replaced");
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1);  // no temporary left behind
  EXPECT_TRUE(ReadFileToString(JoinPath(dir.string(), "missing")).status().IsNotFound());
  Status st = WriteFileAtomic(JoinPath(dir.string(), "no/such/dir.txt"), "x");
  EXPECT_TRUE(st.IsIOError());
  EXPECT_NE(st.message().find("no/such/dir.txt"), std::string::npos);
  fs::remove_all(dir);
}

TEST(FileUtilTest, PathHelpers) {
  EXPECT_EQ(JoinPath("a", "b"), "a/b");
  EXPECT_EQ(JoinPath("a/", "b"), "a/b");
  EXPECT_EQ(JoinPath("", "b"), "b");
  EXPECT_EQ(BaseName("x/y/data.jsonl"), "data.jsonl");
  EXPECT_EQ(BaseName("data.jsonl"), "data.jsonl");
}

}  // namespace
}  // namespace tributary
