#include "backend/device.h"

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

#include <string>

namespace fisedit {

DeviceChoice parse_device_choice(std::string_view name) {
  if (name == "auto") return DeviceChoice::automatic;
  if (name == "cpu") return DeviceChoice::cpu;
  if (name == "cuda") return DeviceChoice::cuda;
  throw Error(ErrorCode::invalid_argument, "unknown device '" + std::string(name) + "' (use auto, cpu or cuda)");
}

std::unique_ptr<Backend> make_backend(DeviceChoice choice) {
  if (choice == DeviceChoice::cuda)
    throw Error(ErrorCode::unsupported, "this build has no CUDA backend yet; use --device cpu (or auto)");
  return std::make_unique<CpuBackend>();
}

}  // namespace fisedit
