// Files written whole or not at all (atomic_file.h): a temporary beside the target, flushed and renamed.
#include "io/atomic_file.h"

#include "core/error.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace fisedit {
namespace {

[[noreturn]] void io_error(const std::filesystem::path& path, const char* what) {
  throw Error(ErrorCode::io, path.string() + ": " + what + ": " + std::strerror(errno));
}

// The target may be missing or a regular file; anything else (a folder, a device such as /dev/full, a
// FIFO, a socket, a symbolic link) is refused rather than replaced by a regular file.
void check_target(const std::filesystem::path& target) {
  struct stat st {};
  if (::lstat(target.c_str(), &st) != 0) {
    if (errno == ENOENT) return;
    io_error(target, "cannot write");
  }
  const char* kind = S_ISDIR(st.st_mode)    ? "is a folder"
                     : S_ISLNK(st.st_mode)  ? "is a symbolic link"
                     : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "is a device"
                     : S_ISFIFO(st.st_mode) ? "is a FIFO (named pipe)"
                     : S_ISSOCK(st.st_mode) ? "is a socket"
                     : S_ISREG(st.st_mode)  ? nullptr
                                            : "is not a regular file";
  if (kind) throw Error(ErrorCode::io, target.string() + ": cannot write there: it " + kind + "; give the path of a regular file");
}

// The temporary file of a write to `target` by process `pid`.
std::filesystem::path temp_name(const std::filesystem::path& target, long pid) {
  auto temp = target;
  temp += std::string(kAtomicTempInfix) + std::to_string(pid);
  return temp;
}

// Removes the temporary files that writers of `target` killed mid-write (SIGKILL, power loss) left:
// "<target>.tmp-<pid>" of a process that no longer exists, if a regular file. A live process's is its
// write in progress and stays.
void remove_stale_temps(const std::filesystem::path& target) {
  const auto folder = target.parent_path().empty() ? std::filesystem::path(".") : target.parent_path();
  const std::string prefix = target.filename().string() + kAtomicTempInfix;
  DIR* dir = ::opendir(folder.c_str());
  if (!dir) return;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (!name.starts_with(prefix) || name.size() == prefix.size() || name.size() - prefix.size() > 9) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const long pid = std::stol(digits);
    if (pid == ::getpid() || pid <= 0 || ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    struct stat st {};
    const auto path = folder / name;
    if (::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) ::unlink(path.c_str());
  }
  ::closedir(dir);
}

// Makes a rename in `folder` durable: without it, a crash soon after the rename may bring back the
// old name (ext4 and XFS order data before the rename, not the rename itself).
void sync_folder(const std::filesystem::path& folder) {
  const int fd = ::open((folder.empty() ? std::filesystem::path(".") : folder).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // the data is safe either way; only the rename's durability is not confirmed
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

void sync_directory(const std::filesystem::path& folder) { sync_folder(folder); }

void check_output_path(const std::filesystem::path& target) { check_target(target); }

AtomicFile::AtomicFile(std::filesystem::path target) : target_(std::move(target)) {
  check_target(target_);
  remove_stale_temps(target_);
  temp_ = temp_name(target_, ::getpid());
  // A new file only: never follow or reuse whatever sits at the temporary name.
  int fd = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
  if (fd < 0 && errno == EEXIST) {
    // Left by a process of the same id that died; replace it only if it is a regular file.
    struct stat st {};
    if (::lstat(temp_.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::unlink(temp_.c_str()) == 0)
      fd = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
  }
  if (fd < 0) io_error(temp_, "cannot create");
  file_ = ::fdopen(fd, "wb");
  if (!file_) {
    ::close(fd);
    io_error(temp_, "cannot create");
  }
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
  try {
    check_target(target_);  // again: it may have changed while the data was written
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove(temp_, ignored);
    throw;
  }
  std::error_code ec;
  std::filesystem::rename(temp_, target_, ec);
  if (ec) {
    const auto message = ec.message();  // before remove() overwrites ec
    std::error_code ignored;
    std::filesystem::remove(temp_, ignored);
    throw Error(ErrorCode::io, target_.string() + ": cannot replace: " + message);
  }
  sync_folder(target_.parent_path());
}

}  // namespace fisedit
