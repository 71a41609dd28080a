#include "engine/io/model_dir.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "base/file_util.h"
#include "engine/text/tokenizer.h"

namespace tributary {

namespace {

using nlohmann::json;

// Typed access to optional config.json fields with errors naming the file and the field.
class ConfigReader {
 public:
  ConfigReader(const json& j, const std::string& source) : j_(j), source_(source) {}

  Status Error(const std::string& field, const std::string& what) const {
    return Status::InvalidArgument(source_ + ": field '" + field + "': " + what);
  }
  bool Has(const std::string& field) const { return j_.contains(field) && !j_[field].is_null(); }

  Status Int(const std::string& field, bool required, int64_t* out) const {
    if (!Has(field)) return required ? Error(field, "missing") : Status::OK();
    const json& v = j_[field];
    if (!v.is_number_integer()) return Error(field, "expected an integer, got " + v.dump());
    *out = v.get<int64_t>();
    return Status::OK();
  }
  Status Double(const std::string& field, double* out) const {
    if (!Has(field)) return Status::OK();
    const json& v = j_[field];
    if (!v.is_number()) return Error(field, "expected a number, got " + v.dump());
    *out = v.get<double>();
    return Status::OK();
  }
  Status Bool(const std::string& field, bool* out) const {
    if (!Has(field)) return Status::OK();
    const json& v = j_[field];
    if (!v.is_boolean()) return Error(field, "expected true or false, got " + v.dump());
    *out = v.get<bool>();
    return Status::OK();
  }
  Status String(const std::string& field, std::string* out) const {
    if (!Has(field)) return Status::OK();
    const json& v = j_[field];
    if (!v.is_string()) return Error(field, "expected a string, got " + v.dump());
    *out = v.get<std::string>();
    return Status::OK();
  }
  // bos/eos ids may be null (-1), an integer, or a list of integers (first one is used).
  Status TokenId(const std::string& field, int64_t* out) const {
    if (!j_.contains(field)) return Status::OK();
    const json& v = j_[field];
    if (v.is_null()) {
      *out = -1;
      return Status::OK();
    }
    if (v.is_number_integer()) {
      *out = v.get<int64_t>();
      return Status::OK();
    }
    if (v.is_array() && !v.empty() && v[0].is_number_integer()) {
      *out = v[0].get<int64_t>();
      return Status::OK();
    }
    return Error(field, "expected a token id or a list of token ids, got " + v.dump());
  }

 private:
  const json& j_;
  const std::string& source_;
};

struct ArchInfo {
  const char* architecture;
  const char* model_type;
};
constexpr ArchInfo kArchitectures[] = {
    {"LlamaForCausalLM", "llama"}, {"MistralForCausalLM", "mistral"}, {"Qwen2ForCausalLM", "qwen2"}};

bool IsIgnoredTensor(const std::string& name, const LlamaConfig& config) {
  const std::string suffix = ".rotary_emb.inv_freq";
  if (name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
    return true;
  return config.tie_word_embeddings && name == "lm_head.weight";
}

// The RoPE fields of one layout's object: rope_type default or llama3 and, for llama3, its four
// numbers. Any other key changes the positions in a way this code does not implement: an error.
Status ParseRopeObject(const json& o, const std::string& field, bool with_theta, const std::string& source,
                       LlamaConfig* c) {
  const ConfigReader rr(o, source);
  std::set<std::string> known = {
      "type", "rope_type", "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"};
  if (with_theta) known.insert("rope_theta");
  for (const auto& [key, value] : o.items())
    if (known.count(key) == 0 && !value.is_null())
      return rr.Error(field + "." + key, "not understood (it would change the rotary positions)");
  std::string type;
  TRIB_RETURN_IF_ERROR(rr.String("type", &type));
  TRIB_RETURN_IF_ERROR(rr.String("rope_type", &type));
  if (with_theta) {
    if (!rr.Has("rope_theta")) return rr.Error(field + ".rope_theta", "missing");
    TRIB_RETURN_IF_ERROR(rr.Double("rope_theta", &c->rope_theta));
  }
  if (type == "llama3") {
    c->rope_scaling.type = "llama3";
    TRIB_RETURN_IF_ERROR(rr.Double("factor", &c->rope_scaling.factor));
    TRIB_RETURN_IF_ERROR(rr.Double("low_freq_factor", &c->rope_scaling.low_freq_factor));
    TRIB_RETURN_IF_ERROR(rr.Double("high_freq_factor", &c->rope_scaling.high_freq_factor));
    TRIB_RETURN_IF_ERROR(
        rr.Int("original_max_position_embeddings", false, &c->rope_scaling.original_max_position_embeddings));
  } else if (type != "default" && !type.empty()) {
    return rr.Error(field, "unsupported rope_type '" + type + "' (supported: default, llama3)");
  } else {
    for (const char* key : {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"})
      if (rr.Has(key)) return rr.Error(field + "." + key, "set, but rope_type is default");
  }
  return Status::OK();
}

// RoPE in either layout: transformers 5's rope_parameters {rope_theta, rope_type, ...} or the older
// top-level rope_theta + rope_scaling. Both present must agree.
Status ParseRope(const json& j, const ConfigReader& r, const std::string& source, LlamaConfig* c) {
  if (!r.Has("rope_parameters")) {
    TRIB_RETURN_IF_ERROR(r.Double("rope_theta", &c->rope_theta));
    if (!r.Has("rope_scaling")) return Status::OK();
    if (!j["rope_scaling"].is_object())
      return r.Error("rope_scaling", "expected an object or null, got " + j["rope_scaling"].dump());
    return ParseRopeObject(j["rope_scaling"], "rope_scaling", false, source, c);
  }
  const json& p = j["rope_parameters"];
  if (!p.is_object()) return r.Error("rope_parameters", "expected an object, got " + p.dump());
  TRIB_RETURN_IF_ERROR(ParseRopeObject(p, "rope_parameters", true, source, c));
  c->rope_in_parameters = true;
  LlamaConfig legacy;  // what the older fields say, when a file carries both
  legacy.rope_theta = c->rope_theta;
  TRIB_RETURN_IF_ERROR(r.Double("rope_theta", &legacy.rope_theta));
  if (legacy.rope_theta != c->rope_theta)
    return r.Error("rope_theta", std::to_string(legacy.rope_theta) + " disagrees with rope_parameters.rope_theta " +
                                     std::to_string(c->rope_theta));
  if (r.Has("rope_scaling")) {
    if (!j["rope_scaling"].is_object())
      return r.Error("rope_scaling", "expected an object or null, got " + j["rope_scaling"].dump());
    TRIB_RETURN_IF_ERROR(ParseRopeObject(j["rope_scaling"], "rope_scaling", false, source, &legacy));
    const RopeScaling &a = legacy.rope_scaling, &b = c->rope_scaling;
    if (a.type != b.type || a.factor != b.factor || a.low_freq_factor != b.low_freq_factor ||
        a.high_freq_factor != b.high_freq_factor ||
        a.original_max_position_embeddings != b.original_max_position_embeddings)
      return r.Error("rope_scaling", "disagrees with rope_parameters");
  }
  return Status::OK();
}

}  // namespace

Result<LlamaConfig> ParseLlamaConfigJson(const std::string& text, const std::string& source) {
  TRIB_ASSIGN_OR_RETURN(json j, ParseJsonObject(text, source));
  ConfigReader r(j, source);
  LlamaConfig c;
  std::string architecture, model_type;
  if (r.Has("architectures")) {
    const json& a = j["architectures"];
    if (!a.is_array() || a.empty() || !a[0].is_string())
      return r.Error("architectures", "expected a non-empty list of strings, got " + a.dump());
    architecture = a[0].get<std::string>();
  }
  TRIB_RETURN_IF_ERROR(r.String("model_type", &model_type));
  const ArchInfo* arch = nullptr;
  for (const auto& info : kArchitectures) {
    if ((!architecture.empty() && architecture == info.architecture) ||
        (architecture.empty() && model_type == info.model_type))
      arch = &info;
  }
  if (arch == nullptr) {
    if (!architecture.empty())
      return r.Error("architectures", "unsupported architecture '" + architecture +
                                          "' (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)");
    return r.Error("model_type", "unsupported model_type '" + model_type + "' (supported: llama, mistral, qwen2)");
  }
  if (!model_type.empty() && model_type != arch->model_type)
    return r.Error("model_type", "'" + model_type + "' does not match architecture '" + arch->architecture + "'");
  c.architecture = arch->architecture;
  c.model_type = arch->model_type;

  TRIB_RETURN_IF_ERROR(r.Int("vocab_size", true, &c.vocab_size));
  TRIB_RETURN_IF_ERROR(r.Int("hidden_size", true, &c.hidden_size));
  TRIB_RETURN_IF_ERROR(r.Int("intermediate_size", true, &c.intermediate_size));
  TRIB_RETURN_IF_ERROR(r.Int("num_hidden_layers", true, &c.num_hidden_layers));
  TRIB_RETURN_IF_ERROR(r.Int("num_attention_heads", true, &c.num_attention_heads));
  c.num_key_value_heads = c.num_attention_heads;  // HF default when absent
  TRIB_RETURN_IF_ERROR(r.Int("num_key_value_heads", false, &c.num_key_value_heads));
  c.head_dim = 0;
  TRIB_RETURN_IF_ERROR(r.Int("head_dim", false, &c.head_dim));
  TRIB_RETURN_IF_ERROR(r.Int("max_position_embeddings", false, &c.max_position_embeddings));
  c.rms_norm_eps = 1e-6;  // HF LlamaConfig default
  TRIB_RETURN_IF_ERROR(r.Double("rms_norm_eps", &c.rms_norm_eps));
  TRIB_RETURN_IF_ERROR(r.Bool("tie_word_embeddings", &c.tie_word_embeddings));
  TRIB_RETURN_IF_ERROR(r.Bool("attention_bias", &c.attention_bias));
  if (c.model_type == "qwen2") c.attention_bias = true;  // Qwen2 always has q/k/v biases
  TRIB_RETURN_IF_ERROR(r.TokenId("bos_token_id", &c.bos_token_id));
  TRIB_RETURN_IF_ERROR(r.TokenId("eos_token_id", &c.eos_token_id));

  bool mlp_bias = false;
  TRIB_RETURN_IF_ERROR(r.Bool("mlp_bias", &mlp_bias));
  if (mlp_bias) return r.Error("mlp_bias", "MLP biases are not supported");
  std::string hidden_act = "silu";
  TRIB_RETURN_IF_ERROR(r.String("hidden_act", &hidden_act));
  if (hidden_act != "silu") return r.Error("hidden_act", "unsupported activation '" + hidden_act + "' (only silu)");
  bool use_sliding_window = false;
  TRIB_RETURN_IF_ERROR(r.Bool("use_sliding_window", &use_sliding_window));
  if (use_sliding_window) return r.Error("use_sliding_window", "sliding-window attention is not supported");

  TRIB_RETURN_IF_ERROR(ParseRope(j, r, source, &c));
  Status valid = c.Validate();
  if (!valid.ok()) return Status::InvalidArgument(source + ": " + valid.message());
  return c;
}

Result<LlamaConfig> ReadLlamaConfig(const std::string& config_json_path) {
  TRIB_ASSIGN_OR_RETURN(std::string text, ReadFileToString(config_json_path));
  return ParseLlamaConfigJson(text, config_json_path);
}

std::string LlamaConfigToJson(const LlamaConfig& c, const std::string& torch_dtype) {
  nlohmann::ordered_json j;
  j["architectures"] = {c.architecture};
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.HeadDim();
  j["hidden_act"] = "silu";
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["initializer_range"] = 0.02;
  j["rms_norm_eps"] = c.rms_norm_eps;
  nlohmann::ordered_json rope = nlohmann::ordered_json::object();
  if (c.rope_in_parameters) rope["rope_theta"] = c.rope_theta;
  rope["rope_type"] = c.rope_scaling.type.empty() ? "default" : c.rope_scaling.type;
  if (!c.rope_scaling.type.empty()) {
    rope["factor"] = c.rope_scaling.factor;
    rope["low_freq_factor"] = c.rope_scaling.low_freq_factor;
    rope["high_freq_factor"] = c.rope_scaling.high_freq_factor;
    rope["original_max_position_embeddings"] = c.rope_scaling.original_max_position_embeddings;
  }
  if (c.rope_in_parameters) {
    j["rope_parameters"] = rope;
  } else {
    j["rope_theta"] = c.rope_theta;
    if (c.rope_scaling.type.empty()) {
      j["rope_scaling"] = nullptr;
    } else {
      j["rope_scaling"] = rope;
    }
  }
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.model_type == "qwen2") {
    j["use_sliding_window"] = false;
    j["sliding_window"] = nullptr;
    j["max_window_layers"] = c.num_hidden_layers;
  } else {
    j["attention_bias"] = c.attention_bias;
    j["mlp_bias"] = false;
  }
  if (c.model_type == "mistral") j["sliding_window"] = nullptr;
  j["attention_dropout"] = 0.0;
  if (c.model_type == "llama") j["pretraining_tp"] = 1;
  if (c.bos_token_id >= 0) {
    j["bos_token_id"] = c.bos_token_id;
  } else {
    j["bos_token_id"] = nullptr;
  }
  if (c.eos_token_id >= 0) {
    j["eos_token_id"] = c.eos_token_id;
  } else {
    j["eos_token_id"] = nullptr;
  }
  j["use_cache"] = true;
  j["torch_dtype"] = torch_dtype;
  return j.dump(2) + "\n";
}

Status LoadModelWeights(const std::string& dir, const LlamaConfig& config, Arena* params,
                        std::vector<std::string>* skipped, SafetensorsDType* stored_dtype) {
  std::set<SafetensorsDType> dtypes;
  TRIB_CHECK(params->is_host());  // safetensors reads land in host memory
  const TensorTable& table = params->table();
  // Shard files (in a stable order) and, for sharded checkpoints, the names the index promises each holds.
  std::map<std::string, std::vector<std::string>> files;
  const std::string single = JoinPath(dir, "model.safetensors");
  const std::string index_path = JoinPath(dir, "model.safetensors.index.json");
  std::error_code ec;
  if (std::filesystem::exists(single, ec)) {
    files[single] = {};
  } else if (std::filesystem::exists(index_path, ec)) {
    TRIB_ASSIGN_OR_RETURN(std::string text, ReadFileToString(index_path));
    json index;
    try {
      index = json::parse(text);
    } catch (const json::exception& e) {
      std::string what = e.what();
      std::replace(what.begin(), what.end(), '\n', ' ');
      return Status::InvalidArgument(index_path + ": invalid JSON: " + what);
    }
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      return Status::InvalidArgument(index_path + ": missing object 'weight_map'");
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        return Status::InvalidArgument(index_path + ": weight_map entry '" + it.key() + "' is not a file name");
      const std::string shard = it.value().get<std::string>();
      if (shard.empty() || shard.find('/') != std::string::npos || shard == "..")
        return Status::InvalidArgument(index_path + ": weight_map entry '" + it.key() + "': bad file name '" + shard +
                                       "'");
      files[JoinPath(dir, shard)].push_back(it.key());
    }
  } else {
    std::string hint;
    if (std::filesystem::exists(JoinPath(dir, "pytorch_model.bin"), ec))
      hint = " (pytorch_model.bin is not supported; convert it to safetensors)";
    return Status::NotFound(dir + ": no model.safetensors or model.safetensors.index.json" + hint);
  }

  std::vector<std::string> loaded_from(table.size());
  for (const auto& [path, promised] : files) {
    TRIB_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(path));
    for (const std::string& name : promised) {
      if (file.Find(name) == nullptr)
        return Status::InvalidArgument(index_path + ": tensor '" + name + "' is mapped to " + BaseName(path) +
                                       " but that file does not contain it");
    }
    for (const SafetensorsTensorInfo& info : file.tensors()) {
      const TensorEntry* entry = table.Find(info.name);
      if (entry == nullptr) {
        if (IsIgnoredTensor(info.name, config)) {
          if (skipped) skipped->push_back(info.name);
          continue;
        }
        return Status::InvalidArgument(path + ": unexpected tensor '" + info.name + "' (not part of a " +
                                       config.architecture + " with this config)");
      }
      const size_t idx = static_cast<size_t>(entry - table.entries().data());
      if (!loaded_from[idx].empty())
        return Status::InvalidArgument(path + ": tensor '" + info.name + "' is also stored in " + loaded_from[idx]);
      if (info.shape != entry->shape)
        return Status::InvalidArgument(path + ": tensor '" + info.name + "': shape " + ShapeToString(info.shape) +
                                       " does not match config " + ShapeToString(entry->shape));
      if (info.dtype != SafetensorsDType::kF32 && info.dtype != SafetensorsDType::kF16 &&
          info.dtype != SafetensorsDType::kBF16 && info.dtype != SafetensorsDType::kF64)
        return Status::InvalidArgument(path + ": tensor '" + info.name + "': dtype " +
                                       SafetensorsDTypeName(info.dtype) + " is not a floating-point type");
      TRIB_RETURN_IF_ERROR(file.ReadAsFloat(info.name, params->tensor(idx), entry->numel));
      // A NaN or infinite weight would only show up later as a diverged loss on every worker.
      const float* values = params->tensor(idx);
      for (int64_t i = 0; i < entry->numel; ++i)
        if (!std::isfinite(values[i]))
          return Status::InvalidArgument(path + ": tensor '" + info.name + "': element " + std::to_string(i) + " is " +
                                         std::to_string(values[i]) + ", not a finite number");
      dtypes.insert(info.dtype);
      loaded_from[idx] = path;
    }
  }
  std::vector<std::string> missing;
  for (size_t i = 0; i < table.size(); ++i) {
    if (loaded_from[i].empty()) missing.push_back(table[i].name);
  }
  if (!missing.empty()) {
    std::string msg = dir + ": missing tensor '" + missing[0] + "'";
    if (missing.size() > 1) msg += " and " + std::to_string(missing.size() - 1) + " more";
    return Status::InvalidArgument(msg);
  }
  if (stored_dtype != nullptr)
    *stored_dtype =
        dtypes.size() == 1 && *dtypes.begin() != SafetensorsDType::kF64 ? *dtypes.begin() : SafetensorsDType::kF32;
  return Status::OK();
}

Result<LoadedModel> LoadModelDir(const std::string& dir) {
  TRIB_ASSIGN_OR_RETURN(LlamaConfig config, ReadLlamaConfig(JoinPath(dir, "config.json")));
  LoadedModel model;
  model.config = config;
  model.params = Arena(BuildLlamaTensorTable(config));
  TRIB_RETURN_IF_ERROR(LoadModelWeights(dir, config, &model.params, &model.skipped_tensors, &model.stored_dtype));
  return model;
}

namespace {

Status CopyTokenizerFiles(const std::string& from, const std::string& to) {
  static const char* kFiles[] = {
      "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "vocab.json",
      "merges.txt",     "generation_config.json"};
  bool any = false;
  for (const char* name : kFiles) {
    const std::string src = JoinPath(from, name);
    std::error_code ec;
    if (!std::filesystem::exists(src, ec)) continue;
    TRIB_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(src));
    TRIB_RETURN_IF_ERROR(WriteFileAtomic(JoinPath(to, name), bytes));
    any = true;
  }
  if (!any) return Status::NotFound(from + ": no tokenizer files to copy");
  return Status::OK();
}

}  // namespace

Status SaveModelDir(const std::string& dir, const LlamaConfig& config, const Arena& params,
                    const SaveModelOptions& options) {
  TRIB_RETURN_IF_ERROR(config.Validate());
  if (config.model_type == "qwen2" && !config.attention_bias)
    return Status::InvalidArgument("model config: qwen2 models always have attention_bias=true");
  TRIB_CHECK(params.is_host());  // safetensors writes read host memory
  const auto expected = BuildLlamaTensorTable(config);
  const TensorTable& table = params.table();
  if (table.size() != expected->size())
    return Status::InvalidArgument("SaveModelDir: parameter arena does not match the config's tensor table");
  for (size_t i = 0; i < table.size(); ++i) {
    if (table[i].name != (*expected)[i].name || table[i].shape != (*expected)[i].shape)
      return Status::InvalidArgument("SaveModelDir: tensor '" + table[i].name + "' " + ShapeToString(table[i].shape) +
                                     " does not match the config's table");
  }
  if (options.dtype != SafetensorsDType::kF32 && options.dtype != SafetensorsDType::kBF16 &&
      options.dtype != SafetensorsDType::kF16)
    return Status::InvalidArgument("SaveModelDir: dtype must be F32, BF16 or F16");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IOError(dir + ": cannot create directory: " + ec.message());

  const char* torch_dtype = options.dtype == SafetensorsDType::kBF16  ? "bfloat16"
                            : options.dtype == SafetensorsDType::kF16 ? "float16"
                                                                      : "float32";
  TRIB_RETURN_IF_ERROR(WriteFileAtomic(JoinPath(dir, "config.json"), LlamaConfigToJson(config, torch_dtype)));

  // Greedy sharding in table order: a new shard starts when the next tensor would overflow the limit.
  const int64_t elem = SafetensorsDTypeSize(options.dtype);
  std::vector<std::vector<SafetensorsWriteTensor>> shards(1);
  int64_t shard_bytes = 0, total_bytes = 0;
  for (size_t i = 0; i < table.size(); ++i) {
    const int64_t bytes = table[i].numel * elem;
    if (shard_bytes > 0 && shard_bytes + bytes > options.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    SafetensorsWriteTensor t;
    t.name = table[i].name;
    t.dtype = options.dtype;
    t.shape = table[i].shape;
    t.f32 = params.tensor(i);
    shards.back().push_back(std::move(t));
    shard_bytes += bytes;
    total_bytes += bytes;
  }
  const std::map<std::string, std::string> metadata = {{"format", "pt"}};
  const std::string single = JoinPath(dir, "model.safetensors");
  const std::string index_path = JoinPath(dir, "model.safetensors.index.json");
  if (shards.size() == 1) {
    TRIB_RETURN_IF_ERROR(WriteSafetensors(single, shards[0], metadata));
    std::filesystem::remove(index_path, ec);  // a stale index would describe other weights
  } else {
    nlohmann::ordered_json index;
    index["metadata"] = {{"total_size", total_bytes}};
    nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
    char name[64];
    for (size_t s = 0; s < shards.size(); ++s) {
      std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
      TRIB_RETURN_IF_ERROR(WriteSafetensors(JoinPath(dir, name), shards[s], metadata));
      for (const auto& t : shards[s]) weight_map[t.name] = name;
    }
    index["weight_map"] = weight_map;
    TRIB_RETURN_IF_ERROR(WriteFileAtomic(index_path, index.dump(2) + "\n"));
    std::filesystem::remove(single, ec);  // loaders prefer model.safetensors: remove a stale one
  }

  if (options.tokenizer != nullptr) {
    TRIB_RETURN_IF_ERROR(options.tokenizer->SaveToDir(dir));
  } else if (!options.copy_tokenizer_from.empty()) {
    TRIB_RETURN_IF_ERROR(CopyTokenizerFiles(options.copy_tokenizer_from, dir));
  }
  if (!options.copy_generation_config_from.empty()) {
    const std::string src = JoinPath(options.copy_generation_config_from, "generation_config.json");
    std::error_code exists_ec;
    if (std::filesystem::exists(src, exists_ec)) {
      TRIB_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(src));
      TRIB_RETURN_IF_ERROR(WriteFileAtomic(JoinPath(dir, "generation_config.json"), bytes));
    }
  }
  return Status::OK();
}

}  // namespace tributary
