// PEFT adapter_config.json (peft/lora.h LoraAdapters::ParseAdapterConfig): the options of a LoRA
// adapter directory someone else trained; the parsed options are validated as Load does.
//
// Input: the JSON text.
#include <cstdint>
#include <string>

#include "peft/lora.h"

using namespace tributary;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto options = LoraAdapters::ParseAdapterConfig(text, "fuzz/adapter_config.json");
  if (!options.ok()) return 0;
  options.value().Validate().IgnoreError();
  return 0;
}
