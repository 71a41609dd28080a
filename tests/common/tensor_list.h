// Reads the tensor-list fixtures (tests/peft/fixtures/*_params.txt): "name dim0 [dim1 ...]" per line in
// HF named_parameters order, '#' comments. Shared by the blocking test and the aggregation benchmark.
#pragma once

#include <cstdint>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/arena.h"

namespace tributary::testutil {

// Every dim0 is multiplied by `dim0_scale` (a model that many times larger with the same tensor count).
inline Result<std::shared_ptr<TensorTable>> ReadTensorList(const std::string& path, int64_t dim0_scale = 1) {
  std::ifstream in(path);
  if (!in) return Status::NotFound(path + ": cannot be opened (run from the repository root)");
  auto table = std::make_shared<TensorTable>();
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string name;
    fields >> name;
    std::vector<int64_t> shape;
    int64_t dim = 0;
    while (fields >> dim) shape.push_back(dim);
    if (shape.empty()) return Status::InvalidArgument(path + ": tensor '" + name + "' has no shape");
    shape[0] *= dim0_scale;
    table->Add(name, shape);
  }
  return table;
}

}  // namespace tributary::testutil
