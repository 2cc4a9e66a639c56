// Files written whole or not at all (atomic_file.h): a temporary beside the target, flushed and renamed.
#include "io/atomic_file.h"

#include "core/error.h"

#include <cerrno>
#include <cstring>
#include <string>
#include <unistd.h>

namespace fisedit {
namespace {

[[noreturn]] void io_error(const std::filesystem::path& path, const char* what) {
  throw Error(ErrorCode::io, path.string() + ": " + what + ": " + std::strerror(errno));
}

}  // namespace

AtomicFile::AtomicFile(std::filesystem::path target) : target_(std::move(target)) {
  temp_ = target_;
  temp_ += ".tmp-" + std::to_string(::getpid());
  file_ = std::fopen(temp_.c_str(), "wb");
  if (!file_) io_error(temp_, "cannot create");
}

AtomicFile::~AtomicFile() {
  if (file_) {
    std::fclose(file_);
    std::error_code ignored;
    std::filesystem::remove(temp_, ignored);
  }
}

void AtomicFile::write(const std::byte* data, std::size_t size) {
  if (size && std::fwrite(data, 1, size, file_) != size) io_error(temp_, "write failed");
}

void AtomicFile::commit() {
  if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0) io_error(temp_, "flush failed");
  if (std::fclose(file_) != 0) {
    file_ = nullptr;
    io_error(temp_, "close failed");
  }
  file_ = nullptr;
  std::error_code ec;
  std::filesystem::rename(temp_, target_, ec);
  if (ec) {
    std::filesystem::remove(temp_, ec);
    throw Error(ErrorCode::io, target_.string() + ": cannot replace: " + ec.message());
  }
}

}  // namespace fisedit
