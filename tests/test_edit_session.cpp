// The history tree of generations and edits on the CPU backend: branches and chains, the cache
// budget (least recently used evicted, the new node and its base spared), an evicted node rebuilt on
// demand to the same bytes, submit()'s choice between an edit and a new root, and errors that leave
// the tree as it was.
#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "pipeline/edit_session.h"
#include "test_support.h"

#include <QtTest>

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
    QVERIFY(s.would_edit(root, changed([](GenerationRequest& r) { r.scheduler = ""; })));  // the model's: ddim
    QVERIFY(!s.would_edit(root, changed([](GenerationRequest& r) { r.seed = 12; })));
    QVERIFY(!s.would_edit(root, changed([](GenerationRequest& r) { r.steps = 7; })));
    QVERIFY(!s.would_edit(root, changed([](GenerationRequest& r) { r.width = 192; })));
    QVERIFY(!s.would_edit(root, changed([](GenerationRequest& r) { r.cfg_scale = 5.0f; })));
    QVERIFY(!s.would_edit(root, changed([](GenerationRequest& r) { r.scheduler = "euler"; })));
    QVERIFY(!s.would_edit(root, changed([](GenerationRequest& r) { r.steps = 0; })));

    const NodeId edited = s.submit(root, changed([](GenerationRequest& r) { r.prompt = "a photo of a dog"; }));
    QCOMPARE(*s.node(edited).parent, root);
    QCOMPARE(s.node(edited).edit->mask_mode, MaskMode::automatic);
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
};

QTEST_GUILESS_MAIN(TestEditSession)
#include "test_edit_session.moc"
