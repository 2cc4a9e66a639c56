// The names of the engine's error codes (error.h).
#include "core/error.h"

namespace fisedit {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid_argument: return "invalid argument";
    case ErrorCode::not_found: return "not found";
    case ErrorCode::corrupt_file: return "corrupt file";
    case ErrorCode::unsupported: return "unsupported";
    case ErrorCode::io: return "I/O error";
    case ErrorCode::out_of_memory: return "out of memory";
    case ErrorCode::cancelled: return "cancelled";
    case ErrorCode::device: return "device error";
  }
  return "error";
}

}  // namespace fisedit
