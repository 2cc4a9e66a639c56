// The history tree and its cache budget (edit_session.h). Every public mutation computes first and
// commits after, so an exception (cancellation included) leaves the session as it was.
#include "pipeline/edit_session.h"

#include "core/error.h"
#include "edit/cache_store.h"

#include <algorithm>
#include <chrono>

namespace fisedit {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// Progress of run `run` of `runs` (a rebuild's generation and replayed edits, then the edit asked
// for) as one bar: the UI shows a single job, not several that restart at step 1.
ProgressCallback part_of(const ProgressCallback& progress, int run, int runs, Clock::time_point t0) {
  if (!progress || runs == 1) return progress;
  return [=](GenerationProgress p) {
    p.step += run * p.total;
    p.total *= runs;
    p.elapsed_ms = ms_since(t0);
    progress(p);  // the latents pass through: a preview shows whichever run is under way
  };
}

}  // namespace

EditSession::EditSession(StableDiffusion& sd, std::size_t cache_budget_bytes,
                         std::optional<std::size_t> device_budget_bytes)
    : sd_(sd), budget_(cache_budget_bytes), device_budget_(device_budget_bytes) {}

void EditSession::apply_device_budget() {
  if (device_budget_) sd_.set_cache_device_budget(device_budget_);
}

EditSession::Entry& EditSession::entry(NodeId id) {
  return const_cast<Entry&>(static_cast<const EditSession*>(this)->entry(id));
}

const EditSession::Entry& EditSession::entry(NodeId id) const {
  const auto it = entries_.find(id);
  if (it == entries_.end())
    throw Error(ErrorCode::invalid_argument, "unknown history node " + std::to_string(id));
  return it->second;
}

const EditSession::Node& EditSession::node(NodeId id) const { return entry(id).node; }

std::vector<NodeId> EditSession::children(NodeId id) const { return entry(id).children; }

std::vector<NodeId> EditSession::roots() const {
  std::vector<NodeId> ids;
  for (const auto& [id, e] : entries_)
    if (!e.node.parent) ids.push_back(id);
  return ids;
}

EditStats EditSession::prepare_editing(NodeId id, std::stop_token stop) {
  const Entry& e = entry(id);
  if (!e.node.cached) throw Error(ErrorCode::invalid_argument, "prepare_editing: the node holds no activation cache");
  CachedGeneration generation = e.cache;  // the records share their buffers; the result lives in the node
  generation.result = e.node.result;
  return sd_.prepare_editing(generation, stop);
}

NodeId EditSession::generate(const GenerationRequest& request, const ProgressCallback& progress,
                             std::stop_token stop) {
  apply_device_budget();
  auto generation = sd_.generate_cached(request, progress, stop);
  Entry e;
  e.node.request = generation.request;
  e.node.result = std::move(generation.result);
  store_cache(e, std::move(generation));
  const NodeId id = add(std::move(e));
  enforce_budget(id, std::nullopt);
  enforce_device_budget(id);
  return id;
}

NodeId EditSession::edit(NodeId base, const EditRequest& request, const ProgressCallback& progress,
                         std::stop_token stop) {
  const auto t0 = Clock::now();
  apply_device_budget();
  RegenerationStats regeneration;
  std::optional<LatentMask> replayed_mask;
  CachedGeneration base_generation;
  EditResult edited;
  try {
    base_generation = cached_generation(base, progress, stop, regeneration, replayed_mask);
    edited = sd_.edit(base_generation, request, part_of(progress, regeneration.nodes, regeneration.nodes + 1, t0), stop);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::out_of_memory) throw;
    // Nothing is committed yet: the buffers of the half-made edit are freed as this unwinds.
    throw Error(ErrorCode::out_of_memory, std::string(e.what()) +
                                              ". The edit was not made; the history and the current image are unchanged");
  }

  Entry& b = entry(base);
  if (regeneration.nodes > 0) {
    // An adopted node came with its image only: the rebuild's latents complete its result.
    if (b.node.result.latents.empty()) {
      b.node.result.latents = base_generation.result.latents;
      b.node.result.decoded = base_generation.result.decoded;
    }
    if (b.node.edit && !b.node.mask) b.node.mask = std::move(replayed_mask);
    store_cache(b, std::move(base_generation));
  }
  b.last_used = ++clock_;
  Entry e;
  e.node.parent = base;
  e.node.request = edited.generation.request;
  e.node.edit = request;
  e.node.result = std::move(edited.generation.result);
  e.node.mask = std::move(edited.mask);
  e.node.changed_region = std::move(edited.changed_region);
  e.node.stats = edited.stats;
  e.node.regeneration = regeneration;
  store_cache(e, std::move(edited.generation));
  const NodeId id = add(std::move(e));
  b.children.push_back(id);
  enforce_budget(id, base);
  enforce_device_budget(id);
  return id;
}

NodeId EditSession::adopt(Node node) {
  const std::string what = node.parent ? "the adopted edit" : "the adopted generation";
  auto fail = [&](const std::string& message) { throw Error(ErrorCode::invalid_argument, what + " " + message); };
  if (node.parent.has_value() != node.edit.has_value())
    fail(node.parent ? "has a parent but no edit request" : "has an edit request but no parent");
  // Resolving again fills nothing in for a request this program stored, but rejects one this model
  // cannot run (a size that is not a multiple of 8, an unknown sampler) now rather than at the rebuild.
  node.request = sd_.resolve(std::move(node.request));
  const GenerationRequest& r = node.request;
  if (node.parent) {
    if (!contains(*node.parent)) fail("names an unknown parent node " + std::to_string(*node.parent));
    const EditRequest& e = *node.edit;
    // The replay makes this node from its parent with `e`: anything but the prompts must be the parent's.
    if (!edit_compatible(entry(*node.parent).node.request, r))
      fail("has other parameters than its parent (seed, steps, CFG scale, sampler or size)");
    if (e.prompt != r.prompt || e.negative_prompt != r.negative_prompt)
      fail("has other prompts than its edit request");
    if (e.mask_mode != MaskMode::automatic && !e.painted_mask) fail("needs its painted mask to be replayed");
    if (e.painted_mask && (e.painted_mask->width != r.width || e.painted_mask->height != r.height))
      fail("has a " + std::to_string(e.painted_mask->width) + "x" + std::to_string(e.painted_mask->height) +
           " painted mask for a " + std::to_string(r.width) + "x" + std::to_string(r.height) + " image");
    if (e.margin < 0 || e.feather < 0) fail("has a negative margin or feather");
  }
  // A stored edit replays what ran: the default detection count (-1) becomes the count the edit used,
  // so that a later change of the default does not change how a saved node is rebuilt.
  if (node.edit && node.edit->detect_steps < 0 && node.stats.detect_steps > 0)
    node.edit->detect_steps = node.stats.detect_steps;
  const Image8& image = node.result.image;
  if (image.width != r.width || image.height != r.height || image.channels != 3 ||
      image.pixels.size() != static_cast<std::size_t>(r.width) * r.height * 3)
    fail("has a " + std::to_string(image.width) + "x" + std::to_string(image.height) + " image (" +
         std::to_string(image.channels) + " channels) where " + std::to_string(r.width) + "x" +
         std::to_string(r.height) + " RGB was made");
  node.result.scheduler = r.scheduler;
  node.result.width = r.width;
  node.result.height = r.height;
  node.regeneration = {};
  node.cached = false;

  Entry e;
  e.node = std::move(node);
  e.cache.request = e.node.request;  // what an evicted entry keeps besides the result; no decoder statistics yet
  const std::optional<NodeId> parent = e.node.parent;
  const NodeId id = add(std::move(e));
  if (parent) entry(*parent).children.push_back(id);
  return id;
}

bool EditSession::would_edit(NodeId current, const GenerationRequest& request) const {
  const auto& base = node(current).request;
  try {
    return is_prompt_edit(base, sd_.resolve(request));
  } catch (const Error&) {
    return false;  // submit() generates, and the generation reports what is wrong with the request
  }
}

NodeId EditSession::submit(NodeId current, const GenerationRequest& request, EditRequest options,
                           const ProgressCallback& progress, std::stop_token stop) {
  if (!would_edit(current, request)) return generate(request, progress, stop);
  options.prompt = request.prompt;
  options.negative_prompt = request.negative_prompt;
  return edit(current, options, progress, stop);
}

CachedGeneration EditSession::cached_generation(NodeId base, const ProgressCallback& progress, std::stop_token stop,
                                                RegenerationStats& regeneration,
                                                std::optional<LatentMask>& replayed_mask) const {
  // Up from base to the nearest node that still has its cache, or to the root.
  std::vector<const Entry*> chain{&entry(base)};
  while (!chain.back()->node.cached && chain.back()->node.parent) chain.push_back(&entry(*chain.back()->node.parent));
  std::reverse(chain.begin(), chain.end());

  CachedGeneration generation;
  const Entry& top = *chain.front();
  if (top.node.cached) {
    generation = top.cache;  // the layer records share their device buffers; the latents are small
    generation.result = top.node.result;
    if (chain.size() == 1) return generation;
  }

  const auto t0 = Clock::now();
  const int runs = static_cast<int>(chain.size()) - (top.node.cached ? 1 : 0) + 1;  // + the edit asked for
  int run = 0;
  if (!top.node.cached) generation = sd_.generate_cached(top.node.request, part_of(progress, run++, runs, t0), stop);
  for (std::size_t i = 1; i < chain.size(); ++i) {
    // The stored request holds any painted mask, so the replay recomputes the same mask and pixels.
    auto replayed = sd_.edit(generation, *chain[i]->node.edit, part_of(progress, run++, runs, t0), stop);
    generation = std::move(replayed.generation);
    replayed_mask = std::move(replayed.mask);
  }
  regeneration.nodes = run;
  regeneration.ms = ms_since(t0);
  // The user has seen the stored image; a rebuild on a deterministic backend gives the same bytes,
  // but a node adopted from another device or build may not.
  GenerationResult rebuilt = std::move(generation.result);
  generation.result = chain.back()->node.result;
  const Image8& stored = generation.result.image;
  regeneration.image_differs = rebuilt.image.width != stored.width || rebuilt.image.height != stored.height ||
                               rebuilt.image.pixels != stored.pixels;
  if (generation.result.latents.empty()) {  // adopted with its image only
    generation.result.latents = std::move(rebuilt.latents);
    generation.result.decoded = std::move(rebuilt.decoded);
  }
  return generation;
}

NodeId EditSession::add(Entry e) {
  const NodeId id = next_id_++;
  e.node.id = id;
  e.last_used = ++clock_;
  entries_.emplace(id, std::move(e));
  return id;
}

void EditSession::store_cache(Entry& e, CachedGeneration&& generation) {
  generation.result = {};  // the node holds it
  e.cache = std::move(generation);
  e.node.cached = true;
}

void EditSession::remove(NodeId id) {
  const Entry& e = entry(id);
  if (e.node.parent) std::erase(entry(*e.node.parent).children, id);
  std::vector<NodeId> pending{id};
  while (!pending.empty()) {
    const NodeId next = pending.back();
    pending.pop_back();
    const auto it = entries_.find(next);
    pending.insert(pending.end(), it->second.children.begin(), it->second.children.end());
    entries_.erase(it);
  }
}

CacheBytes EditSession::record_bytes() const {
  // An edit's record holds its base's tensors where the mask left a layer untouched, so memory is
  // counted per piece, once, not per node: evicting one of the two frees only what is its own.
  CacheByteCounter counter;
  for (const auto& [id, e] : entries_)
    if (e.node.cached) counter.add(e.cache.steps);
  return counter.bytes();
}

std::size_t EditSession::cache_bytes() const {
  std::size_t latents = 0;
  for (const auto& [id, e] : entries_)
    if (e.node.cached)
      for (const auto& x : e.cache.latents) latents += x.size() * sizeof(float);
  return latents + record_bytes().total();
}

std::size_t EditSession::cache_bytes_device() const { return record_bytes().device; }

std::size_t EditSession::cache_bytes_host() const { return record_bytes().host; }

void EditSession::enforce_device_budget(NodeId newest) {
  if (!device_budget_) return;
  // Oldest use first, the newest node last; within a node its first steps, which an edit reads last
  // (or never: detection steps read no record).
  std::vector<Entry*> order;
  for (auto& [id, e] : entries_)
    if (e.node.cached && id != newest) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) { return a->last_used < b->last_used; });
  if (entries_.contains(newest) && entry(newest).node.cached) order.push_back(&entry(newest));
  for (Entry* e : order)
    for (auto& step : e->cache.steps) {
      if (cache_bytes_device() <= *device_budget_) return;
      spill_to_host(sd_.backend(), step);  // queued on the copy stream; nothing waits for it
    }
}

void EditSession::enforce_budget(NodeId newest, std::optional<NodeId> base) {
  while (cache_bytes() > budget_) {
    Entry* victim = nullptr;
    for (auto& [id, e] : entries_)
      if (e.node.cached && id != newest && id != base && (!victim || e.last_used < victim->last_used)) victim = &e;
    if (!victim && base && entry(*base).node.cached) victim = &entry(*base);
    if (!victim) return;  // the newest node alone exceeds the budget: it stays, or it could not be edited
    victim->cache.latents = {};
    victim->cache.steps = {};
    victim->node.cached = false;
  }
}

}  // namespace fisedit
