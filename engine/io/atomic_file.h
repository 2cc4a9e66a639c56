#pragma once
// Writes a file so that readers see either the old content or the whole new content: data goes to a
// temporary file beside the target, which commit() flushes to disk (fsync) and renames over it, then
// syncs the folder so the rename itself survives a crash. Without commit() the temporary file is
// removed and the target is untouched.
//
// A process killed mid-write (SIGKILL, power loss) leaves its temporary file, "<target>.tmp-<pid>":
// never a name the app opens as a project or image (the extension is not .fisedit or .png), and
// removed by the next AtomicFile for the same target once no process of that id is running.
#include <cstddef>
#include <cstdio>
#include <filesystem>

namespace fisedit {

// Throws Error(io) naming `target` unless it is missing or a regular file: folders, devices, FIFOs,
// sockets and symbolic links are refused, never replaced (AtomicFile checks this too; front ends call it
// before a long computation whose result goes there).
void check_output_path(const std::filesystem::path& target);

// What a temporary file's name adds to its target's: "<target>.tmp-<pid>".
inline constexpr const char* kAtomicTempInfix = ".tmp-";

// fsync of a folder, after renaming something into it (errors ignored: the data itself is synced).
void sync_directory(const std::filesystem::path& folder);

class AtomicFile {
public:
  explicit AtomicFile(std::filesystem::path target);  // throws Error(io)
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const std::byte* data, std::size_t size);  // throws Error(io)
  void commit();                                         // throws Error(io)

private:
  std::filesystem::path target_;
  std::filesystem::path temp_;
  std::FILE* file_ = nullptr;
};

}  // namespace fisedit
