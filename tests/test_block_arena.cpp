// The caching allocators' bookkeeping (backend/block_arena.h) on fake addresses: best fit, splitting,
// merging with free neighbours only within a segment, wholly free segments, and a long random run
// against a model of which bytes are on loan.
#include "backend/block_arena.h"

#include <QtTest>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

using fisedit::BlockArena;

namespace {

std::byte* at(std::uintptr_t address) { return reinterpret_cast<std::byte*>(address); }

constexpr std::size_t KiB = 1024;
constexpr std::size_t MiB = 1024 * KiB;

}  // namespace

class TestBlockArena : public QObject {
  Q_OBJECT

private slots:
  void rounds_to_the_granule() {
    const BlockArena arena(512, 512);
    QCOMPARE(arena.round(0), std::size_t{512});
    QCOMPARE(arena.round(1), std::size_t{512});
    QCOMPARE(arena.round(512), std::size_t{512});
    QCOMPARE(arena.round(513), std::size_t{1024});
    QCOMPARE(arena.round(~std::size_t{0}), ~std::size_t{0});  // saturates instead of wrapping to a small size
  }

  void empty_arena_serves_nothing() {
    BlockArena arena(512, 512);
    QVERIFY(!arena.take(1).has_value());
    QVERIFY(arena.consistent());
  }

  // A small request is cut from the front of a large free block; the tail stays free and serves the next.
  void splits_large_blocks_for_small_requests() {
    BlockArena arena(512, 512);
    arena.add_segment(at(0x100000), 64 * KiB);
    const auto a = arena.take(1000);
    QVERIFY(a.has_value());
    QCOMPARE(*a, (BlockArena::Block{at(0x100000), 1024}));
    const auto b = arena.take(300);
    QCOMPARE(*b, (BlockArena::Block{at(0x100000 + 1024), 512}));
    QCOMPARE(arena.free_bytes(), 64 * KiB - 1536);
    QCOMPARE(arena.free_block_count(), std::size_t{1});
    QVERIFY(arena.consistent());
  }

  // An excess below the least split stays with the block: a tensor a little smaller than last step's
  // takes the same block whole.
  void keeps_small_excess_with_the_block() {
    BlockArena arena(128 * KiB, MiB);
    arena.add_segment(at(0x10000000), 4 * MiB);
    const auto a = arena.take(3 * MiB + 200 * KiB);  // excess 768 KiB < 1 MiB: the whole segment
    QCOMPARE(a->size, 4 * MiB);
    QCOMPARE(arena.free_bytes(), std::size_t{0});
    arena.give_back(a->ptr);
    const auto b = arena.take(2 * MiB);  // excess 2 MiB: split
    QCOMPARE(b->size, 2 * MiB);
    QCOMPARE(arena.free_bytes(), 2 * MiB);
    QVERIFY(arena.consistent());
  }

  // The smallest block that fits, not the first: a small request leaves the large free block whole.
  void takes_the_best_fit() {
    BlockArena arena(512, 512);
    arena.add_segment(at(0x100000), 8 * KiB);
    const auto a = arena.take(1 * KiB);
    const auto gap = arena.take(2 * KiB);
    const auto c = arena.take(1 * KiB);
    QVERIFY(a && gap && c);
    arena.give_back(gap->ptr);  // free: 2 KiB between a and c, and the 4 KiB tail
    const auto d = arena.take(1536);
    QCOMPARE(d->ptr, gap->ptr);
    QCOMPARE(arena.free_block_count(), std::size_t{2});  // the gap's rest and the tail
    QVERIFY(arena.consistent());
  }

  // Freed neighbours merge both ways, and a segment wholly free again is reported and can be taken out.
  void merges_free_neighbours() {
    BlockArena arena(512, 512);
    arena.add_segment(at(0x100000), 4 * KiB);
    const auto a = arena.take(1 * KiB), b = arena.take(1 * KiB), c = arena.take(1 * KiB), d = arena.take(1 * KiB);
    QVERIFY(a && b && c && d);
    QCOMPARE(arena.free_bytes(), std::size_t{0});
    QVERIFY(!arena.give_back(a->ptr));
    QVERIFY(!arena.give_back(c->ptr));
    QCOMPARE(arena.free_block_count(), std::size_t{2});
    QVERIFY(!arena.give_back(b->ptr));  // merges with a and c
    QCOMPARE(arena.free_block_count(), std::size_t{1});
    QVERIFY(arena.consistent());
    const auto whole = arena.give_back(d->ptr);
    QVERIFY(whole.has_value());
    QCOMPARE(*whole, (BlockArena::Block{at(0x100000), 4 * KiB}));
    QVERIFY(arena.consistent());
    arena.remove_segment(whole->ptr);
    QCOMPARE(arena.segment_count(), std::size_t{0});
    QCOMPARE(arena.free_bytes(), std::size_t{0});
    QCOMPARE(arena.segment_bytes(), std::size_t{0});
    QVERIFY(arena.consistent());
  }

  // Segments the driver returned side by side stay apart: their blocks never merge into one that
  // would span two allocations.
  void never_merges_across_segments() {
    BlockArena arena(512, 512);
    arena.add_segment(at(0x100000), 4 * KiB);
    arena.add_segment(at(0x100000 + 4 * KiB), 4 * KiB);
    QCOMPARE(arena.free_block_count(), std::size_t{2});
    QVERIFY(!arena.take(5 * KiB).has_value());
    const auto a = arena.take(4 * KiB);
    QVERIFY(a.has_value());
    QVERIFY(arena.give_back(a->ptr).has_value());  // its own segment, wholly free; not merged with the next
    QCOMPARE(arena.free_block_count(), std::size_t{2});
    QVERIFY(arena.consistent());
  }

  void removes_only_wholly_free_segments() {
    BlockArena arena(512, 512);
    arena.add_segment(at(0x100000), 4 * KiB);
    arena.add_segment(at(0x200000), 8 * KiB);
    const auto a = arena.take(1 * KiB);  // from the 4 KiB segment (best fit)
    QCOMPARE(a->ptr, at(0x100000));
    const auto removed = arena.remove_free_segments();
    QCOMPARE(removed.size(), std::size_t{1});
    QCOMPARE(removed.front(), (BlockArena::Block{at(0x200000), 8 * KiB}));
    QCOMPARE(arena.segment_count(), std::size_t{1});
    QCOMPARE(arena.free_bytes(), 3 * KiB);
    QVERIFY(arena.consistent());
    QVERIFY_THROWS_EXCEPTION(std::logic_error, arena.remove_segment(at(0x100000)));  // a block is on loan
    QVERIFY_THROWS_EXCEPTION(std::logic_error, arena.give_back(at(0x100000 + 1 * KiB)));  // not on loan
    QVERIFY_THROWS_EXCEPTION(std::logic_error, arena.add_segment(at(0x300000), 1000));   // not whole granules
  }

  // Many random takes and gives against a model of the bytes on loan: loans never overlap and stay
  // inside their segments, the counters add up, and once all is given back every segment is one free
  // block again.
  void random_run_keeps_every_invariant() {
    BlockArena arena(512, 2048);
    const std::vector<std::pair<std::uintptr_t, std::size_t>> segments = {
        {0x1000000, 256 * KiB}, {0x1000000 + 256 * KiB, 64 * KiB}, {0x3000000, 1 * MiB}};
    std::size_t total = 0;
    for (const auto& [base, size] : segments) {
      arena.add_segment(at(base), size);
      total += size;
    }
    std::mt19937 random(12);
    std::vector<BlockArena::Block> loans;
    std::size_t on_loan = 0, refused = 0;
    for (int i = 0; i < 20000; ++i) {
      if (loans.empty() || random() % 100 < 55) {
        const std::size_t bytes = random() % 3 == 0 ? random() % (96 * KiB) : random() % (4 * KiB);
        if (const auto block = arena.take(bytes)) {
          QVERIFY(block->size >= std::max<std::size_t>(bytes, 1));
          QVERIFY(block->size < arena.round(bytes) + 2048);
          loans.push_back(*block);
          on_loan += block->size;
        } else {
          ++refused;
        }
      } else {
        const std::size_t k = random() % loans.size();
        on_loan -= loans[k].size;
        arena.give_back(loans[k].ptr);
        loans[k] = loans.back();
        loans.pop_back();
      }
      QCOMPARE(arena.free_bytes() + on_loan, total);
      if (i % 500 == 0) {
        QVERIFY(arena.consistent());
        std::vector<BlockArena::Block> sorted = loans;
        std::sort(sorted.begin(), sorted.end(), [](const auto& x, const auto& y) { return x.ptr < y.ptr; });
        for (std::size_t j = 1; j < sorted.size(); ++j) QVERIFY(sorted[j - 1].ptr + sorted[j - 1].size <= sorted[j].ptr);
        for (const auto& loan : sorted)
          QVERIFY(std::any_of(segments.begin(), segments.end(), [&](const auto& s) {
            return loan.ptr >= at(s.first) && loan.ptr + loan.size <= at(s.first) + s.second;
          }));
      }
    }
    QVERIFY(refused > 0);  // the run did fill the arena
    for (const auto& loan : loans) arena.give_back(loan.ptr);
    QVERIFY(arena.consistent());
    QCOMPARE(arena.free_bytes(), total);
    QCOMPARE(arena.free_block_count(), segments.size());
    QCOMPARE(arena.remove_free_segments().size(), segments.size());
  }
};

QTEST_APPLESS_MAIN(TestBlockArena)

#include "test_block_arena.moc"
