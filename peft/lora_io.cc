// LoRA adapters in the HF PEFT directory layout: adapter_config.json + adapter_model.safetensors.
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/file_util.h"
#include "engine/io/safetensors.h"
#include "peft/lora.h"

namespace tributary {
namespace {

constexpr char kConfigFile[] = "adapter_config.json";
constexpr char kWeightsFile[] = "adapter_model.safetensors";

// A JSON value that is absent, null, false, empty or zero: a PEFT feature left at its default.
bool IsUnset(const nlohmann::json& j, const char* key) {
  if (!j.contains(key)) return true;
  const nlohmann::json& v = j.at(key);
  if (v.is_null()) return true;
  if (v.is_boolean()) return !v.get<bool>();
  if (v.is_object() || v.is_array() || v.is_string()) return v.empty();
  return false;
}

}  // namespace

std::string LoraAdapters::AdapterConfigJson(const std::string& base_model_name_or_path) const {
  nlohmann::ordered_json j;
  j["peft_type"] = "LORA";
  j["task_type"] = "CAUSAL_LM";
  j["base_model_name_or_path"] = base_model_name_or_path;
  j["r"] = options_.rank;
  j["lora_alpha"] = options_.alpha;
  j["lora_dropout"] = options_.dropout;
  // Canonical (model) order, whatever order the options listed them in.
  std::vector<std::string> targets;
  for (const char* name : {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})
    for (const std::string& t : options_.target_modules)
      if (t == name) targets.push_back(t);
  j["target_modules"] = targets;
  j["bias"] = "none";
  j["fan_in_fan_out"] = false;
  j["inference_mode"] = true;
  j["init_lora_weights"] =
      options_.init == "gaussian" ? nlohmann::ordered_json("gaussian") : nlohmann::ordered_json(true);
  j["use_rslora"] = false;
  j["use_dora"] = false;
  j["modules_to_save"] = nullptr;
  j["layers_to_transform"] = nullptr;
  j["rank_pattern"] = nlohmann::ordered_json::object();
  j["alpha_pattern"] = nlohmann::ordered_json::object();
  return j.dump(2) + "\n";
}

Status LoraAdapters::Save(const std::string& dir, const std::string& base_model_name_or_path) const {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IOError(dir + ": cannot create directory: " + ec.message());
  // Safetensors I/O reads host memory: stage backend memory through a host arena.
  Arena staging;
  if (!params_.is_host()) {
    staging = Arena(table_);
    staging.CopyFrom(params_);
  }
  const Arena& host = params_.is_host() ? params_ : staging;
  std::vector<SafetensorsWriteTensor> tensors;
  for (size_t i = 0; i < table_->size(); ++i) {
    SafetensorsWriteTensor t;
    t.name = (*table_)[i].name;
    t.dtype = SafetensorsDType::kF32;
    t.shape = (*table_)[i].shape;
    t.f32 = host.tensor(i);
    tensors.push_back(std::move(t));
  }
  TRIB_RETURN_IF_ERROR(WriteSafetensors(JoinPath(dir, kWeightsFile), tensors, {{"format", "pt"}}));
  return WriteFileAtomic(JoinPath(dir, kConfigFile), AdapterConfigJson(base_model_name_or_path));
}

Result<LoraOptions> LoraAdapters::ParseAdapterConfig(const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return Status::InvalidArgument(source + ": invalid JSON: " + e.what());
  }
  if (!j.is_object()) return Status::InvalidArgument(source + ": expected a JSON object");
  auto field_error = [&](const std::string& key, const std::string& what) {
    return Status::InvalidArgument(source + ": field '" + key + "': " + what);
  };
  if (!j.contains("peft_type") || !j["peft_type"].is_string())
    return field_error("peft_type", "missing (expected \"LORA\")");
  if (j["peft_type"].get<std::string>() != "LORA")
    return field_error("peft_type", "expected \"LORA\", got \"" + j["peft_type"].get<std::string>() + "\"");

  LoraOptions o;
  if (!j.contains("r") || !j["r"].is_number_integer()) return field_error("r", "missing or not an integer");
  o.rank = j["r"].get<int64_t>();
  if (!j.contains("lora_alpha") || !j["lora_alpha"].is_number())
    return field_error("lora_alpha", "missing or not a number");
  o.alpha = j["lora_alpha"].get<double>();
  o.dropout = 0.0;
  if (j.contains("lora_dropout") && !j["lora_dropout"].is_null()) {
    if (!j["lora_dropout"].is_number()) return field_error("lora_dropout", "not a number");
    o.dropout = j["lora_dropout"].get<double>();
  }
  if (!j.contains("target_modules")) return field_error("target_modules", "missing");
  if (!j["target_modules"].is_array())
    return field_error("target_modules", "expected a list of module names (regex strings are not supported)");
  o.target_modules.clear();
  for (const auto& t : j["target_modules"]) {
    if (!t.is_string()) return field_error("target_modules", "expected strings");
    o.target_modules.push_back(t.get<std::string>());
  }
  if (j.contains("bias") && !(j["bias"].is_string() && j["bias"].get<std::string>() == "none"))
    return field_error("bias", "only \"none\" is supported");
  if (!IsUnset(j, "fan_in_fan_out")) return field_error("fan_in_fan_out", "must be false for LLaMA linears");
  // PEFT features tributary does not implement: refuse rather than load a different model.
  for (const char* key : {"use_rslora", "use_dora", "modules_to_save", "layers_to_transform", "layers_pattern",
                          "rank_pattern", "alpha_pattern"})
    if (!IsUnset(j, key)) return field_error(key, "is set, which tributary's LoRA does not support");
  if (j.contains("init_lora_weights") && j["init_lora_weights"].is_string() &&
      j["init_lora_weights"].get<std::string>() == "gaussian")
    o.init = "gaussian";
  Status valid = o.Validate();
  if (!valid.ok()) return Status::InvalidArgument(source + ": " + valid.message());
  return o;
}

Result<std::unique_ptr<LoraAdapters>> LoraAdapters::Load(const std::string& dir, const LlamaConfig& config,
                                                         std::shared_ptr<Backend> backend) {
  const std::string config_path = JoinPath(dir, kConfigFile);
  TRIB_ASSIGN_OR_RETURN(std::string text, ReadFileToString(config_path));
  TRIB_ASSIGN_OR_RETURN(LoraOptions options, ParseAdapterConfig(text, kConfigFile));
  TRIB_ASSIGN_OR_RETURN(std::unique_ptr<LoraAdapters> adapters, Create(config, options, std::move(backend)));

  const std::string weights_path = JoinPath(dir, kWeightsFile);
  TRIB_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(weights_path));
  const TensorTable& table = *adapters->table_;
  for (const SafetensorsTensorInfo& info : file.tensors()) {
    const TensorEntry* entry = table.Find(info.name);
    if (entry == nullptr)
      return Status::InvalidArgument(std::string(kWeightsFile) + ": tensor '" + info.name +
                                     "' is not a LoRA weight of this model with target_modules from " + kConfigFile);
    if (info.shape != entry->shape)
      return Status::InvalidArgument(std::string(kWeightsFile) + ": tensor '" + info.name + "': shape " +
                                     ShapeToString(info.shape) + " does not match config " +
                                     ShapeToString(entry->shape));
    if (info.dtype != SafetensorsDType::kF32 && info.dtype != SafetensorsDType::kF16 &&
        info.dtype != SafetensorsDType::kBF16 && info.dtype != SafetensorsDType::kF64)
      return Status::InvalidArgument(std::string(kWeightsFile) + ": tensor '" + info.name + "': dtype " +
                                     SafetensorsDTypeName(info.dtype) + " is not a float type");
  }
  // Reads land in host memory: straight into host params, else into a staging arena copied in after.
  Arena staging;
  Arena& host = adapters->params_.is_host() ? adapters->params_ : (staging = Arena(adapters->table_));
  for (size_t i = 0; i < table.size(); ++i) {
    if (file.Find(table[i].name) == nullptr)
      return Status::InvalidArgument(std::string(kWeightsFile) + ": tensor '" + table[i].name + "' is missing");
    Status read = file.ReadAsFloat(table[i].name, host.tensor(i), table[i].numel);
    if (!read.ok()) return read;
  }
  if (&host != &adapters->params_) adapters->params_.CopyFrom(host);
  return adapters;
}

}  // namespace tributary
