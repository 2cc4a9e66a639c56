#pragma once
// The edit-fidelity benchmark (issue 10): seeded prompt edits of the toy world, each with a known
// ground-truth region, run through the engine's edit path four ways and read back with the toy-world
// analyser, which needs no learned model. What it answers: does an edit do what the new words say,
// does it leave the rest alone, does the detected region match the region the words are about, and
// what does it cost against a new generation. fisedit-bench --stages fidelity runs the full set;
// tests/test_fidelity.cpp runs a prefix of it with thresholds, through the same functions.
#include "io/image_file.h"
#include "pipeline/generation.h"
#include "toyworld/analyse.h"
#include "toyworld/world.h"

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fisedit::fidelity {

enum class EditKind : std::uint8_t { recolour, reshape, resize, add, remove, background };
inline constexpr int kEditKinds = 6;
std::string_view kind_name(EditKind k);

struct EditCase {
  int index = 0;
  EditKind kind = EditKind::recolour;
  toyworld::Scene base, edited;
  int cell = -1;           // the edited object's cell; -1 for a background change
  std::uint64_t seed = 0;  // of the base generation (and of the baseline's)
};

// The first `n` cases of the set drawn from `seed` (one toyworld::Rng stream): case i is of kind
// i % 6, so every prefix of 6k cases holds k of each kind, and a shorter run is the start of a longer
// one. Base scenes as random_scene draws them with no hard-to-see pair; no edit makes one.
// The training data came from seed 20261206 by another derivation, so the images are held out; of the
// prompts, those of two or three objects almost never occur in training, while one-object prompts
// (about 13,000 in all) mostly do, with other images.
std::vector<EditCase> make_cases(int n, std::uint64_t seed);

// Where the edit should act, at image size (one channel, 255 inside): the edited object's cell, or for
// a background change every pixel outside the objects' cells.
Image8 truth_region(const EditCase& c);

enum class Method : std::uint8_t { automatic, automatic_attention, painted, regenerate };
inline constexpr int kMethods = 4;
std::string_view method_name(Method m);  // auto, auto_attention, painted, regenerate
inline constexpr std::array<Method, kMethods> kAllMethods = {Method::automatic, Method::automatic_attention,
                                                             Method::painted, Method::regenerate};

// One method's result on one case. The mask figures are of the edit's latent mask scaled to pixels
// (what the app's "N% re-rendered" counts); the regeneration baseline has none.
struct MethodScore {
  bool ran = false;
  bool success = false;    // the edited cell (or the background) reads as the new prompt says
  bool preserved = false;  // every cell but the edited one reads as it did in the base image (or is it)
  // The same, over the cells the changed region does not touch; none for the baseline, or when the
  // region touches every checked cell.
  std::optional<bool> preserved_outside_mask;
  bool identical_outside_region = true;  // edits: every pixel outside changed_region is the base's
  std::optional<double> iou, outside, fraction;  // edits only; `outside` none for an empty mask
  double ms = 0;
};

// Edit success and preservation of an edited image (what the analyser reads in it) against the base
// image and its reading; with the edit's changed region, preservation over the cells it leaves alone too.
void score_image(const EditCase& c, const Image8& base_image, const toyworld::ImageReading& base, const Image8& edited,
                 const Image8* changed_region, MethodScore& s);

// How well the base generation drew its prompt, as the analyser reads it.
struct BaseQuality {
  bool colours = false;   // every object present in its cell with the right colour
  bool shapes = false;    // ... and the right shape
  bool sizes = false;     // ... and the right size
  bool no_extra = false;  // every other cell empty
  bool background = false;
  bool objects_right = false;  // presence, colour and shape in every cell, and the background (analyse.h)
};
BaseQuality base_quality(const toyworld::Scene& scene, const toyworld::ImageReading& reading);

struct CaseResult {
  EditCase edit_case;
  double base_ms = 0;  // the cached generation an edit starts from
  BaseQuality quality;
  std::array<MethodScore, kMethods> methods{};
};

// The images of one case, for the example triples.
struct CaseImages {
  Image8 base;
  std::array<Image8, kMethods> edits{};
  std::array<Image8, kMethods> changed_regions{};  // edits only
};

struct Options {
  int cases = 200;
  std::uint64_t seed = 7001;
  int steps = 20;
  float cfg = 7.5f;
  std::string scheduler;  // empty: the model's own (the toy-world model's is DDIM)
  // The automatic edits' EditRequest knobs, to compare method choices (the painted edit keeps the truth).
  int mask_margin = kDefaultMaskMargin;
  int detect_steps = -1;  // -1: the engine's default (default_detection_steps: one per 20 steps)
  bool regenerate = true;  // run the baseline (a fresh generation with the new prompt)
  bool warmup = true;      // one untimed generation and edit first (first-call work on a GPU)
  std::filesystem::path examples_dir;  // empty: none written
  int examples_per_kind = 3;
  std::function<void(int done, int total)> progress;
};

// The base generation (256x256, cached) and its edits, scored. Fills `images` when given.
CaseResult run_case(StableDiffusion& sd, const EditCase& c, const Options& options, CaseImages* images = nullptr);

// Every case of `options`, then the summary: {"settings", "summary", "cases"} (fidelity_report.cpp).
nlohmann::json run_fidelity(StableDiffusion& sd, const Options& options);

nlohmann::json to_json(const CaseResult& r);
// Shares and means per method, overall and per kind; generation quality; timings.
nlohmann::json summarize(const std::vector<CaseResult>& results);
// base | the edit's changed region over the base, the ground truth outlined | edit (a), side by side.
Image8 example_triple(const CaseImages& images, const EditCase& c);

// The table fisedit-bench prints for results.fidelity.
void print_fidelity(const nlohmann::json& fidelity, std::FILE* out);

}  // namespace fisedit::fidelity
