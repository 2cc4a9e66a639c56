// Model loading: diffusers folders (single, sharded, transformers-5 text-encoder names) and single-file
// LDM checkpoints give bit-identical tensors; bad input gives clear errors.
#include "core/error.h"
#include "io/model_loader.h"
#include "io/safetensors.h"
#include "test_support.h"

#include <QtTest>

#include <cstring>
#include <fstream>

using namespace fisedit;
namespace fs = std::filesystem;

namespace {

// Same names, dtypes, shapes and bytes.
void compare_weights(const WeightMap& a, const WeightMap& b, const char* component) {
  for (const auto& [name, t] : a)
    QVERIFY2(b.count(name), (std::string(component) + ": '" + name + "' missing from the second map").c_str());
  for (const auto& [name, t] : b)
    QVERIFY2(a.count(name), (std::string(component) + ": unexpected '" + name + "'").c_str());
  for (const auto& [name, t] : a) {
    const auto& u = b.at(name);
    const auto where = std::string(component) + " '" + name + "'";
    QVERIFY2(t.dtype() == u.dtype(), (where + ": dtype differs").c_str());
    QVERIFY2(t.shape() == u.shape(), (where + ": shape " + shape_to_string(t.shape()) + " vs " + shape_to_string(u.shape())).c_str());
    QVERIFY2(std::memcmp(t.data(), u.data(), t.nbytes()) == 0, (where + ": bytes differ").c_str());
  }
}

// A pipeline folder in `dir` whose components link to `reference` except those listed in `own`.
void link_pipeline(const fs::path& reference, const fs::path& dir, std::initializer_list<const char*> own) {
  fs::create_directories(dir);
  fs::create_symlink(reference / "model_index.json", dir / "model_index.json");
  for (const auto* c : {"unet", "vae", "text_encoder", "tokenizer", "scheduler"}) {
    if (std::find_if(own.begin(), own.end(), [&](const char* o) { return std::strcmp(o, c) == 0; }) != own.end()) {
      fs::create_directories(dir / c);
      for (const auto& entry : fs::directory_iterator(reference / c))
        if (entry.path().extension() == ".json") fs::create_symlink(entry.path(), dir / c / entry.path().filename());
    } else {
      fs::create_directory_symlink(reference / c, dir / c);
    }
  }
}

NamedTensors to_named(const WeightMap& w, const std::string& strip = "") {
  NamedTensors out;
  for (const auto& [name, t] : w) out.emplace_back(name.starts_with(strip) ? name.substr(strip.size()) : name, t);
  return out;
}

template <class F>
std::string error_of(F&& f, ErrorCode expected_code) {
  try {
    f();
  } catch (const Error& e) {
    if (e.code() != expected_code) return std::string("wrong code: ") + error_code_name(e.code()) + ": " + e.what();
    return e.what();
  }
  return "no error";
}

#define QVERIFY_CONTAINS(text, part) \
  QVERIFY2(std::string(text).find(part) != std::string::npos, (std::string("message: ") + (text)).c_str())

}  // namespace

class TestModelLoader : public QObject {
  Q_OBJECT

private slots:
  void models_data() {
    QTest::addColumn<QString>("name");
    QTest::newRow("tiny-sd2") << "tiny-sd2";
    QTest::newRow("tiny-sd15") << "tiny-sd15";
  }

  void folder_configs_and_family_data() { models_data(); }
  void folder_configs_and_family() {
    QFETCH(QString, name);
    const auto m = load_model(test::reference_dir() / name.toStdString() / "model");
    const bool sd2 = name == "tiny-sd2";
    QCOMPARE(m.format, ModelFormat::diffusers_folder);
    QCOMPARE(m.family, sd2 ? ModelFamily::sd2 : ModelFamily::sd1);
    QCOMPARE(m.prediction(), sd2 ? PredictionType::v_prediction : PredictionType::epsilon);
    QCOMPARE(m.unet.num_attention_heads, sd2 ? (std::vector<int>{2, 4, 4, 4}) : (std::vector<int>{8, 8, 8, 8}));
    QCOMPARE(m.unet.use_linear_projection, sd2);
    QCOMPARE(m.unet.upcast_attention, sd2);
    QCOMPARE(m.text_encoder.num_hidden_layers, sd2 ? 23 : 4);
    QCOMPARE(m.text_encoder.hidden_act, std::string(sd2 ? "gelu" : "quick_gelu"));
    QVERIFY(m.tokenizer_dir.has_value());
    QVERIFY(!m.text_encoder_weights.count("text_model.embeddings.position_ids"));
    QCOMPARE(dominant_dtype(m.unet_weights), DType::f16);
  }

  void single_file_matches_folder_data() { models_data(); }
  void single_file_matches_folder() {
    QFETCH(QString, name);
    const auto ref = test::reference_dir() / name.toStdString();
    const auto folder = load_model(ref / "model");
    const auto single = load_model(ref / "single-file.safetensors", {.config_dir = ref / "model"});
    QCOMPARE(single.format, ModelFormat::single_file);
    QCOMPARE(single.family, folder.family);
    QCOMPARE(single.prediction(), folder.prediction());
    QCOMPARE(single.unet.num_attention_heads, folder.unet.num_attention_heads);
    compare_weights(folder.unet_weights, single.unet_weights, "unet");
    compare_weights(folder.vae_weights, single.vae_weights, "vae");
    compare_weights(folder.text_encoder_weights, single.text_encoder_weights, "text encoder");
    QVERIFY(single.tokenizer_dir.has_value());
  }

  void single_file_without_config_data() { models_data(); }
  void single_file_without_config() {
    QFETCH(QString, name);
    const auto ref = test::reference_dir() / name.toStdString();
    const auto folder = load_model(ref / "model");
    const auto single = load_model(ref / "single-file.safetensors");
    const bool sd2 = name == "tiny-sd2";
    // Sizes come from the tensors; head counts and prediction from the SD rules.
    QCOMPARE(single.family, folder.family);
    QCOMPARE(single.prediction(), sd2 ? PredictionType::v_prediction : PredictionType::epsilon);
    QCOMPARE(single.unet.block_out_channels, folder.unet.block_out_channels);
    QCOMPARE(single.unet.layers_per_block, folder.unet.layers_per_block);
    QCOMPARE(single.unet.down_block_types, folder.unet.down_block_types);
    QCOMPARE(single.unet.up_block_types, folder.unet.up_block_types);
    QCOMPARE(single.unet.cross_attention_dim, folder.unet.cross_attention_dim);
    QCOMPARE(single.unet.use_linear_projection, folder.unet.use_linear_projection);
    QCOMPARE(single.unet.num_attention_heads, sd2 ? (std::vector<int>{1, 1, 1, 1}) : (std::vector<int>{8, 8, 8, 8}));
    QCOMPARE(single.vae.block_out_channels, folder.vae.block_out_channels);
    QCOMPARE(single.vae.layers_per_block, folder.vae.layers_per_block);
    QCOMPARE(single.text_encoder.num_hidden_layers, folder.text_encoder.num_hidden_layers);  // SD2: 23 of 24
    QCOMPARE(single.text_encoder.hidden_size, folder.text_encoder.hidden_size);
    QCOMPARE(single.text_encoder.intermediate_size, folder.text_encoder.intermediate_size);
    QVERIFY(!single.tokenizer_dir.has_value());
    QVERIFY(!single.assumptions.empty());
    compare_weights(folder.unet_weights, single.unet_weights, "unet");
    compare_weights(folder.vae_weights, single.vae_weights, "vae");
    compare_weights(folder.text_encoder_weights, single.text_encoder_weights, "text encoder");
  }

  void transformers5_text_encoder_names() {
    const auto ref = test::reference_dir() / "tiny-sd15" / "model";
    test::TempDir dir;
    link_pipeline(ref, dir.path() / "p", {"text_encoder"});
    const auto original = load_model(ref);
    write_safetensors(dir.path() / "p" / "text_encoder" / "model.safetensors",
                      to_named(original.text_encoder_weights, "text_model."));
    const auto loaded = load_model(dir.path() / "p");
    QVERIFY(loaded.text_encoder_weights.count("text_model.encoder.layers.0.mlp.fc1.weight"));
    compare_weights(original.text_encoder_weights, loaded.text_encoder_weights, "text encoder");
  }

  void sharded_weights() {
    const auto ref = test::reference_dir() / "tiny-sd2" / "model";
    test::TempDir dir;
    link_pipeline(ref, dir.path() / "p", {"unet"});
    const auto original = load_model(ref);
    auto all = to_named(original.unet_weights);
    const auto half = all.size() / 2;
    const NamedTensors first(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(half));
    const NamedTensors second(all.begin() + static_cast<std::ptrdiff_t>(half), all.end());
    const auto unet_dir = dir.path() / "p" / "unet";
    write_safetensors(unet_dir / "diffusion_pytorch_model-00001-of-00002.safetensors", first);
    write_safetensors(unet_dir / "diffusion_pytorch_model-00002-of-00002.safetensors", second);
    nlohmann::json index;
    for (const auto& [n, t] : first) index["weight_map"][n] = "diffusion_pytorch_model-00001-of-00002.safetensors";
    for (const auto& [n, t] : second) index["weight_map"][n] = "diffusion_pytorch_model-00002-of-00002.safetensors";
    std::ofstream(unet_dir / "diffusion_pytorch_model.safetensors.index.json") << index.dump();
    compare_weights(original.unet_weights, load_model(dir.path() / "p").unet_weights, "unet");

    // An index that names a tensor its shard lacks is refused.
    index["weight_map"]["not.there"] = "diffusion_pytorch_model-00001-of-00002.safetensors";
    std::ofstream(unet_dir / "diffusion_pytorch_model.safetensors.index.json") << index.dump();
    const auto message = error_of([&] { load_model(dir.path() / "p"); }, ErrorCode::corrupt_file);
    QVERIFY_CONTAINS(message, "'not.there'");
  }

  void errors() {
    const auto ref = test::reference_dir();
    test::TempDir dir;

    QVERIFY_CONTAINS(error_of([&] { load_model(dir / "nothing"); }, ErrorCode::not_found), "no such file or folder");

    fs::create_directories(dir / "empty");
    QVERIFY_CONTAINS(error_of([&] { load_model(dir / "empty"); }, ErrorCode::not_found), "model_index.json is missing");

    link_pipeline(ref / "tiny-sd2" / "model", dir / "novae", {});
    fs::remove(dir / "novae" / "vae");
    QVERIFY_CONTAINS(error_of([&] { load_model(dir / "novae"); }, ErrorCode::not_found), "no vae/ component");

    link_pipeline(ref / "tiny-sd2" / "model", dir / "bin", {"unet"});
    std::ofstream(dir / "bin" / "unet" / "diffusion_pytorch_model.bin") << "pickle";
    QVERIFY_CONTAINS(error_of([&] { load_model(dir / "bin"); }, ErrorCode::unsupported), "pickled .bin");

    std::ofstream(dir / "model.ckpt") << "PK\x03\x04 zip";
    const auto ckpt = error_of([&] { load_model(dir / "model.ckpt"); }, ErrorCode::unsupported);
    QVERIFY_CONTAINS(ckpt, "pickled PyTorch checkpoint");
    QVERIFY_CONTAINS(ckpt, "model.safetensors");  // says what to convert it to

    std::ofstream(dir / "renamed.safetensors") << "PK\x03\x04 zip";
    QVERIFY_CONTAINS(error_of([&] { load_model(dir / "renamed.safetensors"); }, ErrorCode::unsupported), "pickled");

    // A single file cut short.
    {
      std::ifstream in(ref / "tiny-sd15" / "single-file.safetensors", std::ios::binary);
      std::string bytes((std::istreambuf_iterator<char>(in)), {});
      std::ofstream(dir / "cut.safetensors", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    }
    QVERIFY_CONTAINS(error_of([&] { load_model(dir / "cut.safetensors"); }, ErrorCode::corrupt_file), "truncated");

    // The SD1.5 configs do not describe the SD2 checkpoint.
    QVERIFY_CONTAINS(error_of([&] { load_model(ref / "tiny-sd2" / "single-file.safetensors", {.config_dir = ref / "tiny-sd15" / "model"}); },
                              ErrorCode::invalid_argument),
                     "text encoder");
    QVERIFY_CONTAINS(error_of([&] { load_model(ref / "tiny-sd2" / "single-file.safetensors", {.config_dir = dir / "nothing"}); },
                              ErrorCode::not_found),
                     "config folder not found");

    // A safetensors file that is not a Stable Diffusion checkpoint.
    write_safetensors(dir / "other.safetensors", {{"layer.weight", Tensor::zeros(DType::f32, {2, 2})}});
    QVERIFY_CONTAINS(error_of([&] { load_model(dir / "other.safetensors"); }, ErrorCode::corrupt_file), "not a Stable Diffusion checkpoint");

    // A corrupt config.json.
    link_pipeline(ref / "tiny-sd2" / "model", dir / "badcfg", {"unet"});
    fs::remove(dir / "badcfg" / "unet" / "config.json");
    std::ofstream(dir / "badcfg" / "unet" / "config.json") << "{\"block_out_channels\": [32, 64";
    QVERIFY_CONTAINS(error_of([&] { load_model(dir / "badcfg"); }, ErrorCode::corrupt_file), "unet/config.json: not valid JSON");
  }
};

QTEST_GUILESS_MAIN(TestModelLoader)
#include "test_model_loader.moc"
