// Model and setup commands: merge, keygen (and demo, in cmd_demo.cc).
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "transport/security.h"

namespace tributary::cli {
namespace {

struct ModelFlags {
  std::string output_dir;
  std::vector<std::string> inputs;
  bool force = false;
};

}  // namespace

void RegisterModelCommands(CLI::App& app, CommandRegistry& registry) {
  // Handlers capture f: it owns the storage CLI11 writes the options into.
  auto f = std::make_shared<ModelFlags>();

  CLI::App* merge = app.add_subcommand("merge", "Merge a LoRA adapter or average models into one HF model directory");
  merge->add_option("inputs", f->inputs, "Base model directory followed by adapters or models")->required();
  merge->add_option("-o,--output", f->output_dir, "Output model directory")->required();
  registry.handlers["merge"] = [f](CommandContext&) -> Status {
    return NotBuiltYet("model merging (LoRA merge and model averaging)");
  };

  CLI::App* keygen = app.add_subcommand("keygen", "Write a CURVE key pair: PREFIX.key (secret, 0600) and PREFIX.pub");
  keygen->add_option("-o,--output", f->output_dir, "Key file prefix")->required();
  keygen->add_flag("--force", f->force, "Overwrite existing key files");
  registry.handlers["keygen"] = [f](CommandContext&) -> Status {
    std::string public_key;
    TRIB_RETURN_IF_ERROR(transport::WriteKeyPairFiles(f->output_dir, f->force, &public_key));
    std::printf("wrote %s.key (secret, mode 0600) and %s.pub\n", f->output_dir.c_str(), f->output_dir.c_str());
    std::printf("public key: %s\n", public_key.c_str());
    std::printf("admit it by appending %s.pub to the coordinator's allowed_keys file\n", f->output_dir.c_str());
    return Status::OK();
  };
  RegisterDemoCommand(app, registry);
}

}  // namespace tributary::cli
