#include "peft/merge.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <random>
#include <set>

#include "base/hash.h"
#include "engine/io/model_dir.h"
#include "peft/lora.h"

namespace tributary {
namespace {

Status KeyError(const std::string& source, const std::string& key, const std::string& what) {
  return Status::InvalidArgument(source + ": key '" + key + "': " + what);
}

Status CheckKeys(const YAML::Node& map, const std::set<std::string>& known, const std::string& source,
                 const std::string& prefix) {
  for (const auto& kv : map) {
    const std::string key = kv.first.as<std::string>();
    if (known.count(key) == 0) return KeyError(source, prefix + key, "unknown key");
  }
  return Status::OK();
}

Result<double> Number(const YAML::Node& node, const std::string& source, const std::string& key) {
  try {
    const double v = node.as<double>();
    if (!std::isfinite(v)) return KeyError(source, key, "must be a finite number");
    return v;
  } catch (const YAML::Exception&) {
    return KeyError(source, key, "expected a number");
  }
}

// "BASE+ADAPTER" (mergekit's LoRA syntax) when ADAPTER is a PEFT directory, else a plain model path.
MergeInput SplitModelSpec(const std::string& spec) {
  MergeInput in;
  in.model = spec;
  const size_t plus = spec.rfind('+');
  if (plus != std::string::npos && plus > 0) {
    const std::string adapter = spec.substr(plus + 1);
    std::error_code ec;
    if (std::filesystem::exists(adapter + "/adapter_config.json", ec)) {
      in.model = spec.substr(0, plus);
      in.adapter = adapter;
    }
  }
  return in;
}

Result<MergeMethod> ParseMethod(const std::string& name, const std::string& source) {
  if (name == "linear") return MergeMethod::kLinear;
  if (name == "task_arithmetic") return MergeMethod::kTaskArithmetic;
  if (name == "ties") return MergeMethod::kTies;
  if (name == "slerp") return MergeMethod::kSlerp;
  if (name == "dare_linear") return MergeMethod::kDareLinear;
  if (name == "dare_ties") return MergeMethod::kDareTies;
  return KeyError(source, "merge_method",
                  "'" + name + "' is not one of linear|task_arithmetic|ties|dare_linear|dare_ties|slerp");
}

Status ParseModels(const YAML::Node& list, const std::string& source, MergeConfig* config) {
  if (!list.IsSequence() || list.size() == 0) return KeyError(source, "models", "expected a non-empty list");
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string item = "models[" + std::to_string(i) + "]";
    const YAML::Node& m = list[i];
    if (!m.IsMap() || !m["model"]) return KeyError(source, item, "expected a mapping with 'model'");
    TRIB_RETURN_IF_ERROR(CheckKeys(m, {"model", "parameters"}, source, item + "."));
    MergeInput in = SplitModelSpec(m["model"].as<std::string>());
    if (const YAML::Node p = m["parameters"]) {
      if (!p.IsMap()) return KeyError(source, item + ".parameters", "expected a mapping");
      TRIB_RETURN_IF_ERROR(CheckKeys(p, {"weight", "density"}, source, item + ".parameters."));
      if (p["weight"]) {
        TRIB_ASSIGN_OR_RETURN(in.weight, Number(p["weight"], source, item + ".parameters.weight"));
      }
      if (p["density"]) {
        TRIB_ASSIGN_OR_RETURN(in.density, Number(p["density"], source, item + ".parameters.density"));
      }
      if (!(in.density > 0 && in.density <= 1))
        return KeyError(source, item + ".parameters.density", "must be in (0, 1]");
    }
    config->models.push_back(std::move(in));
  }
  return Status::OK();
}

Status ParseTopLevel(const YAML::Node& root, const std::string& source, MergeConfig* c) {
  TRIB_RETURN_IF_ERROR(
      CheckKeys(root, {"merge_method", "base_model", "models", "parameters", "dtype", "seed"}, source, ""));
  if (root["seed"]) c->seed = root["seed"].as<uint64_t>();
  if (!root["merge_method"]) return KeyError(source, "merge_method", "missing");
  TRIB_ASSIGN_OR_RETURN(c->method, ParseMethod(root["merge_method"].as<std::string>(), source));
  if (root["base_model"]) c->base_model = root["base_model"].as<std::string>();
  if (!root["models"]) return KeyError(source, "models", "missing");
  TRIB_RETURN_IF_ERROR(ParseModels(root["models"], source, c));
  if (const YAML::Node p = root["parameters"]) {
    if (!p.IsMap()) return KeyError(source, "parameters", "expected a mapping");
    TRIB_RETURN_IF_ERROR(CheckKeys(p, {"t", "normalize"}, source, "parameters."));
    if (p["t"]) {
      TRIB_ASSIGN_OR_RETURN(c->t, Number(p["t"], source, "parameters.t"));
    }
    if (p["normalize"]) c->normalize = p["normalize"].as<bool>();
  }
  if (const YAML::Node d = root["dtype"]) {
    const std::string name = d.as<std::string>();
    c->dtype_set = true;
    if (name == "float32") {
      c->dtype = SafetensorsDType::kF32;
    } else if (name == "bfloat16") {
      c->dtype = SafetensorsDType::kBF16;
    } else if (name == "float16") {
      c->dtype = SafetensorsDType::kF16;
    } else {
      return KeyError(source, "dtype", "'" + name + "' is not one of float32|bfloat16|float16");
    }
  }
  return Status::OK();
}

Status ValidateForMethod(const MergeConfig& c, const std::string& source) {
  const bool needs_base = c.method != MergeMethod::kLinear;
  if (needs_base && c.base_model.empty()) return KeyError(source, "base_model", "this merge_method needs one");
  if (c.method == MergeMethod::kSlerp) {
    if (c.models.size() != 1)
      return KeyError(source, "models",
                      "slerp interpolates base_model and exactly one model, got " + std::to_string(c.models.size()));
    if (!(c.t >= 0 && c.t <= 1)) return KeyError(source, "parameters.t", "must be in [0, 1]");
  }
  double total = 0;
  for (const MergeInput& in : c.models) total += in.weight;
  if (c.method == MergeMethod::kLinear && c.normalize && total == 0)
    return KeyError(source, "models", "the weights add up to 0: nothing to normalize by");
  return Status::OK();
}

// A model directory (with its adapter merged in) in fp32.
Result<LoadedModel> LoadInput(const std::string& model, const std::string& adapter) {
  TRIB_ASSIGN_OR_RETURN(LoadedModel loaded, LoadModelDir(model));
  if (!adapter.empty()) {
    TRIB_ASSIGN_OR_RETURN(std::unique_ptr<LoraAdapters> lora, LoraAdapters::Load(adapter, loaded.config));
    lora->MergeInto(loaded.params);
  }
  return loaded;
}

Status CheckSameLayout(const LoadedModel& a, const std::string& a_name, const LoadedModel& b,
                       const std::string& b_name) {
  const TensorTable& ta = a.params.table();
  const TensorTable& tb = b.params.table();
  if (a.config.architecture != b.config.architecture || a.config.vocab_size != b.config.vocab_size)
    return Status::InvalidArgument("merge: " + a_name + " (" + a.config.architecture + ", vocab " +
                                   std::to_string(a.config.vocab_size) + ") and " + b_name + " (" +
                                   b.config.architecture + ", vocab " + std::to_string(b.config.vocab_size) +
                                   ") are not the same kind of model");
  if (ta.size() != tb.size())
    return Status::InvalidArgument("merge: " + a_name + " has " + std::to_string(ta.size()) + " tensors, " + b_name +
                                   " " + std::to_string(tb.size()));
  for (size_t i = 0; i < ta.size(); ++i)
    if (ta[i].name != tb[i].name || ta[i].shape != tb[i].shape)
      return Status::InvalidArgument("merge: tensor '" + ta[i].name + "' " + ShapeToString(ta[i].shape) + " of " +
                                     a_name + " does not match '" + tb[i].name + "' " + ShapeToString(tb[i].shape) +
                                     " of " + b_name);
  return Status::OK();
}

// DARE: every element kept with probability `density` and rescaled by 1 / density, else dropped.
void DareDrop(std::vector<double>& delta, double density, uint64_t seed) {
  if (density >= 1.0) return;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  for (double& x : delta) x = uniform(rng) < density ? x / density : 0.0;
}

// TIES on one tensor: deltas[i] are θ_i - θ_base (modified in place).
void TiesTensor(std::vector<std::vector<double>>& deltas, const std::vector<MergeInput>& in, bool normalize, bool trim,
                double* out, int64_t n) {
  for (size_t m = 0; m < deltas.size(); ++m) {
    std::vector<double>& d = deltas[m];
    const int64_t keep = static_cast<int64_t>(in[m].density * static_cast<double>(n));
    if (trim && keep < n) {
      std::vector<double> mags(d.size());
      for (int64_t j = 0; j < n; ++j) mags[j] = std::fabs(d[j]);
      std::nth_element(mags.begin(), mags.begin() + (n - keep), mags.end());
      const double threshold = keep > 0 ? mags[n - keep] : INFINITY;
      int64_t kept = 0;  // ties at the threshold: keep the first ones, exactly `keep` in all
      for (int64_t j = 0; j < n; ++j) {
        if (std::fabs(d[j]) > threshold) ++kept;
      }
      int64_t at_threshold_left = keep - kept;
      for (int64_t j = 0; j < n; ++j) {
        const double a = std::fabs(d[j]);
        if (a > threshold) continue;
        if (a == threshold && at_threshold_left > 0) {
          --at_threshold_left;
          continue;
        }
        d[j] = 0;
      }
    }
    for (double& x : d) x *= in[m].weight;
  }
  for (int64_t j = 0; j < n; ++j) {
    double sum = 0;
    for (const auto& d : deltas) sum += d[j];
    const double elected = sum >= 0 ? 1.0 : -1.0;
    double mixed = 0, divisor = 0;
    for (size_t m = 0; m < deltas.size(); ++m) {
      const double x = deltas[m][j];
      if (x != 0 && (x > 0) == (elected > 0)) mixed += x, divisor += in[m].weight;
    }
    out[j] += normalize && divisor != 0 ? mixed / divisor : mixed;
  }
}

void SlerpTensor(const float* v0, const float* v1, double t, int64_t n, float* out) {
  double n0 = 0, n1 = 0, dot = 0;
  for (int64_t j = 0; j < n; ++j) n0 += double{v0[j]} * v0[j], n1 += double{v1[j]} * v1[j];
  n0 = std::sqrt(n0), n1 = std::sqrt(n1);
  const double s0n = n0 > 1e-8 ? n0 : 1.0, s1n = n1 > 1e-8 ? n1 : 1.0;
  for (int64_t j = 0; j < n; ++j) dot += (v0[j] / s0n) * (v1[j] / s1n);
  double s0 = 1 - t, s1 = t;
  if (std::fabs(dot) <= 0.9995) {  // mergekit's DOT_THRESHOLD: below it, spherical
    const double theta0 = std::acos(dot), sin0 = std::sin(theta0);
    s0 = std::sin(theta0 - theta0 * t) / sin0;
    s1 = std::sin(theta0 * t) / sin0;
  }
  for (int64_t j = 0; j < n; ++j) out[j] = static_cast<float>(s0 * v0[j] + s1 * v1[j]);
}

}  // namespace

Result<MergeConfig> ParseMergeConfig(const std::string& yaml, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(source + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + e.msg);
  }
  if (!root.IsMap()) return Status::InvalidArgument(source + ": expected a mapping with merge_method and models");
  MergeConfig config;
  try {
    TRIB_RETURN_IF_ERROR(ParseTopLevel(root, source, &config));
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(source + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  TRIB_RETURN_IF_ERROR(ValidateForMethod(config, source));
  return config;
}

Status MergeModels(const MergeConfig& config, const std::string& out_dir) {
  std::vector<LoadedModel> inputs;
  std::vector<std::string> names;
  for (const MergeInput& in : config.models) {
    TRIB_ASSIGN_OR_RETURN(LoadedModel m, LoadInput(in.model, in.adapter));
    names.push_back(in.adapter.empty() ? in.model : in.model + "+" + in.adapter);
    if (!inputs.empty()) TRIB_RETURN_IF_ERROR(CheckSameLayout(inputs[0], names[0], m, names.back()));
    inputs.push_back(std::move(m));
  }
  std::unique_ptr<LoadedModel> base;
  if (!config.base_model.empty()) {
    const MergeInput b = SplitModelSpec(config.base_model);
    TRIB_ASSIGN_OR_RETURN(LoadedModel loaded, LoadInput(b.model, b.adapter));
    base = std::make_unique<LoadedModel>(std::move(loaded));
    TRIB_RETURN_IF_ERROR(CheckSameLayout(*base, config.base_model, inputs[0], names[0]));
  }
  const LoadedModel& first = base ? *base : inputs[0];
  Arena out(first.params.table_ptr());
  const TensorTable& table = out.table();
  double total_weight = 0;
  for (const MergeInput& in : config.models) total_weight += in.weight;
  for (size_t t = 0; t < table.size(); ++t) {
    const int64_t n = table[t].numel;
    float* dst = out.tensor(t);
    if (config.method == MergeMethod::kSlerp) {
      SlerpTensor(base->params.tensor(t), inputs[0].params.tensor(t), config.t, n, dst);
      continue;
    }
    std::vector<double> acc(static_cast<size_t>(n), 0.0);
    const bool dare = config.method == MergeMethod::kDareLinear || config.method == MergeMethod::kDareTies;
    if (config.method == MergeMethod::kTies || dare) {
      std::vector<std::vector<double>> deltas;
      for (size_t m = 0; m < inputs.size(); ++m) {
        std::vector<double> d(static_cast<size_t>(n));
        for (int64_t j = 0; j < n; ++j) d[j] = double{inputs[m].params.tensor(t)[j]} - base->params.tensor(t)[j];
        if (dare) DareDrop(d, config.models[m].density, config.seed ^ SplitMix64((uint64_t{m} << 32) ^ t));
        deltas.push_back(std::move(d));
      }
      for (int64_t j = 0; j < n; ++j) acc[j] = base->params.tensor(t)[j];
      if (config.method == MergeMethod::kDareLinear) {
        for (size_t m = 0; m < deltas.size(); ++m)
          for (int64_t j = 0; j < n; ++j) acc[j] += config.models[m].weight * deltas[m][j];
      } else {
        TiesTensor(deltas, config.models, config.normalize, /*trim=*/!dare, acc.data(), n);
      }
    } else {
      const bool task = config.method == MergeMethod::kTaskArithmetic;
      if (task)
        for (int64_t j = 0; j < n; ++j) acc[j] = base->params.tensor(t)[j];
      for (size_t m = 0; m < inputs.size(); ++m) {
        const float* x = inputs[m].params.tensor(t);
        const double w = config.models[m].weight;
        for (int64_t j = 0; j < n; ++j) acc[j] += w * (task ? double{x[j]} - base->params.tensor(t)[j] : x[j]);
      }
      if (!task && config.normalize)
        for (double& v : acc) v /= total_weight;
    }
    for (int64_t j = 0; j < n; ++j) dst[j] = static_cast<float>(acc[j]);
  }
  const std::string source_dir = base ? SplitModelSpec(config.base_model).model : config.models[0].model;
  SaveModelOptions options;
  options.copy_tokenizer_from = source_dir;
  options.copy_generation_config_from = source_dir;
  options.dtype = config.dtype_set ? config.dtype : first.stored_dtype;
  return SaveModelDir(out_dir, first.config, out, options);
}

}  // namespace tributary
