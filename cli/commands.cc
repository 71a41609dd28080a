#include "cli/commands.h"

namespace tributary::cli {

Status NotBuiltYet(const std::string& what_is_missing) {
  return Status::Unimplemented("not built yet: " + what_is_missing);
}

void RegisterCommands(CLI::App& app, CommandRegistry& registry) {
  RegisterDaemonCommands(app, registry);
  RegisterJobCommands(app, registry);
  RegisterTrainCommands(app, registry);
  RegisterTokenizerCommands(app, registry);
  RegisterModelCommands(app, registry);
  RegisterGenerateCommands(app, registry);
  RegisterPlanCommand(app, registry);
  RegisterProbeCommand(app, registry);
  RegisterInfoCommands(app, registry);
}

}  // namespace tributary::cli
