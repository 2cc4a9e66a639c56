// The history tree of generations and edits on the CPU backend: branches and chains, the cache
// budget (least recently used evicted, the new node and its base spared), an evicted node rebuilt on
// demand to the same bytes, nodes adopted without caches (a project read back) rebuilt by replay to
// the same bytes, submit()'s choice between an edit and a new root, and errors that leave the tree as
// it was.
#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "pipeline/edit_session.h"
#include "test_support.h"

#include <QtTest>

#include <cmath>
#include <limits>

using namespace fisedit;

namespace {

constexpr std::size_t kUnlimited = std::numeric_limits<std::size_t>::max();

GenerationRequest base_request(std::uint64_t seed = 11) {
  return GenerationRequest{"a photo of a cat", "", seed, 6, 7.5f, "ddim", 128, 128, std::nullopt};
}

EditRequest prompt_edit(const std::string& prompt) { return EditRequest{.prompt = prompt}; }

template <class F>
void expect_error(F&& f, ErrorCode code, const char* message) {
  try {
    f();
    QFAIL("no error");
  } catch (const Error& error) {
    QCOMPARE(error.code(), code);
    QVERIFY2(QString(error.what()).contains(message), error.what());
  }
}

// What a project file keeps of a node: no cache, no latents, the image only.
EditSession::Node stored_copy(const EditSession::Node& made, std::optional<NodeId> parent) {
  EditSession::Node n;
  n.parent = parent;
  n.request = made.request;
  n.edit = made.edit;
  n.result.image = made.result.image;
  n.changed_region = made.changed_region;
  n.stats = made.stats;
  return n;
}

Image8 painted_rectangle() {
  Image8 painted{128, 128, 1, std::vector<std::uint8_t>(128 * 128, 0)};
  for (int y = 16; y < 80; ++y)
    for (int x = 40; x < 120; ++x) painted.pixels[static_cast<std::size_t>(y) * 128 + x] = 255;
  return painted;
}

std::vector<bool> cached_flags(const EditSession& s, const std::vector<NodeId>& ids) {
  std::vector<bool> flags;
  for (const NodeId id : ids) flags.push_back(s.node(id).cached);
  return flags;
}

}  // namespace

class TestEditSession : public QObject {
  Q_OBJECT

  CpuBackend backend_;
  StableDiffusion sd_{std::make_shared<LoadedModel>(load_model(test::reference_dir() / "tiny-sd2" / "model")), backend_};

private slots:
  void branches_and_chains() {
    EditSession s(sd_, kUnlimited);
    const NodeId root = s.generate(base_request());
    const NodeId hat = s.edit(root, prompt_edit("a photo of a cat wearing a hat"));
    const NodeId dog = s.edit(root, prompt_edit("a photo of a dog"));
    const NodeId red = s.edit(hat, prompt_edit("a photo of a cat wearing a red hat"));
    QCOMPARE(s.roots(), std::vector<NodeId>{root});
    QCOMPARE(s.children(root), (std::vector<NodeId>{hat, dog}));
    QCOMPARE(s.children(hat), std::vector<NodeId>{red});
    QVERIFY(!s.node(root).parent && !s.node(root).edit && !s.node(root).mask);
    QCOMPARE(*s.node(red).parent, hat);
    QCOMPARE(s.node(red).request.prompt, std::string("a photo of a cat wearing a red hat"));
    QCOMPARE(s.node(red).request.seed, std::uint64_t{11});
    QCOMPARE(s.node(red).edit->prompt, s.node(red).request.prompt);
    QCOMPARE(cached_flags(s, {root, hat, dog, red}), std::vector<bool>(4, true));
    QCOMPARE(s.node(red).regeneration.nodes, 0);
    // The chained edit changed its own parent's image only inside its region.
    const auto& region = s.node(red).changed_region.pixels;
    const auto& before = s.node(hat).result.image.pixels;
    const auto& after = s.node(red).result.image.pixels;
    for (std::size_t p = 0; p < region.size(); ++p)
      if (region[p] == 0)
        for (std::size_t c = 0; c < 3; ++c) QCOMPARE(after[3 * p + c], before[3 * p + c]);

    const auto bytes = s.cache_bytes();
    s.remove(hat);
    QCOMPARE(s.children(root), std::vector<NodeId>{dog});
    QVERIFY(!s.contains(hat) && !s.contains(red) && s.contains(dog));
    QVERIFY(s.cache_bytes() < bytes);
    s.remove(root);
    QVERIFY(s.roots().empty() && s.cache_bytes() == 0);
  }

  // The throwaway edit after a generation (what the app runs on GPUs before the first edit) edits a
  // centred twentieth of the latent through the detection and sparse route, and changes nothing: the
  // tree, the caches' bytes and the next edit's result are what they are without it.
  void preparing_editing_changes_nothing() {
    EditSession plain(sd_, kUnlimited), prepared(sd_, kUnlimited);
    const NodeId a = plain.generate(base_request());
    const NodeId b = prepared.generate(base_request());
    const auto bytes = prepared.cache_bytes();
    const EditStats stats = prepared.prepare_editing(b);
    QVERIFY2(std::abs(stats.edit_fraction - 0.05) < 0.01, qPrintable(QString::number(stats.edit_fraction)));
    QVERIFY(stats.detect_steps > 0 && stats.detect_ms > 0 && stats.sparse_ms > 0);
    QCOMPARE(prepared.cache_bytes(), bytes);
    QVERIFY(prepared.children(b).empty());
    const NodeId a1 = plain.edit(a, prompt_edit("a photo of a cat wearing a hat"));
    const NodeId b1 = prepared.edit(b, prompt_edit("a photo of a cat wearing a hat"));
    QVERIFY(prepared.node(b1).result.latents.to_f32() == plain.node(a1).result.latents.to_f32());
    QVERIFY(prepared.node(b1).result.image.pixels == plain.node(a1).result.image.pixels);
    // A node without its cache has nothing to prepare with.
    EditSession none(sd_, 0);
    const NodeId x = none.generate(base_request(1));
    none.generate(base_request(2));
    expect_error([&] { none.prepare_editing(x); }, ErrorCode::invalid_argument, "no activation cache");
  }

  void least_recently_used_is_evicted() {
    std::size_t one = 0;
    {
      EditSession probe(sd_, kUnlimited);
      probe.generate(base_request());
      one = probe.cache_bytes();
    }
    QVERIFY(one > 0);
    const std::size_t budget = 2 * one;  // two nodes, not three
    EditSession s(sd_, budget);
    const NodeId a = s.generate(base_request(1));
    const NodeId b = s.generate(base_request(2));
    QCOMPARE(cached_flags(s, {a, b}), (std::vector<bool>{true, true}));
    const NodeId c = s.generate(base_request(3));
    QCOMPARE(cached_flags(s, {a, b, c}), (std::vector<bool>{false, true, true}));
    QVERIFY(s.cache_bytes() <= budget);
    // Editing b uses it: c, now the least recently used, goes instead of the base.
    const NodeId b1 = s.edit(b, prompt_edit("a photo of a cat wearing a hat"));
    QCOMPARE(cached_flags(s, {a, b, c, b1}), (std::vector<bool>{false, true, false, true}));
    QVERIFY(s.cache_bytes() <= budget);
    // An evicted node is rebuilt to be edited, and keeps its cache afterwards.
    const NodeId a1 = s.edit(a, prompt_edit("a photo of a dog"));
    QCOMPARE(s.node(a1).regeneration.nodes, 1);
    QVERIFY(s.node(a1).regeneration.ms > 0);
    QCOMPARE(cached_flags(s, {a, b, c, b1, a1}), (std::vector<bool>{true, false, false, false, true}));
    QVERIFY(s.cache_bytes() <= budget);
    // Evicted nodes keep what the history shows.
    QCOMPARE(s.node(c).result.image.pixels.size(), std::size_t{128 * 128 * 3});

    // A budget of 0 keeps only the newest node, the base of an edit included.
    EditSession none(sd_, 0);
    const NodeId x = none.generate(base_request(1));
    const NodeId y = none.generate(base_request(2));
    QCOMPARE(cached_flags(none, {x, y}), (std::vector<bool>{false, true}));
    QCOMPARE(none.cache_bytes(), one);
    const NodeId y1 = none.edit(y, prompt_edit("a photo of a dog"));
    QCOMPARE(cached_flags(none, {x, y, y1}), (std::vector<bool>{false, false, true}));
    QVERIFY(none.cache_bytes() <= one);
  }

  void rebuilt_nodes_edit_to_the_same_bytes() {
    // A painted mask in the chain: the replay must reuse the stored one.
    Image8 painted{128, 128, 1, std::vector<std::uint8_t>(128 * 128, 0)};
    for (int y = 16; y < 80; ++y)
      for (int x = 40; x < 120; ++x) painted.pixels[static_cast<std::size_t>(y) * 128 + x] = 255;
    EditRequest first{.prompt = "a photo of a cat wearing a hat", .mask_mode = MaskMode::intersect, .painted_mask = painted};
    const auto second = prompt_edit("a photo of a cat wearing a red hat");

    EditSession kept(sd_, kUnlimited);
    const NodeId k1 = kept.edit(kept.generate(base_request()), first);
    const NodeId k2 = kept.edit(k1, second);

    EditSession evicting(sd_, 0);
    const NodeId root = evicting.generate(base_request());
    const NodeId e1 = evicting.edit(root, first);
    evicting.edit(e1, prompt_edit("a photo of a dog"));  // evicts e1: now neither e1 nor its root is cached
    QVERIFY(!evicting.node(root).cached && !evicting.node(e1).cached);
    const NodeId e2 = evicting.edit(e1, second);
    QCOMPARE(evicting.node(e2).regeneration.nodes, 2);  // the root generated, e1 replayed

    const auto& a = kept.node(k2);
    const auto& b = evicting.node(e2);
    QVERIFY(a.result.image.pixels == b.result.image.pixels);
    QVERIFY(a.result.latents.to_f32() == b.result.latents.to_f32());
    QCOMPARE(a.mask->values, b.mask->values);
    QCOMPARE(kept.node(k1).regeneration.nodes, 0);
    // And both are the engine's own chain: the session hands an edit everything the cache holds.
    const auto raw = sd_.edit(sd_.edit(sd_.generate_cached(base_request()), first).generation, second);
    QVERIFY(raw.generation.result.image.pixels == a.result.image.pixels);
  }

  void adopted_nodes_rebuild_to_the_same_bytes() {
    const EditRequest first{.prompt = "a photo of a cat wearing a hat", .mask_mode = MaskMode::intersect,
                            .painted_mask = painted_rectangle()};
    const auto second = prompt_edit("a photo of a cat wearing a red hat");
    EditSession made(sd_, kUnlimited);
    const NodeId m0 = made.generate(base_request());
    const NodeId m1 = made.edit(m0, first);
    const NodeId m2 = made.edit(m1, second);

    EditSession opened(sd_, kUnlimited);
    const NodeId a0 = opened.adopt(stored_copy(made.node(m0), std::nullopt));
    const NodeId a1 = opened.adopt(stored_copy(made.node(m1), a0));
    const NodeId a2 = opened.adopt(stored_copy(made.node(m2), a1));
    QCOMPARE(opened.roots(), std::vector<NodeId>{a0});
    QCOMPARE(opened.children(a0), std::vector<NodeId>{a1});
    QCOMPARE(opened.children(a1), std::vector<NodeId>{a2});
    QCOMPARE(cached_flags(opened, {a0, a1, a2}), std::vector<bool>(3, false));
    QVERIFY(!opened.node(a2).mask);  // a project keeps the image-sized changed region only
    QCOMPARE(opened.cache_bytes(), std::size_t{0});
    QVERIFY(opened.would_edit(a2, [] { auto r = base_request(); r.prompt = "a dog"; return r; }()));

    // Editing the adopted leaf: the root generated again, both edits replayed (the painted mask
    // included), then the edit asked for; the same bytes as in the session that made them.
    const auto third = prompt_edit("a photo of a cat wearing a blue hat");
    const NodeId a3 = opened.edit(a2, third);
    const NodeId m3 = made.edit(m2, third);
    QCOMPARE(opened.node(a3).regeneration.nodes, 3);
    QVERIFY(!opened.node(a3).regeneration.image_differs);
    QVERIFY(opened.node(a3).result.image.pixels == made.node(m3).result.image.pixels);
    QVERIFY(opened.node(a3).result.latents.to_f32() == made.node(m3).result.latents.to_f32());
    QCOMPARE(opened.node(a3).mask->values, made.node(m3).mask->values);
    QVERIFY(opened.node(a3).changed_region.pixels == made.node(m3).changed_region.pixels);
    // The rebuilt node keeps its cache and has its latents now; an adopted sibling branch works too.
    QCOMPARE(cached_flags(opened, {a0, a1, a2, a3}), (std::vector<bool>{false, false, true, true}));
    QVERIFY(opened.node(a2).result.latents.to_f32() == made.node(m2).result.latents.to_f32());
    QCOMPARE(opened.node(a2).mask->values, made.node(m2).mask->values);
    const NodeId b1 = opened.edit(a1, prompt_edit("a photo of a cat wearing a crown"));
    QCOMPARE(opened.node(b1).regeneration.nodes, 2);
    QVERIFY(opened.node(b1).result.image.pixels ==
            made.node(made.edit(m1, prompt_edit("a photo of a cat wearing a crown"))).result.image.pixels);
    QCOMPARE(opened.children(a1), (std::vector<NodeId>{a2, b1}));
    opened.remove(a1);
    QVERIFY(!opened.contains(a2) && !opened.contains(a3) && !opened.contains(b1));
    QCOMPARE(opened.roots(), std::vector<NodeId>{a0});
  }

  // A stored image the rebuild does not reproduce (made on another device): the edit goes on from
  // the stored image, which it keeps outside its region, and the rebuild says they differ.
  void adopted_image_that_does_not_rebuild_is_reported() {
    EditSession made(sd_, kUnlimited);
    auto stored = stored_copy(made.node(made.generate(base_request())), std::nullopt);
    for (std::size_t p = 0; p < stored.result.image.pixels.size(); p += 97) stored.result.image.pixels[p] ^= 1;
    EditSession opened(sd_, kUnlimited);
    const NodeId root = opened.adopt(stored);
    const NodeId edited = opened.edit(root, prompt_edit("a photo of a dog"));
    QVERIFY(opened.node(edited).regeneration.image_differs);
    QVERIFY(opened.node(root).result.image.pixels == stored.result.image.pixels);
    const auto& region = opened.node(edited).changed_region.pixels;
    const auto& after = opened.node(edited).result.image.pixels;
    int outside = 0;
    for (std::size_t p = 0; p < region.size(); ++p)
      if (region[p] == 0) {
        ++outside;
        for (std::size_t c = 0; c < 3; ++c) QCOMPARE(after[3 * p + c], stored.result.image.pixels[3 * p + c]);
      }
    QVERIFY(outside > 0);
  }

  void adopting_a_node_that_cannot_be_replayed_is_an_error() {
    EditSession made(sd_, kUnlimited);
    const NodeId m0 = made.generate(base_request());
    const NodeId m1 = made.edit(m0, EditRequest{.prompt = "a photo of a dog", .mask_mode = MaskMode::painted,
                                                .painted_mask = painted_rectangle()});
    EditSession s(sd_, kUnlimited);
    const NodeId root = s.adopt(stored_copy(made.node(m0), std::nullopt));
    auto broken = [&](auto change, std::optional<NodeId> parent = std::nullopt) {
      auto n = stored_copy(made.node(parent ? m1 : m0), parent);
      change(n);
      return n;
    };
    using Node = EditSession::Node;
    expect_error([&] { s.adopt(broken([](Node& n) { n.result.image.width = 64; })); }, ErrorCode::invalid_argument, "64x128 image");
    expect_error([&] { s.adopt(broken([](Node& n) { n.request.steps = 0; })); }, ErrorCode::invalid_argument, "steps");
    expect_error([&] { s.adopt(broken([](Node&) {}, NodeId{42})); }, ErrorCode::invalid_argument, "unknown parent node 42");
    expect_error([&] { s.adopt(broken([](Node& n) { n.edit->painted_mask.reset(); }, root)); },
                 ErrorCode::invalid_argument, "painted mask");
    expect_error([&] { s.adopt(broken([](Node& n) { n.edit->painted_mask->width = 64; }, root)); },
                 ErrorCode::invalid_argument, "64x128 painted mask");
    expect_error([&] { s.adopt(broken([](Node& n) { n.request.seed = 12; }, root)); }, ErrorCode::invalid_argument,
                 "other parameters than its parent");
    expect_error([&] { s.adopt(broken([](Node& n) { n.edit->prompt = "a cat"; }, root)); }, ErrorCode::invalid_argument,
                 "other prompts");
    expect_error([&] { s.adopt(broken([](Node& n) { n.edit.reset(); }, root)); }, ErrorCode::invalid_argument,
                 "no edit request");
    QCOMPARE(s.roots(), std::vector<NodeId>{root});
    QVERIFY(s.children(root).empty());
    // The painted edit, whole, replays to the bytes it was made with.
    const NodeId child = s.adopt(stored_copy(made.node(m1), root));
    const NodeId next = s.edit(child, prompt_edit("a photo of a dog in the snow"));
    QVERIFY(!s.node(next).regeneration.image_differs);
    QVERIFY(s.node(next).result.image.pixels ==
            made.node(made.edit(m1, prompt_edit("a photo of a dog in the snow"))).result.image.pixels);
  }

  void submit_edits_when_only_the_prompt_changes() {
    EditSession s(sd_, kUnlimited);
    const NodeId root = s.generate(base_request());
    auto changed = [](auto change) {
      auto r = base_request();
      change(r);
      return r;
    };
    QVERIFY(s.would_edit(root, changed([](GenerationRequest& r) { r.prompt = "a photo of a dog"; })));
    QVERIFY(s.would_edit(root, changed([](GenerationRequest& r) { r.negative_prompt = "blurry"; })));
    QVERIFY(s.would_edit(root, changed([](GenerationRequest& r) {
      r.prompt = "a photo of a dog";
      r.scheduler = "";  // the model's: ddim, as the node's
    })));
    QVERIFY(!s.would_edit(root, base_request()));  // nothing differs: a new image (the same again), not an edit
    QVERIFY(!s.would_edit(root, changed([](GenerationRequest& r) { r.seed = 12; })));
    QVERIFY(!s.would_edit(root, changed([](GenerationRequest& r) { r.steps = 7; })));
    QVERIFY(!s.would_edit(root, changed([](GenerationRequest& r) { r.width = 192; })));
    QVERIFY(!s.would_edit(root, changed([](GenerationRequest& r) { r.cfg_scale = 5.0f; })));
    QVERIFY(!s.would_edit(root, changed([](GenerationRequest& r) { r.scheduler = "euler"; })));
    QVERIFY(!s.would_edit(root, changed([](GenerationRequest& r) { r.steps = 0; })));

    const NodeId edited = s.submit(root, changed([](GenerationRequest& r) { r.prompt = "a photo of a dog"; }));
    QCOMPARE(*s.node(edited).parent, root);
    QCOMPARE(s.node(edited).edit->mask_mode, MaskMode::automatic);
    QVERIFY(!s.node(edited).edit->attention_control);
    QCOMPARE(s.node(edited).stats.attention_control_steps, 0);
    // The edit options reach the edit; the prompts are the request's.
    EditRequest options{.prompt = "ignored", .margin = 1, .attention_control = true};
    const NodeId controlled = s.submit(root, changed([](GenerationRequest& r) { r.prompt = "a photo of a dog"; }), options);
    QCOMPARE(s.node(controlled).edit->prompt, std::string("a photo of a dog"));
    QCOMPARE(s.node(controlled).edit->margin, 1);
    QVERIFY(s.node(controlled).edit->attention_control);
    QCOMPARE(s.node(controlled).stats.attention_control_steps, default_detection_steps(6));
    const NodeId fresh = s.submit(edited, changed([](GenerationRequest& r) { r.seed = 12; }));
    QVERIFY(!s.node(fresh).parent);
    QCOMPARE(s.roots(), (std::vector<NodeId>{root, fresh}));
    expect_error([&] { s.submit(root, changed([](GenerationRequest& r) { r.steps = 0; })); },
                 ErrorCode::invalid_argument, "steps");
  }

  void unknown_nodes_are_errors() {
    EditSession s(sd_, kUnlimited);
    expect_error([&] { s.node(42); }, ErrorCode::invalid_argument, "unknown history node 42");
    expect_error([&] { s.edit(42, prompt_edit("a dog")); }, ErrorCode::invalid_argument, "42");
    expect_error([&] { s.submit(7, base_request()); }, ErrorCode::invalid_argument, "7");
    expect_error([&] { s.would_edit(7, base_request()); }, ErrorCode::invalid_argument, "7");
    expect_error([&] { s.children(3); }, ErrorCode::invalid_argument, "3");
    expect_error([&] { s.remove(3); }, ErrorCode::invalid_argument, "3");
  }

  void cancelling_leaves_the_tree_unchanged() {
    EditSession s(sd_, 0);
    const NodeId first = s.generate(base_request(1));
    const NodeId second = s.generate(base_request(2));
    const auto bytes = s.cache_bytes();
    auto cancel_at = [](std::stop_source& source, int step) {
      return [&source, step](const GenerationProgress& p) {
        if (p.step == step) source.request_stop();
      };
    };
    for (const NodeId base : {second, first}) {  // cached, and evicted (cancelled while rebuilding)
      std::stop_source source;
      expect_error([&] { s.edit(base, prompt_edit("a photo of a dog"), cancel_at(source, 2), source.get_token()); },
                   ErrorCode::cancelled, "cancelled");
    }
    std::stop_source source;
    expect_error([&] { s.generate(base_request(3), cancel_at(source, 2), source.get_token()); }, ErrorCode::cancelled,
                 "cancelled");
    QCOMPARE(s.roots(), (std::vector<NodeId>{first, second}));
    QVERIFY(s.children(first).empty() && s.children(second).empty());
    QCOMPARE(cached_flags(s, {first, second}), (std::vector<bool>{false, true}));
    QCOMPARE(s.cache_bytes(), bytes);
  }

  // Device memory running out in the middle of an edit (a memory limit on the CPU backend, as a GPU's
  // memory is one): an error that says so and what to do, the history and the current image as they
  // were, and the same edit made once the memory is there.
  void out_of_memory_mid_edit_keeps_the_history() {
    struct Unlimit {
      CpuBackend& b;
      ~Unlimit() { b.set_memory_limit(std::nullopt); }
    } unlimit{backend_};
    EditSession s(sd_, kUnlimited);
    const NodeId root = s.generate(base_request());
    const auto image = s.node(root).result.image.pixels;
    const auto cache = s.cache_bytes();
    // What the edit needs above what the session holds: measured by making it once and removing it.
    const std::size_t before = backend_.memory_in_use();
    backend_.reset_memory_peak();
    const NodeId probe = s.edit(root, prompt_edit("a photo of a dog"));
    const auto edited_image = s.node(probe).result.image.pixels;
    const std::size_t needed = backend_.memory_peak() - before;
    s.remove(probe);
    const std::size_t held = backend_.memory_in_use();  // what the pipeline keeps once it has edited
    QVERIFY(needed > 0 && held <= before + needed / 4);

    backend_.set_memory_limit(held + needed / 2);
    int steps_done = 0;
    const auto count_steps = [&](const GenerationProgress& p) { steps_done = std::max(steps_done, p.step); };
    try {
      s.edit(root, prompt_edit("a photo of a dog"), count_steps);
      QFAIL("no error");
    } catch (const Error& e) {
      QCOMPARE(e.code(), ErrorCode::out_of_memory);
      const QString message = e.what();
      qInfo("after step %d: %s", steps_done, e.what());
      for (const char* part : {"out of device memory", "use a smaller image size", "fewer cached steps",
                               "the history and the current image are unchanged"})
        QVERIFY2(message.contains(part), e.what());
    }
    QVERIFY2(steps_done >= 1, "the edit ran out of memory before its first step, not in the middle");
    QCOMPARE(s.roots(), std::vector<NodeId>{root});
    QVERIFY(s.children(root).empty());
    QVERIFY(s.node(root).cached);
    QCOMPARE(s.node(root).result.image.pixels, image);
    QCOMPARE(s.cache_bytes(), cache);
    QCOMPARE(backend_.memory_in_use(), held);  // the half-made edit's buffers are freed

    backend_.set_memory_limit(std::nullopt);
    const NodeId edited = s.edit(root, prompt_edit("a photo of a dog"));
    QCOMPARE(s.children(root), std::vector<NodeId>{edited});
    QCOMPARE(s.node(edited).result.image.pixels, edited_image);
  }
};

QTEST_GUILESS_MAIN(TestEditSession)
#include "test_edit_session.moc"
