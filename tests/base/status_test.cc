#include "base/status.h"

#include <gtest/gtest.h>

#include <string>

namespace tributary {
namespace {

Result<int> ParsePositive(const std::string& s) {
  int v = 0;
  try {
    v = std::stoi(s);
  } catch (...) {
    return Status::InvalidArgument("'" + s + "' is not an integer");
  }
  if (v <= 0) return Status::InvalidArgument("'" + s + "' is not positive");
  return v;
}

Status DoubleIt(const std::string& s, int* out) {
  TRIB_ASSIGN_OR_RETURN(int v, ParsePositive(s));
  *out = 2 * v;
  return Status::OK();
}

Status Chain(const std::string& s) {
  int out = 0;
  TRIB_RETURN_IF_ERROR(DoubleIt(s, &out));
  return out > 10 ? Status::OK() : Status::FailedPrecondition("too small");
}

TEST(StatusTest, OkByDefault) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kOk);
  EXPECT_EQ(s.ToString(), "OK");
}

TEST(StatusTest, CarriesCodeAndMessage) {
  Status s = Status::NotFound("model dir '/x' has no config.json");
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(s.IsNotFound());
  EXPECT_EQ(s.ToString(), "NotFound: model dir '/x' has no config.json");
}

TEST(StatusTest, WithContextKeepsCode) {
  Status s = Status::Corruption("bad header").WithContext("reading model.safetensors");
  EXPECT_TRUE(s.IsCorruption());
  EXPECT_EQ(s.message(), "reading model.safetensors: bad header");
  EXPECT_TRUE(Status::OK().WithContext("ignored").ok());
}

TEST(ResultTest, ValueAndError) {
  Result<int> good = ParsePositive("7");
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 7);
  Result<int> bad = ParsePositive("x");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(bad.status().IsInvalidArgument());
  EXPECT_EQ(bad.value_or(-1), -1);
}

TEST(ResultTest, MacrosPropagate) {
  EXPECT_TRUE(Chain("6").ok());
  EXPECT_EQ(Chain("2").code(), StatusCode::kFailedPrecondition);
  Status s = Chain("-3");
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_EQ(s.message(), "'-3' is not positive");
}

TEST(ResultTest, OkStatusWithoutValueIsInternal) {
  Result<int> r{Status::OK()};
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal);
}

TEST(ResultDeathTest, ValueOfFailedResultAborts) {
  Result<int> bad = Status::NotFound("x");
  EXPECT_DEATH((void)bad.value(), "value\\(\\) on a failed Result");
}

}  // namespace
}  // namespace tributary
