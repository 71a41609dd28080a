// The registry of federated methods: each method's MethodInfo is defined in its own file and registered
// here, once in the declarations and once in the list (the list's order is the order users see).
#include "federation/job_spec.h"
#include "federation/method.h"

namespace tributary {

extern const MethodInfo kFerretMethod;    // federation/ferret_method.cc
extern const MethodInfo kFedAvgMethod;    // federation/fedavg_method.cc
extern const MethodInfo kLoraMethod;      // federation/lora_method.cc
extern const MethodInfo kClusterMethod;   // federation/cluster_method.cc
extern const MethodInfo kFedKSeedMethod;  // federation/fedkseed_method.cc

const std::vector<const MethodInfo*>& RegisteredMethods() {
  static const std::vector<const MethodInfo*> methods = {&kFerretMethod, &kFedAvgMethod, &kLoraMethod, &kClusterMethod,
                                                         &kFedKSeedMethod};
  return methods;
}

const MethodInfo* FindMethod(std::string_view name) {
  for (const MethodInfo* method : RegisteredMethods())
    if (name == method->name) return method;
  return nullptr;
}

const MethodInfo& MethodOf(const JobSpec& spec) {
  const MethodInfo* method = FindMethod(spec.mode);
  TRIB_CHECK(method != nullptr);  // ParseJobSpec admits registered methods only
  return *method;
}

bool ApplyKeepsState(const JobSpec& spec) {
  const MethodInfo& method = MethodOf(spec);
  return method.apply_keeps_state != nullptr && method.apply_keeps_state(spec);
}

Result<std::unique_ptr<FederatedMethod>> CreateMethod(const JobSpec& spec,
                                                      std::shared_ptr<const TensorTable> state_table) {
  const MethodInfo* method = FindMethod(spec.mode);
  if (method == nullptr)
    return Status::InvalidArgument("field 'federation.mode': '" + spec.mode + "' is not a federated method");
  return method->create(spec, std::move(state_table));
}

}  // namespace tributary
