// Read-only memory mappings of whole files (mapped_file.h), with mmap, and the SIGBUS handler that keeps
// a file truncated under its mapping from killing the process.
#include "io/mapped_file.h"

#include "core/error.h"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace fisedit {
namespace {

// The mappings the handler may repair, lock-free (the handler reads it in any thread, at any moment).
// A slot is free when `end` is 0; claimed by the opener with a compare-exchange on `end`.
struct Region {
  std::atomic<std::uintptr_t> begin{0}, end{0};
  std::atomic<bool> damaged{false};
};
constexpr int kSlots = 1024;
Region g_regions[kSlots];
static_assert(std::atomic<std::uintptr_t>::is_always_lock_free && std::atomic<bool>::is_always_lock_free);

// The files of the slots, for messages (the handler never reads them).
std::mutex g_paths_mutex;
std::filesystem::path g_paths[kSlots];

struct sigaction g_previous {};
std::uintptr_t g_page = 4096;  // set before the handler is installed
std::once_flag g_install_once;

void on_sigbus(int signal, siginfo_t* info, void* context) {
  const auto address = reinterpret_cast<std::uintptr_t>(info->si_addr);
  for (Region& r : g_regions) {
    const std::uintptr_t begin = r.begin.load(), end = r.end.load();
    if (end == 0 || address < begin || address >= end) continue;
    // Zero pages from the faulting page to the end of the mapping: the read that faulted, and every
    // later one, completes. mmap is a plain system call on Linux, safe here.
    const std::uintptr_t from = address & ~(g_page - 1);
    const int saved = errno;
    void* fixed = ::mmap(reinterpret_cast<void*>(from), end - from, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    errno = saved;
    if (fixed == MAP_FAILED) break;  // cannot repair: the fault takes its usual course
    r.damaged.store(true);
    return;
  }
  // Not one of ours: whoever handled SIGBUS before, or the default action (the fault repeats on return).
  if (g_previous.sa_flags & SA_SIGINFO) {
    if (g_previous.sa_sigaction) return g_previous.sa_sigaction(signal, info, context);
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
    return g_previous.sa_handler(signal);
  }
  ::sigaction(SIGBUS, &g_previous, nullptr);
}

void install_handler() {
  g_page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  struct sigaction action {};
  action.sa_sigaction = on_sigbus;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGBUS, &action, &g_previous);
}

int register_region(const std::byte* data, std::size_t size, const std::filesystem::path& path) {
  std::call_once(g_install_once, install_handler);
  const auto begin = reinterpret_cast<std::uintptr_t>(data);
  for (int i = 0; i < kSlots; ++i) {
    std::uintptr_t expected = 0;
    // Claimed with `end` set to 1 (matches no address) until `begin` is in place.
    if (!g_regions[i].end.compare_exchange_strong(expected, 1)) continue;
    {
      std::lock_guard lock(g_paths_mutex);
      g_paths[i] = path;
    }
    g_regions[i].damaged.store(false);
    g_regions[i].begin.store(begin);
    g_regions[i].end.store(begin + size);
    return i;
  }
  return -1;  // more than kSlots files mapped at once: this one is not protected
}

[[noreturn]] void throw_damaged(const std::filesystem::path& path) {
  throw Error(ErrorCode::io, path.string() +
                                 ": the file was truncated or changed while fisedit was reading it (it is being "
                                 "written, or was replaced in place); open the model again once the file is complete");
}

}  // namespace

std::shared_ptr<const MappedFile> MappedFile::open(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    throw Error(err == ENOENT ? ErrorCode::not_found : ErrorCode::io,
                path.string() + ": cannot open: " + std::strerror(err));
  }
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(ErrorCode::io, path.string() + ": not a regular file");
  }
  const auto size = static_cast<std::size_t>(st.st_size);
  void* data = nullptr;
  if (size > 0) {
    data = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (data == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw Error(ErrorCode::io, path.string() + ": cannot map: " + std::strerror(err));
    }
  }
  ::close(fd);  // the mapping stays valid without the descriptor
  const auto* bytes = static_cast<const std::byte*>(data);
  const int slot = size > 0 ? register_region(bytes, size, path) : -1;
  return std::shared_ptr<const MappedFile>(new MappedFile(path, bytes, size, slot));
}

MappedFile::~MappedFile() {
  if (slot_ >= 0) {
    {
      std::lock_guard lock(g_paths_mutex);
      g_paths[slot_].clear();
    }
    g_regions[slot_].begin.store(0);
    g_regions[slot_].end.store(0);  // frees the slot
  }
  if (size_ > 0) ::munmap(const_cast<std::byte*>(data_), size_);
}

bool MappedFile::damaged() const { return slot_ >= 0 && g_regions[slot_].damaged.load(); }

void MappedFile::check_intact() const {
  if (damaged()) throw_damaged(path_);
}

void check_mapped_intact(std::span<const std::byte> bytes) {
  if (bytes.empty()) return;
  const auto address = reinterpret_cast<std::uintptr_t>(bytes.data());
  std::lock_guard lock(g_paths_mutex);
  for (int i = 0; i < kSlots; ++i) {
    const Region& r = g_regions[i];
    const std::uintptr_t begin = r.begin.load(), end = r.end.load();
    if (end <= 1 || address < begin || address >= end || !r.damaged.load()) continue;
    throw_damaged(g_paths[i]);
  }
}

}  // namespace fisedit
