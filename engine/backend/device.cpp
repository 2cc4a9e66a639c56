// The backend factory (device.h): the one file that knows which backends this build has.
#include "backend/device.h"

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

#if FISEDIT_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

#include <string>

namespace fisedit {

DeviceChoice parse_device_choice(std::string_view name) {
  if (name == "auto") return DeviceChoice::automatic;
  if (name == "cpu") return DeviceChoice::cpu;
  if (name == "cuda") return DeviceChoice::cuda;
  throw Error(ErrorCode::invalid_argument, "unknown device '" + std::string(name) + "' (use auto, cpu or cuda)");
}

bool cuda_device_available(std::string* why) {
#if FISEDIT_HAVE_CUDA
  return CudaBackend::device_available(why);
#else
  if (why) *why = "this build has no CUDA support";
  return false;
#endif
}

std::unique_ptr<Backend> make_backend(DeviceChoice choice) {
  if (choice == DeviceChoice::cpu) return std::make_unique<CpuBackend>();
  std::string why;
  if (cuda_device_available(&why)) {
#if FISEDIT_HAVE_CUDA
    return std::make_unique<CudaBackend>(0);
#endif
  }
  // "no CUDA backend" is the phrase scripts (and test_cli) look for, whatever the reason.
  if (choice == DeviceChoice::cuda)
    throw Error(ErrorCode::unsupported, "no CUDA backend available (" + why + "); use --device cpu (or auto)");
  return std::make_unique<CpuBackend>();
}

}  // namespace fisedit
