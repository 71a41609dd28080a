// The demo's embedded setup: a small instruction dataset (four word tasks, so a Dirichlet split by
// task is visibly non-IID), a small LLaMA configuration and the Ferret job spec.
#pragma once

#include <string>
#include <vector>

#include "engine/model/llama_config.h"
#include "engine/text/dataset.h"

namespace tributary::cli {

// 4 tasks (reverse, capitals, repeat, first-and-last letter) over an embedded word list; the
// category is the task. Deterministic.
std::vector<Example> DemoExamples();
// Dolly JSONL (instruction, context, response, category), one example per line.
std::string ExamplesToDollyJsonl(const std::vector<Example>& examples);
// A byte-vocabulary LLaMA small enough for 4 workers to train on 2 cores in a few minutes.
LlamaConfig DemoModelConfig();
// The Ferret job spec the demo submits (YAML), reading `dataset` on the workers and `eval_dataset`
// on the coordinator.
std::string DemoJobYaml(const std::string& base_model_dir, int rounds);

}  // namespace tributary::cli
