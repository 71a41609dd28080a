#include "base/config.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/utf8.h"

namespace tributary {
namespace {

std::string Where(const std::string& source, const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  if (mark.line < 0) return source;
  return source + ":" + std::to_string(mark.line + 1);
}

bool ParseInt(const std::string& text, int64_t* out) {
  if (text.empty()) return false;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (errno != 0 || end == text.c_str() || *end != '\0') return false;
  *out = v;
  return true;
}

bool ParseFloat(const std::string& text, double* out) {
  if (text.empty()) return false;
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (errno != 0 || end == text.c_str() || *end != '\0' || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

// Converts a YAML node to a value of the key's type, or explains why it cannot.
Status ConvertNode(const ConfigKeySpec& spec, const YAML::Node& node, const std::string& where, ConfigValue* out) {
  auto wrong = [&](const std::string& got) {
    return Status::InvalidArgument(where + ": key '" + spec.key + "': expected " + ConfigTypeName(spec.type) +
                                   ", got " + got);
  };
  // Strings travel in protobuf string fields, which must be UTF-8.
  auto check_utf8 = [&](const std::string& text) {
    const size_t bad = FirstInvalidUtf8(text);
    if (bad == std::string::npos) return Status::OK();
    return Status::InvalidArgument(where + ": key '" + spec.key + "': not valid UTF-8 (byte " + std::to_string(bad) +
                                   " of the value)");
  };
  if (spec.type == ConfigType::kStringList) {
    if (node.IsScalar()) {
      // Allow a single scalar as a one-element list.
      TRIB_RETURN_IF_ERROR(check_utf8(node.Scalar()));
      *out = std::vector<std::string>{node.Scalar()};
      return Status::OK();
    }
    if (!node.IsSequence()) return wrong(node.IsMap() ? "a mapping" : "nothing");
    std::vector<std::string> items;
    for (const auto& item : node) {
      if (!item.IsScalar()) return wrong("a list with a non-scalar item");
      TRIB_RETURN_IF_ERROR(check_utf8(item.Scalar()));
      items.push_back(item.Scalar());
    }
    *out = std::move(items);
    return Status::OK();
  }
  if (node.IsNull()) return wrong("no value");
  if (!node.IsScalar()) return wrong(node.IsMap() ? "a mapping" : "a list");
  const std::string& text = node.Scalar();
  switch (spec.type) {
    case ConfigType::kString:
      TRIB_RETURN_IF_ERROR(check_utf8(text));
      if (!spec.choices.empty()) {
        bool found = false;
        std::string allowed;
        for (const auto& c : spec.choices) {
          found = found || c == text;
          allowed += (allowed.empty() ? "" : "|") + c;
        }
        if (!found)
          return Status::InvalidArgument(where + ": key '" + spec.key + "': '" + text + "' is not one of " + allowed);
      }
      *out = text;
      return Status::OK();
    case ConfigType::kInt: {
      for (const auto& [word, value] : spec.words) {
        if (text != word) continue;
        *out = value;
        return Status::OK();
      }
      int64_t v = 0;
      if (!ParseInt(text, &v)) return wrong("'" + text + "'");
      if (v < spec.min || v > spec.max) {
        std::ostringstream os;
        os << where << ": key '" << spec.key << "': " << v << " is outside [" << spec.min << ", " << spec.max << "]";
        return Status::InvalidArgument(os.str());
      }
      *out = v;
      return Status::OK();
    }
    case ConfigType::kFloat: {
      double v = 0;
      if (!ParseFloat(text, &v)) return wrong("'" + text + "'");
      if (v < spec.min || v > spec.max) {
        std::ostringstream os;
        os << where << ": key '" << spec.key << "': " << v << " is outside [" << spec.min << ", " << spec.max << "]";
        return Status::InvalidArgument(os.str());
      }
      *out = v;
      return Status::OK();
    }
    case ConfigType::kBool:
      if (text == "true") {
        *out = true;
      } else if (text == "false") {
        *out = false;
      } else {
        return wrong("'" + text + "'");
      }
      return Status::OK();
    case ConfigType::kStringList: break;
  }
  return Status::Internal("unhandled config type");
}

std::string FormatValue(const ConfigValue& v) {
  std::ostringstream os;
  if (const auto* s = std::get_if<std::string>(&v)) {
    os << '"' << *s << '"';
  } else if (const auto* i = std::get_if<int64_t>(&v)) {
    os << *i;
  } else if (const auto* d = std::get_if<double>(&v)) {
    os << *d;
  } else if (const auto* b = std::get_if<bool>(&v)) {
    os << (*b ? "true" : "false");
  } else if (const auto* l = std::get_if<std::vector<std::string>>(&v)) {
    os << '[';
    for (size_t i = 0; i < l->size(); ++i) os << (i ? ", " : "") << '"' << (*l)[i] << '"';
    os << ']';
  }
  return os.str();
}

}  // namespace

const char* ConfigTypeName(ConfigType type) {
  switch (type) {
    case ConfigType::kString: return "a string";
    case ConfigType::kInt: return "an integer";
    case ConfigType::kFloat: return "a number";
    case ConfigType::kBool: return "true or false";
    case ConfigType::kStringList: return "a list of strings";
  }
  return "a value";
}

ConfigKeySpec ConfigKey(std::string key, ConfigType type, std::string default_yaml, std::string help) {
  ConfigKeySpec spec;
  spec.key = std::move(key);
  spec.type = type;
  spec.default_yaml = std::move(default_yaml);
  spec.help = std::move(help);
  return spec;
}

ConfigKeySpec ConfigChoice(std::string key, std::string default_yaml, std::string help,
                           std::vector<std::string> choices) {
  ConfigKeySpec spec = ConfigKey(std::move(key), ConfigType::kString, std::move(default_yaml), std::move(help));
  spec.choices = std::move(choices);
  return spec;
}

ConfigKeySpec ConfigRanged(std::string key, ConfigType type, std::string default_yaml, std::string help, double min,
                           double max) {
  ConfigKeySpec spec = ConfigKey(std::move(key), type, std::move(default_yaml), std::move(help));
  spec.min = min;
  spec.max = max;
  return spec;
}

ConfigSchema& ConfigSchema::Add(ConfigKeySpec spec) {
  TRIB_CHECK(Find(spec.key) == nullptr);
  keys_.push_back(std::move(spec));
  return *this;
}

const ConfigKeySpec* ConfigSchema::Find(const std::string& key) const {
  for (const auto& k : keys_)
    if (k.key == key) return &k;
  return nullptr;
}

bool ConfigSchema::IsSection(const std::string& prefix) const {
  const std::string dotted = prefix + ".";
  for (const auto& k : keys_)
    if (k.key.compare(0, dotted.size(), dotted) == 0) return true;
  return false;
}

Result<Config> Config::Defaults(const ConfigSchema& schema) {
  Config config(schema);
  for (const auto& spec : schema.keys()) {
    if (spec.default_yaml.empty() && spec.type != ConfigType::kStringList) continue;
    YAML::Node node;
    try {
      node = YAML::Load(spec.default_yaml.empty() ? "[]" : spec.default_yaml);
    } catch (const YAML::Exception& e) {
      return Status::Internal("default of key '" + spec.key + "' is not valid YAML: " + e.what());
    }
    ConfigValue value;
    TRIB_RETURN_IF_ERROR(ConvertNode(spec, node, "default", &value));
    config.values_[spec.key] = Entry{std::move(value), "default"};
  }
  return config;
}

Result<Config> Config::LoadFile(const ConfigSchema& schema, const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("config file '" + path + "' cannot be opened: " + std::strerror(errno));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return LoadString(schema, buffer.str(), path);
}

Result<Config> Config::LoadString(const ConfigSchema& schema, const std::string& yaml, const std::string& source) {
  TRIB_ASSIGN_OR_RETURN(Config config, Defaults(schema));
  TRIB_RETURN_IF_ERROR(config.Overlay(yaml, source));
  return config;
}

Status Config::Overlay(const std::string& yaml, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::ParserException& e) {
    return Status::InvalidArgument(source + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + e.msg);
  }
  if (root.IsNull()) return Status::OK();  // empty file: defaults only
  if (!root.IsMap()) return Status::InvalidArgument(Where(source, root) + ": top level must be a mapping of keys");

  // Walk the tree; every leaf must be a declared key, every inner mapping a declared section.
  struct Item {
    std::string prefix;
    YAML::Node node;
  };
  std::vector<Item> stack{{"", root}};
  while (!stack.empty()) {
    Item item = stack.back();
    stack.pop_back();
    for (auto it = item.node.begin(); it != item.node.end(); ++it) {
      const YAML::Node key_node = it->first;
      const YAML::Node value = it->second;
      if (!key_node.IsScalar()) return Status::InvalidArgument(Where(source, key_node) + ": keys must be plain names");
      const std::string key = item.prefix.empty() ? key_node.Scalar() : item.prefix + "." + key_node.Scalar();
      if (const ConfigKeySpec* spec = schema_->Find(key)) {
        ConfigValue converted;
        TRIB_RETURN_IF_ERROR(ConvertNode(*spec, value, Where(source, key_node), &converted));
        values_[key] = Entry{std::move(converted), Where(source, key_node)};
      } else if (schema_->IsSection(key)) {
        if (!value.IsMap())
          return Status::InvalidArgument(Where(source, key_node) + ": key '" + key +
                                         "' is a section and needs a mapping");
        stack.push_back({key, value});
      } else {
        return Status::InvalidArgument(Where(source, key_node) + ": unknown key '" + key + "'");
      }
    }
  }
  return Status::OK();
}

Status Config::Set(const std::string& assignment) {
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    return Status::InvalidArgument("--set '" + assignment + "': expected key=value");
  return SetValue(assignment.substr(0, eq), assignment.substr(eq + 1), "--set " + assignment);
}

Status Config::SetValue(const std::string& key, const std::string& value_text, const std::string& origin) {
  const ConfigKeySpec* spec = schema_->Find(key);
  if (!spec) return Status::InvalidArgument(origin + ": unknown key '" + key + "'");
  YAML::Node node;
  try {
    node = YAML::Load(value_text);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(origin + ": key '" + key + "': value is not valid YAML: " + e.what());
  }
  if (node.IsNull() && spec->type == ConfigType::kString) node = YAML::Node(value_text);
  ConfigValue converted;
  TRIB_RETURN_IF_ERROR(ConvertNode(*spec, node, origin, &converted));
  values_[key] = Entry{std::move(converted), origin};
  return Status::OK();
}

bool Config::Has(const std::string& key) const {
  return values_.count(key) != 0;
}

std::string Config::Origin(const std::string& key) const {
  auto it = values_.find(key);
  return it == values_.end() ? "unset" : it->second.origin;
}

const Config::Entry& Config::Get(const std::string& key, ConfigType type) const {
  const ConfigKeySpec* spec = schema_->Find(key);
  if (!spec || spec->type != type) {
    std::fprintf(stderr, "tributary: config key '%s' is not declared as %s\n", key.c_str(), ConfigTypeName(type));
    std::abort();
  }
  auto it = values_.find(key);
  if (it == values_.end()) {
    std::fprintf(stderr, "tributary: config key '%s' has no value and no default\n", key.c_str());
    std::abort();
  }
  return it->second;
}

const std::string& Config::GetString(const std::string& key) const {
  return std::get<std::string>(Get(key, ConfigType::kString).value);
}
int64_t Config::GetInt(const std::string& key) const {
  return std::get<int64_t>(Get(key, ConfigType::kInt).value);
}
double Config::GetFloat(const std::string& key) const {
  return std::get<double>(Get(key, ConfigType::kFloat).value);
}
bool Config::GetBool(const std::string& key) const {
  return std::get<bool>(Get(key, ConfigType::kBool).value);
}
const std::vector<std::string>& Config::GetStringList(const std::string& key) const {
  return std::get<std::vector<std::string>>(Get(key, ConfigType::kStringList).value);
}

std::string Config::Dump() const {
  std::ostringstream os;
  for (const auto& spec : schema_->keys()) {
    auto it = values_.find(spec.key);
    if (it == values_.end()) continue;
    std::string value = FormatValue(it->second.value);
    for (const auto& [word, number] : spec.words)
      if (std::holds_alternative<int64_t>(it->second.value) && std::get<int64_t>(it->second.value) == number)
        value = word;
    os << spec.key << ": " << value << "  # " << it->second.origin << "\n";
  }
  return os.str();
}

}  // namespace tributary
