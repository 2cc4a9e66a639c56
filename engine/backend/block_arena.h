#pragma once
// The bookkeeping of a caching allocator that splits blocks and merges them back: segments (memory
// obtained elsewhere, e.g. from the driver) are cut into blocks; a request takes the smallest free block
// that fits (best fit), cut to size when the rest is worth keeping; a freed block merges with its free
// neighbours in the same segment. No memory is touched: addresses are only compared and offset, so the
// same code keeps device, pinned host and (in the tests) fake memory.
//
// Why splitting: a cache of fixed size classes keeps the large blocks a generation frees for large
// requests only, so the first edit after it (hundreds of small sparse tensors) asked the driver for each
// of them (2,532 cudaMalloc calls, 114 ms of a 255 ms edit on an H100). Best fit with splitting serves
// them from the generation's free blocks.
#include <cstddef>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

namespace fisedit {

class BlockArena {
public:
  struct Block {
    std::byte* ptr = nullptr;
    std::size_t size = 0;
    friend bool operator==(const Block&, const Block&) = default;
  };

  // Every block's size is a multiple of `granule` (so its offset in the segment is too). A free block
  // larger than a request by at least `min_split` is split; a smaller excess stays with the block, so
  // that slightly different sizes of one tensor across steps reuse one block instead of splintering it.
  BlockArena(std::size_t granule, std::size_t min_split);

  std::size_t round(std::size_t bytes) const;  // the size a request takes at least (never 0)

  // The smallest free block that holds `bytes` (the lowest address among equal sizes), split if worth
  // it; nothing when no free block is large enough (then add a segment and ask again).
  std::optional<Block> take(std::size_t bytes);
  // Memory to cut blocks from: all of it one free block. `size` must be a multiple of the granule.
  void add_segment(std::byte* base, std::size_t size);
  // A block from take() is free again: merged with free neighbours of its segment. Returns the segment
  // when all of it is now free (it stays in the arena; remove_segment() takes it out).
  std::optional<Block> give_back(std::byte* ptr);
  // Takes out a segment that is wholly free (as give_back() reported it).
  void remove_segment(std::byte* base);
  // Takes out every wholly free segment and returns them, to be given back where they came from.
  std::vector<Block> remove_free_segments();
  // Every segment, free or not (for a destructor that frees them all).
  std::vector<Block> segments() const;

  std::size_t free_bytes() const { return free_bytes_; }
  std::size_t segment_bytes() const { return segment_bytes_; }
  std::size_t segment_count() const { return segments_.size(); }
  std::size_t free_block_count() const { return free_.size(); }
  // Checks every invariant (blocks tile their segments, no two free neighbours, the indexes agree,
  // the counters add up); for tests.
  bool consistent() const;

private:
  struct Node {
    std::size_t size = 0;
    std::byte* segment = nullptr;
    bool free = false;
  };
  using Blocks = std::map<std::byte*, Node>;

  void mark_free(Blocks::iterator it);
  void unmark_free(Blocks::iterator it);

  std::size_t granule_, min_split_;
  Blocks blocks_;                                      // by address: a block's neighbours are adjacent entries
  std::set<std::pair<std::size_t, std::byte*>> free_;  // the free blocks, by size then address
  std::map<std::byte*, std::size_t> segments_;         // base -> size
  std::size_t free_bytes_ = 0, segment_bytes_ = 0;
};

}  // namespace fisedit
