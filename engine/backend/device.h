#pragma once
// Choosing the backend a session runs on: --device auto|cpu|cuda in the CLI, the device setting in the app.
#include "backend/backend.h"

#include <memory>
#include <string>
#include <string_view>

namespace fisedit {

enum class DeviceChoice { automatic, cpu, cuda };

// "auto", "cpu" or "cuda"; throws Error(invalid_argument) otherwise.
DeviceChoice parse_device_choice(std::string_view name);

// Whether this build has a CUDA backend and a usable device; `why` receives the reason when not (no
// CUDA in this build, no device, a driver too old for the toolkit).
bool cuda_device_available(std::string* why = nullptr);

// automatic: the GPU when this build has a CUDA backend and a device is present, else the CPU.
// cuda: throws Error(unsupported) saying why when no CUDA backend or device is available.
std::unique_ptr<Backend> make_backend(DeviceChoice choice);

}  // namespace fisedit
