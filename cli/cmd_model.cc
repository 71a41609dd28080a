// Model commands: train (centralized baseline), init-model, merge, keygen, demo.
#include <memory>

#include "cli/commands.h"

namespace tributary::cli {
namespace {

struct ModelFlags {
  std::string model_dir;
  std::string data_file;
  std::string output_dir;
  std::string config_file;
  int64_t steps = 0;
  double lr = 0;
  std::vector<std::string> inputs;
  bool force = false;
};

}  // namespace

void RegisterModelCommands(CLI::App& app, CommandRegistry& registry) {
  // Handlers capture f: it owns the storage CLI11 writes the options into.
  auto f = std::make_shared<ModelFlags>();

  CLI::App* train = app.add_subcommand("train", "Fine-tune a model on one machine (the centralized baseline)");
  train->add_option("--model", f->model_dir, "HF model directory")->required();
  train->add_option("--data", f->data_file, "JSONL instruction set or plain text")->required();
  train->add_option("--steps", f->steps, "Optimizer steps")->check(CLI::PositiveNumber);
  train->add_option("--lr", f->lr, "Peak learning rate")->check(CLI::PositiveNumber);
  train->add_option("-o,--output", f->output_dir, "Output model directory")->required();
  registry.handlers["train"] = [f](CommandContext&) -> Status {
    return NotBuiltYet("centralized training (the CPU engine's training loop)");
  };

  CLI::App* init = app.add_subcommand("init-model", "Create a randomly initialised model directory");
  init->add_option("--config", f->config_file, "Model hyper-parameters (YAML)")->required();
  init->add_option("-o,--output", f->output_dir, "Output model directory")->required();
  registry.handlers["init-model"] = [f](CommandContext&) -> Status {
    return NotBuiltYet("model directory writing (HF safetensors + config.json)");
  };

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
    return NotBuiltYet("CURVE key generation (transport security)");
  };

  app.add_subcommand("demo", "Run a local federated fine-tune: a coordinator and 4 workers on loopback");
  registry.handlers["demo"] = [f](CommandContext&) -> Status {
    return NotBuiltYet("the federated demo (coordinator + 4 workers running a Ferret job)");
  };
}

}  // namespace tributary::cli
