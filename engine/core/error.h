#pragma once
// The engine's one error type. Engine code throws fisedit::Error for anything a user can cause or fix
// (bad files, unsupported models, bad parameters, out of memory, cancellation); the public entry points
// (CLI, UI worker) catch it and show `what()`. Programming errors are asserts, not Errors.
#include <stdexcept>
#include <string>

namespace fisedit {

enum class ErrorCode {
  invalid_argument,  // a parameter out of range or of the wrong form
  not_found,         // a file or component that should be there is not
  corrupt_file,      // a file is there but its content is malformed
  unsupported,       // a valid input the engine does not handle (yet)
  io,                // the operating system refused a read or write
  out_of_memory,
  cancelled,
  device,            // a CUDA / driver failure
};

const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

private:
  ErrorCode code_;
};

}  // namespace fisedit
