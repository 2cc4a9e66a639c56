#pragma once
// The history of one model's generations and edits (docs/method.md section 2.4): a tree whose roots are
// dense generations and whose children are prompt edits of their parent. Several nodes keep their
// activation caches at once, within a byte budget, least recently used evicted first; editing an
// evicted node first rebuilds its cache deterministically (the root generated again, then the
// stored edits replayed down to it), so what the user sees never depends on what was evicted. Only
// that node keeps its rebuilt cache: holding every cache of a long chain at once could exceed the
// device memory the budget is there to protect.
//
// What eviction keeps: a node's request, edit request (painted mask included), result (image,
// decoded pixels, final latents), mask and the VAE decoder's GroupNorm statistics (a few floats per
// norm). What it drops: the per-step layer records and the per-step latents. The latents are small next to the records (under 2% at 768px), but nothing can use
// them alone: an edit reads both, and a rebuild computes both again.
//
// Not thread-safe: one owner (the UI's engine worker, the CLI) calls it from one thread.
#include "pipeline/generation.h"

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <stop_token>
#include <vector>

namespace fisedit {

struct CacheBytes;  // edit/cache_store.h

using NodeId = std::uint64_t;

// The cache rebuild that an edit of an evicted node needed first (EditStats is per edit; this is
// the session's own cost on top of it).
struct RegenerationStats {
  int nodes = 0;  // generations and edits run again: the root (if it was evicted too) and replayed edits
  double ms = 0;
  // The rebuilt image is not the stored one (a node adopted from another device or build, or a
  // backend that is not deterministic). The edit still builds on the stored image, which the user
  // has seen, so outside its region the new node keeps those bytes; but its region comes from
  // activations that differ a little from the ones that made the stored image.
  bool image_differs = false;
};

class EditSession {
public:
  struct Node {
    NodeId id = 0;
    std::optional<NodeId> parent;    // none for a root
    GenerationRequest request;       // resolved: for an edit, its parent's with the edit's prompts
    std::optional<EditRequest> edit; // how this node was made from its parent; none for a root
    GenerationResult result;
    std::optional<LatentMask> mask;  // where the edit recomputed; none for a root
    Image8 changed_region;           // edits only: white where pixels may differ from the parent's
    EditStats stats;                 // edits only
    RegenerationStats regeneration;  // edits only: the rebuild of the parent's cache, if it was evicted
    bool cached = false;             // whether the activation cache is held (editing it is immediate)
  };

  // `sd` must outlive the session. A budget of 0 keeps only the newest node's cache.
  // `device_budget_bytes`: of the caches kept, how many bytes may stay in device memory; the rest is
  // spilled to pinned host memory (least recently used nodes first, and within a node its first
  // steps) and prefetched back when edited. None: the StableDiffusion's own setting, nothing else.
  EditSession(StableDiffusion& sd, std::size_t cache_budget_bytes,
              std::optional<std::size_t> device_budget_bytes = std::nullopt);

  // A new root: a dense generation, cached. Throws Error (cancelled, invalid_argument, ...), leaving
  // the session unchanged.
  NodeId generate(const GenerationRequest& request, const ProgressCallback& progress = {}, std::stop_token stop = {});
  // A new child of `base`: an edit of it, rebuilding base's cache first when it was evicted (progress
  // then counts the rebuild's steps too). Leaves the session unchanged when it throws.
  NodeId edit(NodeId base, const EditRequest& request, const ProgressCallback& progress = {}, std::stop_token stop = {});
  // What the UI's "Generate" does from the selected node: an edit of `current` with `options` (mask
  // mode, margin, detection steps, attention control, painted mask; its prompts are the request's)
  // when only the prompts differ, else a new root.
  NodeId submit(NodeId current, const GenerationRequest& request, EditRequest options = {},
                const ProgressCallback& progress = {}, std::stop_token stop = {});
  // A node made elsewhere (a saved project read back), entered without an activation cache, as if it
  // had been evicted: editing it, or any node below it, rebuilds the cache by generating its root
  // again and replaying the stored edits. Reads node.parent (an adopted or made node), request,
  // edit (with its painted mask: the replay needs it), result (the image at least; latents and
  // decoded may be empty, a rebuild fills them in), mask (optional: a rebuild fills it in too),
  // changed_region and stats; its id, regeneration and cached are the session's. Throws
  // Error(invalid_argument) naming what does not fit (unknown parent, request the model cannot run,
  // edit that changes more than the prompts, missing painted mask, image of the wrong size), leaving
  // the session unchanged.
  NodeId adopt(Node node);
  // Pays what a process's first edit costs beyond later ones (StableDiffusion::prepare_editing) on a
  // throwaway edit of `id`, which must hold its cache (a node just generated does). Changes nothing the
  // session holds, not even which cache was used last.
  EditStats prepare_editing(NodeId id, std::stop_token stop = {});
  // Whether submit() would edit (is_prompt_edit of the node's request and the resolved request); false
  // for a request that does not resolve (submit then throws).
  bool would_edit(NodeId current, const GenerationRequest& request) const;

  const Node& node(NodeId id) const;
  std::vector<NodeId> children(NodeId id) const;  // oldest first
  std::vector<NodeId> roots() const;              // oldest first
  // Removes the node and its whole subtree.
  void remove(NodeId id);
  bool contains(NodeId id) const { return entries_.contains(id); }

  std::size_t cache_budget() const { return budget_; }
  std::size_t cache_bytes() const;  // of all cached nodes
  std::optional<std::size_t> device_budget() const { return device_budget_; }
  // The layer records of all cached nodes by where they live (each piece of memory once; the
  // per-step latents, on the host, are not included).
  std::size_t cache_bytes_device() const;
  std::size_t cache_bytes_host() const;

private:
  CacheBytes record_bytes() const;  // cache_bytes_device() and cache_bytes_host() together

  struct Entry {
    Node node;
    std::vector<NodeId> children;
    // All an edit reads but the result, which lives in `node`; its per-step latents and layer records
    // are empty when evicted.
    CachedGeneration cache;
    std::uint64_t last_used = 0;
  };

  Entry& entry(NodeId id);
  const Entry& entry(NodeId id) const;
  // The generation to edit, with base's cache rebuilt if it was evicted (and then, for an edit, the
  // mask its replay recomputed in `replayed_mask`). Touches no entry.
  CachedGeneration cached_generation(NodeId base, const ProgressCallback& progress, std::stop_token stop,
                                     RegenerationStats& regeneration, std::optional<LatentMask>& replayed_mask) const;
  NodeId add(Entry entry);
  void store_cache(Entry& e, CachedGeneration&& generation);
  // Drops least recently used caches until the budget holds, sparing `newest`, and `base` while
  // anything else can go.
  void enforce_budget(NodeId newest, std::optional<NodeId> base);
  // Spills least recently used nodes' records to host memory until the device budget holds (the
  // newest last: its own generation kept within the budget already).
  void enforce_device_budget(NodeId newest);
  // Applies the session's device budget to the next generation or edit.
  void apply_device_budget();

  StableDiffusion& sd_;
  std::size_t budget_;
  std::optional<std::size_t> device_budget_;
  std::map<NodeId, Entry> entries_;  // ordered by id, which is creation order
  NodeId next_id_ = 1;
  std::uint64_t clock_ = 0;  // advances on every use, for least-recently-used order
};

}  // namespace fisedit
