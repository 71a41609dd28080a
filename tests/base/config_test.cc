#include "base/config.h"
#include "base/utf8.h"

#include <gtest/gtest.h>

namespace tributary {
namespace {

ConfigSchema TestSchema() {
  ConfigSchema s;
  ConfigKeySpec k;
  k = {};
  k.key = "name";
  k.default_yaml = "anon";
  s.Add(k);
  k = {};
  k.key = "train.rounds";
  k.type = ConfigType::kInt;
  k.default_yaml = "10";
  k.min = 1;
  k.max = 1000;
  s.Add(k);
  k = {};
  k.key = "train.lr";
  k.type = ConfigType::kFloat;
  k.default_yaml = "1e-4";
  s.Add(k);
  k = {};
  k.key = "train.mode";
  k.default_yaml = "ferret";
  k.choices = {"ferret", "fedavg", "lora"};
  s.Add(k);
  k = {};
  k.key = "secure";
  k.type = ConfigType::kBool;
  k.default_yaml = "true";
  s.Add(k);
  k = {};
  k.key = "tags";
  k.type = ConfigType::kStringList;
  s.Add(k);
  k = {};
  k.key = "optional_path";
  s.Add(k);
  return s;
}

TEST(ConfigTest, DefaultsAndGoodFile) {
  ConfigSchema schema = TestSchema();
  Result<Config> c = Config::LoadString(schema,
                                        "name: alice\n"
                                        "train:\n"
                                        "  rounds: 20\n"
                                        "  lr: 0.5\n"
                                        "tags: [a, b]\n",
                                        "job.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->GetString("name"), "alice");
  EXPECT_EQ(c->GetInt("train.rounds"), 20);
  EXPECT_DOUBLE_EQ(c->GetFloat("train.lr"), 0.5);
  EXPECT_EQ(c->GetString("train.mode"), "ferret");
  EXPECT_TRUE(c->GetBool("secure"));
  EXPECT_EQ(c->GetStringList("tags"), (std::vector<std::string>{"a", "b"}));
  EXPECT_FALSE(c->Has("optional_path"));
  EXPECT_EQ(c->Origin("train.rounds"), "job.yaml:3");
  EXPECT_EQ(c->Origin("train.mode"), "default");
}

TEST(ConfigTest, EmptyFileGivesDefaults) {
  ConfigSchema schema = TestSchema();
  Result<Config> c = Config::LoadString(schema, "", "empty.yaml");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->GetInt("train.rounds"), 10);
}

TEST(ConfigTest, UnknownKeyNamesFileLineAndKey) {
  ConfigSchema schema = TestSchema();
  Result<Config> c = Config::LoadString(schema, "name: x\ntrain:\n  roundz: 3\n", "job.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), "job.yaml:3: unknown key 'train.roundz'");
}

TEST(ConfigTest, WrongTypesAreNamed) {
  ConfigSchema schema = TestSchema();
  struct Case {
    const char* yaml;
    const char* message;
  } cases[] = {
      {"train:\n  rounds: ten\n", "job.yaml:2: key 'train.rounds': expected an integer, got 'ten'"},
      {"train:\n  rounds: 2.5\n", "job.yaml:2: key 'train.rounds': expected an integer, got '2.5'"},
      {"train:\n  rounds: 0\n", "job.yaml:2: key 'train.rounds': 0 is outside [1, 1000]"},
      {"train:\n  lr: fast\n", "job.yaml:2: key 'train.lr': expected a number, got 'fast'"},
      {"secure: maybe\n", "job.yaml:1: key 'secure': expected true or false, got 'maybe'"},
      {"train:\n  mode: sgd\n", "job.yaml:2: key 'train.mode': 'sgd' is not one of ferret|fedavg|lora"},
      {"train: 5\n", "job.yaml:1: key 'train' is a section and needs a mapping"},
      {"name: [1, 2]\n", "job.yaml:1: key 'name': expected a string, got a list"},
      {"name:\n", "job.yaml:1: key 'name': expected a string, got no value"},
      {"- a\n- b\n", "job.yaml:1: top level must be a mapping of keys"},
  };
  for (const Case& tc : cases) {
    Result<Config> c = Config::LoadString(schema, tc.yaml, "job.yaml");
    ASSERT_FALSE(c.ok()) << tc.yaml;
    EXPECT_TRUE(c.status().IsInvalidArgument());
    EXPECT_EQ(c.status().message(), tc.message) << tc.yaml;
  }
}

TEST(ConfigTest, InvalidYamlNamesTheLine) {
  ConfigSchema schema = TestSchema();
  Result<Config> c = Config::LoadString(schema, "name: a\ntrain: [unclosed\n", "bad.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message().rfind("bad.yaml:", 0), 0u) << c.status().message();
  EXPECT_NE(c.status().message().find("invalid YAML"), std::string::npos);
}

TEST(ConfigTest, OverridesApplyTypedAndValidated) {
  ConfigSchema schema = TestSchema();
  Result<Config> c = Config::LoadString(schema, "train:\n  rounds: 5\n", "job.yaml");
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->Set("train.rounds=42").ok());
  EXPECT_EQ(c->GetInt("train.rounds"), 42);
  EXPECT_EQ(c->Origin("train.rounds"), "--set train.rounds=42");
  ASSERT_TRUE(c->Set("tags=[x, y, z]").ok());
  EXPECT_EQ(c->GetStringList("tags").size(), 3u);
  ASSERT_TRUE(c->Set("optional_path=").ok());
  EXPECT_EQ(c->GetString("optional_path"), "");
  ASSERT_TRUE(c->Set("name=a=b").ok());
  EXPECT_EQ(c->GetString("name"), "a=b");

  Status s = c->Set("train.rounds=many");
  EXPECT_EQ(s.message(), "--set train.rounds=many: key 'train.rounds': expected an integer, got 'many'");
  EXPECT_EQ(c->GetInt("train.rounds"), 42) << "a failed override leaves the value alone";
  EXPECT_EQ(c->Set("nope=1").message(), "--set nope=1: unknown key 'nope'");
  EXPECT_EQ(c->Set("novalue").message(), "--set 'novalue': expected key=value");
}

TEST(ConfigTest, MissingFileIsNotFound) {
  ConfigSchema schema = TestSchema();
  Result<Config> c = Config::LoadFile(schema, "/nonexistent/tributary.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(c.status().IsNotFound());
  EXPECT_NE(c.status().message().find("/nonexistent/tributary.yaml"), std::string::npos);
}

TEST(ConfigTest, DumpListsValuesWithOrigins) {
  ConfigSchema schema = TestSchema();
  Result<Config> c = Config::LoadString(schema, "secure: false\n", "f.yaml");
  ASSERT_TRUE(c.ok());
  const std::string dump = c->Dump();
  EXPECT_NE(dump.find("secure: false  # f.yaml:1"), std::string::npos) << dump;
  EXPECT_NE(dump.find("train.rounds: 10  # default"), std::string::npos) << dump;
}

// Strings end up in protobuf string fields: invalid UTF-8 is refused where it is given.
TEST(ConfigTest, StringsMustBeValidUtf8) {
  const ConfigSchema schema = TestSchema();  // a Config refers to its schema
  auto bad = Config::LoadString(schema, "name: \"caf\xc3\"\ntags: [ok, \"\xff\"]\n", "c.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "c.yaml:1: key 'name': not valid UTF-8 (byte 3 of the value)");
  auto list = Config::LoadString(schema, "tags: [ok, \"a\xff\"]\n", "c.yaml");
  ASSERT_FALSE(list.ok());
  EXPECT_NE(list.status().message().find("key 'tags': not valid UTF-8 (byte 1"), std::string::npos)
      << list.status().message();
  auto good = Config::LoadString(schema, "name: \"caf\xc3\xa9 \xe6\x97\xa5\xf0\x9f\x91\x8d\"\n", "c.yaml");
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  Status set = good->Set("name=\xed\xa0\x80");  // a UTF-16 surrogate encoded in UTF-8
  EXPECT_NE(set.message().find("not valid UTF-8"), std::string::npos) << set.ToString();
}

TEST(ConfigTest, Utf8ValidatorFollowsRfc3629) {
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf"));  // é € 😀 U+10FFFF
  EXPECT_EQ(FirstInvalidUtf8("ab\xc0\xaf"), 2u);                                     // overlong '/'
  EXPECT_EQ(FirstInvalidUtf8("\xe0\x80\xaf"), 0u);                                   // overlong, 3 bytes
  EXPECT_EQ(FirstInvalidUtf8("x\xed\xa0\x80"), 1u);                                  // surrogate
  EXPECT_EQ(FirstInvalidUtf8("\xf4\x90\x80\x80"), 0u);                               // above U+10FFFF
  EXPECT_EQ(FirstInvalidUtf8("ok\xe2\x82"), 2u);                                     // truncated
  EXPECT_EQ(FirstInvalidUtf8("\x80"), 0u);                                           // stray continuation
}

}  // namespace
}  // namespace tributary

namespace tributary {
namespace {

// An integer key may take words that stand for a value outside its bounds (a job's train.local_steps: auto).
TEST(ConfigTest, IntegerWordsStandForTheirValue) {
  ConfigSchema schema;
  ConfigKeySpec steps = ConfigRanged("train.local_steps", ConfigType::kInt, "10", "H", 1, 100);
  steps.words = {{"auto", 0}};
  schema.Add(steps);
  auto config = Config::LoadString(schema, "train:\n  local_steps: auto\n", "job.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->GetInt("train.local_steps"), 0);
  EXPECT_EQ(config->Dump(), "train.local_steps: auto  # job.yaml:2\n");
  ASSERT_TRUE(config->Set("train.local_steps=7").ok());
  EXPECT_EQ(config->GetInt("train.local_steps"), 7);
  EXPECT_FALSE(config->Set("train.local_steps=0").ok()) << "the value itself stays out of bounds";
  EXPECT_FALSE(config->Set("train.local_steps=automatic").ok());
}

TEST(ConfigTest, CheckUtf8NamesWhereAndEscapesTheBadBytes) {
  EXPECT_TRUE(CheckUtf8("caf\xc3\xa9", "--name").ok());
  Status bad = CheckUtf8("w\xff\xfex", "--name");
  EXPECT_TRUE(bad.IsInvalidArgument());
  EXPECT_EQ(bad.message(), "--name: 'w\\xff\\xfex' is not valid UTF-8 (byte 1)");
  EXPECT_TRUE(IsValidUtf8(bad.message()));
  EXPECT_EQ(EscapeInvalidUtf8("ok\xe2\x82"), "ok\\xe2\\x82");  // a truncated sequence, byte by byte
}

}  // namespace
}  // namespace tributary
