#include "cli/app.h"

int main(int argc, char** argv) {
  return tributary::cli::RunCli(argc, argv);
}
