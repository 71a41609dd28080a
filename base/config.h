// Typed, schema-checked YAML configuration with `--set key=value` overrides.
//
// Every key a program accepts is declared in a ConfigSchema (dotted path, type, default, help).
// Loading a file rejects unknown keys and values of the wrong type with one line naming the file,
// the line and the key: "coordinator.yaml:7: key 'coordinator.heartbeat_s': expected a number, got 'soon'".
// Used for daemon configs (`--config`) and job specs.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "base/status.h"

namespace tributary {

enum class ConfigType { kString, kInt, kFloat, kBool, kStringList };

const char* ConfigTypeName(ConfigType type);  // "a string", "an integer", ...

struct ConfigKeySpec {
  std::string key;  // dotted path, e.g. "coordinator.listen"
  ConfigType type = ConfigType::kString;
  std::string default_yaml;  // default as YAML text ("" = no default; the key is then unset)
  std::string help;
  std::vector<std::string> choices;  // allowed values for kString, empty = any
  double min = -1e300;               // inclusive bounds for kInt/kFloat
  double max = 1e300;
  // kInt: words that stand for a value outside the bounds (e.g. "auto" for 0); Dump prints the word.
  std::vector<std::pair<std::string, int64_t>> words;
};

// Builders of schema keys, so a schema reads as one line per key.
ConfigKeySpec ConfigKey(std::string key, ConfigType type, std::string default_yaml, std::string help);
// A string key whose value must be one of `choices`.
ConfigKeySpec ConfigChoice(std::string key, std::string default_yaml, std::string help,
                           std::vector<std::string> choices);
// A number with inclusive bounds.
ConfigKeySpec ConfigRanged(std::string key, ConfigType type, std::string default_yaml, std::string help, double min,
                           double max);

class ConfigSchema {
 public:
  ConfigSchema& Add(ConfigKeySpec spec);
  const ConfigKeySpec* Find(const std::string& key) const;
  // True when `prefix` names a section (some key starts with "prefix.").
  bool IsSection(const std::string& prefix) const;
  const std::vector<ConfigKeySpec>& keys() const { return keys_; }

 private:
  std::vector<ConfigKeySpec> keys_;
};

using ConfigValue = std::variant<std::string, int64_t, double, bool, std::vector<std::string>>;

class Config {
 public:
  // A config holding the schema's defaults.
  static Result<Config> Defaults(const ConfigSchema& schema);
  // Defaults overlaid with a YAML file; errors name `path` and the line.
  static Result<Config> LoadFile(const ConfigSchema& schema, const std::string& path);
  // Same, from text; `source` names it in errors.
  static Result<Config> LoadString(const ConfigSchema& schema, const std::string& yaml, const std::string& source);

  // Applies one "key=value" override (value parsed as a YAML scalar or flow sequence).
  Status Set(const std::string& assignment);
  // Applies a typed value from code (e.g. a dedicated CLI flag); the origin names the flag.
  Status SetValue(const std::string& key, const std::string& value_text, const std::string& origin);

  bool Has(const std::string& key) const;  // has a value (default or given)
  // Where the value came from: "default", "FILE:LINE" or "--set".
  std::string Origin(const std::string& key) const;

  // Typed getters; asking for an undeclared key or the wrong type is a programmer error (abort).
  const std::string& GetString(const std::string& key) const;
  int64_t GetInt(const std::string& key) const;
  double GetFloat(const std::string& key) const;
  bool GetBool(const std::string& key) const;
  const std::vector<std::string>& GetStringList(const std::string& key) const;

  // All values as "key: value" lines in schema order (for `--print-config` and logs).
  std::string Dump() const;

 private:
  struct Entry {
    ConfigValue value;
    std::string origin;
  };
  explicit Config(const ConfigSchema& schema) : schema_(&schema) {}
  Status Overlay(const std::string& yaml, const std::string& source);
  const Entry& Get(const std::string& key, ConfigType type) const;

  const ConfigSchema* schema_;
  std::map<std::string, Entry> values_;
};

}  // namespace tributary
