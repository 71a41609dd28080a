// Model and setup commands: merge, keygen (and demo, in cmd_demo.cc).
#include <cstdio>
#include <filesystem>
#include <memory>

#include "base/file_util.h"
#include "cli/commands.h"
#include "cli/coordinator_client.h"
#include "cli/json_envelope.h"
#include "cli/model_refs.h"
#include "peft/merge.h"
#include "transport/security.h"

namespace tributary::cli {
namespace {

struct ModelFlags {
  std::string output_dir;
  std::string merge_config;
  std::string store;
  bool force = false;
};

Status RunMerge(const ModelFlags& f) {
  std::error_code ec;
  if (!f.force && std::filesystem::exists(f.output_dir + "/config.json", ec))
    return Status::AlreadyExists(f.output_dir + ": already holds a model (--force overwrites it)");
  TRIB_ASSIGN_OR_RETURN(std::string text, ReadFileToString(f.merge_config));
  TRIB_ASSIGN_OR_RETURN(MergeConfig config, ParseMergeConfig(text, f.merge_config));
  ModelRefs refs(f.store);  // job:ID[@ROUND] inputs become exported directories for the merge's duration
  if (!config.base_model.empty()) {
    TRIB_ASSIGN_OR_RETURN(config.base_model, refs.Resolve(config.base_model));
  }
  for (MergeInput& in : config.models) {
    TRIB_ASSIGN_OR_RETURN(in.model, refs.Resolve(in.model));
  }
  TRIB_RETURN_IF_ERROR(MergeModels(config, f.output_dir));
  std::printf("merged %zu model(s) into %s\n", config.models.size(), f.output_dir.c_str());
  return Status::OK();
}

}  // namespace

void RegisterModelCommands(CLI::App& app, CommandRegistry& registry) {
  // Handlers capture f: it owns the storage CLI11 writes the options into.
  auto f = std::make_shared<ModelFlags>();

  CLI::App* merge =
      app.add_subcommand("merge", "Merge models (linear, task_arithmetic, ties, slerp; LoRA adapters as BASE+ADAPTER)");
  merge->add_option("config", f->merge_config, "mergekit-style YAML (docs/cli.md, \"merge\")")
      ->required()
      ->check(CLI::ExistingFile);
  merge->add_option("-o,--output", f->output_dir, "Output model directory")->required();
  merge->add_flag("--force", f->force, "Overwrite a model already in the output directory");
  merge->add_option("--store", f->store, "A stopped coordinator's data directory, for job:ID[@ROUND] inputs");
  registry.handlers["merge"] = [f](CommandContext&) -> Status { return RunMerge(*f); };

  CLI::App* keygen = app.add_subcommand("keygen", "Write a CURVE key pair: PREFIX.key (secret, 0600) and PREFIX.pub");
  keygen->add_option("-o,--output", f->output_dir, "Key file prefix")->required();
  keygen->add_flag("--force", f->force, "Overwrite existing key files");
  auto keygen_format = std::make_shared<std::string>("text");
  AddFormatOption(keygen, *keygen_format);
  registry.handlers["keygen"] = WithJsonErrors("keygen", keygen_format, [f, keygen_format](CommandContext&) -> Status {
    std::string public_key;
    TRIB_RETURN_IF_ERROR(transport::WriteKeyPairFiles(f->output_dir, f->force, &public_key));
    if (*keygen_format == "json") {
      PrintJsonOk("keygen", {{"secret_key_file", f->output_dir + ".key"},
                             {"public_key_file", f->output_dir + ".pub"},
                             {"public_key", public_key}});
      return Status::OK();
    }
    std::printf("wrote %s.key (secret, mode 0600) and %s.pub\n", f->output_dir.c_str(), f->output_dir.c_str());
    std::printf("public key: %s\n", public_key.c_str());
    std::printf("admit it by appending %s.pub to the coordinator's allowed_keys file\n", f->output_dir.c_str());
    return Status::OK();
  });
  RegisterDemoCommand(app, registry);
}

}  // namespace tributary::cli
