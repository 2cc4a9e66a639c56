#include "backend/block_arena.h"

#include <iterator>
#include <limits>
#include <stdexcept>

namespace fisedit {

BlockArena::BlockArena(std::size_t granule, std::size_t min_split) : granule_(granule), min_split_(min_split) {
  if (granule == 0 || min_split == 0 || min_split % granule != 0)
    throw std::logic_error("BlockArena: the granule must be positive and divide the least split");
}

std::size_t BlockArena::round(std::size_t bytes) const {
  if (bytes > std::numeric_limits<std::size_t>::max() - granule_) return std::numeric_limits<std::size_t>::max();
  const std::size_t rounded = (bytes + granule_ - 1) / granule_ * granule_;
  return rounded ? rounded : granule_;  // a zero-element tensor still gets a distinct, valid address
}

void BlockArena::mark_free(Blocks::iterator it) {
  it->second.free = true;
  free_.emplace(it->second.size, it->first);
  free_bytes_ += it->second.size;
}

void BlockArena::unmark_free(Blocks::iterator it) {
  it->second.free = false;
  free_.erase({it->second.size, it->first});
  free_bytes_ -= it->second.size;
}

std::optional<BlockArena::Block> BlockArena::take(std::size_t bytes) {
  const std::size_t wanted = round(bytes);
  const auto found = free_.lower_bound({wanted, nullptr});
  if (found == free_.end()) return std::nullopt;
  const auto it = blocks_.find(found->second);
  unmark_free(it);
  if (const std::size_t excess = it->second.size - wanted; excess >= min_split_) {
    // The block's front serves the request; its tail stays free (no free neighbour: the block was free,
    // so its neighbours were not).
    it->second.size = wanted;
    const auto tail = blocks_.emplace_hint(std::next(it), it->first + wanted, Node{excess, it->second.segment, false});
    mark_free(tail);
  }
  return Block{it->first, it->second.size};
}

void BlockArena::add_segment(std::byte* base, std::size_t size) {
  if (size == 0 || size % granule_ != 0) throw std::logic_error("BlockArena: a segment's size must be a multiple of the granule");
  if (!segments_.emplace(base, size).second) throw std::logic_error("BlockArena: the segment is already in the arena");
  segment_bytes_ += size;
  mark_free(blocks_.emplace(base, Node{size, base, false}).first);
}

std::optional<BlockArena::Block> BlockArena::give_back(std::byte* ptr) {
  auto it = blocks_.find(ptr);
  if (it == blocks_.end() || it->second.free) throw std::logic_error("BlockArena: a block given back that is not on loan");
  std::byte* const segment = it->second.segment;
  if (it != blocks_.begin()) {
    const auto before = std::prev(it);
    if (before->second.free && before->second.segment == segment) {
      unmark_free(before);
      before->second.size += it->second.size;
      blocks_.erase(it);
      it = before;
    }
  }
  if (const auto after = std::next(it); after != blocks_.end() && after->second.free && after->second.segment == segment) {
    unmark_free(after);
    it->second.size += after->second.size;
    blocks_.erase(after);
  }
  mark_free(it);
  if (it->first == segment && it->second.size == segments_.at(segment)) return Block{segment, it->second.size};
  return std::nullopt;
}

void BlockArena::remove_segment(std::byte* base) {
  const auto segment = segments_.find(base);
  const auto it = blocks_.find(base);
  if (segment == segments_.end() || it == blocks_.end() || !it->second.free || it->second.size != segment->second)
    throw std::logic_error("BlockArena: only a wholly free segment can be taken out");
  unmark_free(it);
  blocks_.erase(it);
  segment_bytes_ -= segment->second;
  segments_.erase(segment);
}

std::vector<BlockArena::Block> BlockArena::remove_free_segments() {
  std::vector<Block> removed;
  for (const auto& [base, size] : segments_) {
    const auto it = blocks_.find(base);
    if (it->second.free && it->second.size == size) removed.push_back({base, size});
  }
  for (const Block& b : removed) remove_segment(b.ptr);
  return removed;
}

std::vector<BlockArena::Block> BlockArena::segments() const {
  std::vector<Block> all;
  all.reserve(segments_.size());
  for (const auto& [base, size] : segments_) all.push_back({base, size});
  return all;
}

bool BlockArena::consistent() const {
  std::size_t free_count = 0, free_bytes = 0, segment_bytes = 0;
  auto it = blocks_.begin();
  for (const auto& [base, size] : segments_) {
    segment_bytes += size;
    std::byte* expected = base;
    bool previous_free = false;
    while (expected != base + size) {
      if (it == blocks_.end() || it->first != expected || it->second.segment != base) return false;
      const Node& n = it->second;
      if (n.size == 0 || n.size % granule_ != 0 || n.size > static_cast<std::size_t>(base + size - expected)) return false;
      if (n.free) {
        if (previous_free || !free_.contains({n.size, it->first})) return false;
        ++free_count;
        free_bytes += n.size;
      }
      previous_free = n.free;
      expected += n.size;
      ++it;
    }
  }
  return it == blocks_.end() && free_count == free_.size() && free_bytes == free_bytes_ && segment_bytes == segment_bytes_;
}

}  // namespace fisedit
