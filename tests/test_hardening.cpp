// Issue 15's bad inputs, each made small and fed through the real loaders: no crash, no hang, no NaN
// image, and an error that names the file and the key or tensor.
#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "io/image_file.h"
#include "io/image_read.h"
#include "io/json_file.h"
#include "io/model_loader.h"
#include "io/request_json.h"
#include "io/safetensors.h"
#include "pipeline/generation.h"
#include "sched/scheduler.h"
#include "text/clip_tokenizer.h"
#include "test_support.h"

#include <nlohmann/json.hpp>

#include <QElapsedTimer>
#include <QtTest>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <sys/stat.h>
#include <unistd.h>

using namespace fisedit;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

template <class F>
std::string error_of(F&& f, ErrorCode expected_code) {
  try {
    f();
  } catch (const Error& e) {
    if (e.code() != expected_code) return std::string("wrong code: ") + error_code_name(e.code()) + ": " + e.what();
    return e.what();
  } catch (const std::exception& e) {
    return std::string("not a fisedit::Error: ") + e.what();
  }
  return "no error";
}

#define QVERIFY_CONTAINS(text, part) \
  QVERIFY2(std::string(text).find(part) != std::string::npos, (std::string("message: ") + (text)).c_str())

fs::path model_dir() { return test::reference_dir() / "tiny-sd15" / "model"; }

// A copy of the tiny SD1.5 pipeline: weights linked, JSON files and tokenizer files copied so tests can
// change them.
fs::path copy_pipeline(const fs::path& dir) {
  const auto ref = model_dir();
  const auto out = dir / "p";
  fs::create_directories(out);
  fs::copy_file(ref / "model_index.json", out / "model_index.json");
  for (const auto* c : {"unet", "vae", "text_encoder", "tokenizer", "scheduler"}) {
    fs::create_directories(out / c);
    for (const auto& entry : fs::directory_iterator(ref / c)) {
      if (entry.path().extension() == ".safetensors")
        fs::create_symlink(entry.path(), out / c / entry.path().filename());
      else
        fs::copy_file(entry.path(), out / c / entry.path().filename());
    }
  }
  return out;
}

json read(const fs::path& p) { return read_json_file(p); }
void write_text(const fs::path& p, const std::string& text) {
  fs::remove(p);
  std::ofstream(p, std::ios::binary) << text;
}
void write(const fs::path& p, const json& j) { write_text(p, j.dump(1)); }

std::string nested(std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

// Every tensor of a safetensors file, to be changed and written back.
NamedTensors all_tensors(const fs::path& file) {
  const auto f = SafetensorsFile::open(file);
  NamedTensors out;
  for (const auto& info : f.tensors()) out.emplace_back(info.name, f.tensor(info));
  return out;
}

// A PNG whose header claims `w` x `h` pixels of 16-bit RGBA, with a tiny (invalid) image data chunk:
// only the header may be read. CRCs are left zero (stb does not check them).
std::string png_header_only(std::uint32_t w, std::uint32_t h) {
  std::string s = "\x89PNG\r\n\x1a\n";
  auto u32 = [&](std::uint32_t v) { for (int sh = 24; sh >= 0; sh -= 8) s.push_back(static_cast<char>((v >> sh) & 0xff)); };
  u32(13);
  s += "IHDR";
  u32(w);
  u32(h);
  s += std::string("\x10\x06\x00\x00\x00", 5);  // 16 bits, RGBA, deflate, no filter, no interlace
  u32(0);
  u32(2);
  s += "IDAT";
  s += std::string("\x78\x9c", 2);
  u32(0);
  u32(0);
  s += "IEND";
  u32(0);
  return s;
}

}  // namespace

class TestHardening : public QObject {
  Q_OBJECT

private slots:
  void initTestCase() { QVERIFY(fs::is_directory(model_dir())); }

  // SIGSEGV: JSON nested 150,000 deep (copies of the parsed value recursed off the stack).
  void deep_json_is_refused_data() {
    QTest::addColumn<QString>("file");
    QTest::newRow("scheduler_config.json") << "scheduler/scheduler_config.json";
    QTest::newRow("unet config") << "unet/config.json";
    QTest::newRow("tokenizer_config.json") << "tokenizer/tokenizer_config.json";
  }
  void deep_json_is_refused() {
    QFETCH(QString, file);
    test::TempDir dir;
    const auto p = copy_pipeline(dir.path());
    const auto path = p / file.toStdString();
    write_text(path, "{\"a\": " + nested(150000) + "}");
    const auto message = error_of(
        [&] {
          const auto m = load_model(p);
          ClipTokenizer::from_folder(*m.tokenizer_dir);
        },
        ErrorCode::corrupt_file);
    QVERIFY_CONTAINS(message, path.string());
    QVERIFY_CONTAINS(message, "nested deeper than");
    // Strings holding brackets do not count as nesting.
    QVERIFY_CONTAINS(error_of([&] { parse_json_text("[\"" + std::string(1000, '[') + "\"]", "x"); }, ErrorCode::corrupt_file), "no error");
  }

  void deep_tokenizer_json_is_refused() {
    test::TempDir dir;
    fs::create_directories(dir / "tok");
    write_text(dir / "tok" / "tokenizer.json", nested(150000));
    const auto message = error_of([&] { ClipTokenizer::from_folder(dir / "tok"); }, ErrorCode::corrupt_file);
    QVERIFY_CONTAINS(message, "tokenizer.json: JSON nested deeper than");
  }

  // SIGFPE: a down-sampler's key renamed to input block 0 made the blocks per level 0.
  void single_file_downsampler_at_block_zero() {
    test::TempDir dir;
    auto tensors = all_tensors(test::reference_dir() / "tiny-sd15" / "single-file.safetensors");
    bool renamed = false;
    for (auto& [name, t] : tensors) {
      const std::string from = "model.diffusion_model.input_blocks.3.0.op.";
      if (name.starts_with(from)) {
        name = "model.diffusion_model.input_blocks.0.0.op." + name.substr(from.size());
        renamed = true;
      }
    }
    QVERIFY(renamed);
    write_safetensors(dir / "renamed.safetensors", tensors);
    const auto message = error_of([&] { load_model(dir / "renamed.safetensors"); }, ErrorCode::corrupt_file);
    QVERIFY_CONTAINS(message, "renamed.safetensors");
    QVERIFY_CONTAINS(message, "input_blocks.0.0.op.");
  }

  // A 16384x16384 16-bit PNG (4 GB decoded) is refused from its header, quickly.
  void huge_png_refused_from_header() {
    test::TempDir dir;
    write_text(dir / "huge.png", png_header_only(16384, 16384));
    QElapsedTimer timer;
    timer.start();
    const auto message = error_of([&] { read_png(dir / "huge.png"); }, ErrorCode::corrupt_file);
    QVERIFY_CONTAINS(message, "huge.png: image is 16384x16384 pixels, larger than the 4096x4096");
    QVERIFY(timer.elapsed() < 2000);
    write_text(dir / "junk.png", "\x89PNG\r\n\x1a\nnot really");
    QVERIFY_CONTAINS(error_of([&] { read_png(dir / "junk.png"); }, ErrorCode::corrupt_file), "junk.png: truncated PNG chunk");
    write_text(dir / "text.png", "hello");
    QVERIFY_CONTAINS(error_of([&] { read_png(dir / "text.png"); }, ErrorCode::corrupt_file), "text.png: not a PNG file");
  }

  // An image file of gigabytes (here a sparse file past the 256 MiB limit, with a PNG or JPEG signature)
  // is refused by its size, naming the file, before it is read into memory.
  void huge_image_file_refused_by_its_size() {
    test::TempDir dir;
    for (const auto& [name, head] : {std::pair{"big.png", std::string("\x89PNG\r\n\x1a\n")},
                                     std::pair{"big.jpg", std::string("\xff\xd8\xff\xe0")}}) {
      write_text(dir / name, head);
      fs::resize_file(dir / name, kMaxImageFileBytes + 1);
      QElapsedTimer timer;
      timer.start();
      const auto message = error_of([&] { read_image(dir / name); }, ErrorCode::corrupt_file);
      QVERIFY_CONTAINS(message, std::string(name) + ": 268435457 bytes, larger than the 256 MiB");
      QVERIFY(timer.elapsed() < 2000);
    }
    QVERIFY_CONTAINS(error_of([&] { read_png_text(dir / "big.png"); }, ErrorCode::corrupt_file), "big.png: 268435457 bytes");
  }

  // fuzz_png (CI, 2026-12-06): 73 bytes whose last chunk claims 1.2 GB of image data; stb grew its buffer
  // to that before reading, so the file took 1.2 GB. Chunks are now checked against the file first.
  void png_chunk_longer_than_the_file() {
    test::TempDir dir;
    write_text(dir / "oom.png", std::string("\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x01\x00\x00\x00\x00\x01\x08\x00\x00\x00\x00\x3a\x7e\x9b\x55\x00\x00\x00\x0a\x49\x44\x41\x54\x78\x00\x00\x00\x49\x45\x4e\x44\x00\x00\x3a\x7e\x9b\x55\x49\x00\x00\x00\x49\x44\x41\x54\x78\x00\x01\x00\x49\x45\xae\x42\x60\x82", 73));
    QVERIFY_CONTAINS(error_of([&] { read_png(dir / "oom.png"); }, ErrorCode::corrupt_file),
                     "oom.png: truncated PNG chunk (it claims 1224736768 bytes");
  }

  // fuzz_png under UBSan: an empty IDAT chunk first made stb memcpy from a null buffer. Empty data
  // chunks are dropped before stb reads the file; this one is also cut short at its end.
  void png_empty_data_chunk() {
    test::TempDir dir;
    write_text(dir / "empty-idat.png", std::string("\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x00\x01\x00\x00\x00\x01\x08\x00\x00\x00\x00\x3a\x7e\x9b\x55\x00\x00\x00\x00\x49\x44\x41\x54\x78\x9c\x0f\x27\x00\x00\x00\x00\x00\x00\x00\x00\xa4\x71\x00\x00\x00\x00\x49\x45\x4e\x44\xae\x42\x60\x82", 67));
    QVERIFY_CONTAINS(error_of([&] { read_png(dir / "empty-idat.png"); }, ErrorCode::corrupt_file),
                     "empty-idat.png: truncated PNG chunk");
    // The same chunk cut short at the end of the file (no CRC): refused before stb reads it.
    write_text(dir / "cut.png", std::string("\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x00\x81\x00\x00\x00\x01\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x49\x44\x41\x54", 41));
    QVERIFY_CONTAINS(error_of([&] { read_png(dir / "cut.png"); }, ErrorCode::corrupt_file),
                     "cut.png: truncated PNG chunk (8 bytes where a chunk needs at least 12)");
  }

  // Quadratic: 100,000 added tokens took minutes; refused at once with the count.
  void too_many_added_tokens() {
    test::TempDir dir;
    const auto ref = model_dir() / "tokenizer";
    json tok;
    tok["model"] = {{"type", "BPE"}, {"vocab", read(ref / "vocab.json")}, {"merges", json::array()}, {"end_of_word_suffix", "</w>"}};
    {
      std::ifstream in(ref / "merges.txt");
      std::string line;
      while (std::getline(in, line))
        if (!line.empty() && !line.starts_with("#version")) tok["model"]["merges"].push_back(line);
    }
    tok["added_tokens"] = json::array();
    for (int i = 0; i < 100000; ++i) tok["added_tokens"].push_back({{"id", 50000 + i}, {"content", "<tok" + std::to_string(i) + ">"}});
    fs::create_directories(dir / "tok");
    write(dir / "tok" / "tokenizer.json", tok);
    QElapsedTimer timer;
    timer.start();
    const auto message = error_of([&] { ClipTokenizer::from_folder(dir / "tok"); }, ErrorCode::corrupt_file);
    QVERIFY_CONTAINS(message, "tokenizer.json");
    QVERIFY_CONTAINS(message, "100000 added tokens, more than the 1000");
    QVERIFY(timer.elapsed() < 10000);
    // A few hundred are fine (and load in linear time).
    tok["added_tokens"] = json::array();
    for (int i = 0; i < 500; ++i) tok["added_tokens"].push_back({{"id", 50000 + i}, {"content", "<tok" + std::to_string(i) + ">"}});
    write(dir / "tok" / "tokenizer.json", tok);
    const auto tokenizer = ClipTokenizer::from_folder(dir / "tok");
    QVERIFY(!tokenizer.encode_unpadded("<tok499> a cat").empty());
  }

  void merges_txt_is_a_directory() {
    test::TempDir dir;
    fs::create_directories(dir / "tok" / "merges.txt");
    fs::copy_file(model_dir() / "tokenizer" / "vocab.json", dir / "tok" / "vocab.json");
    const auto message = error_of([&] { ClipTokenizer::from_folder(dir / "tok"); }, ErrorCode::corrupt_file);
    QVERIFY_CONTAINS(message, "merges.txt");
    QVERIFY_CONTAINS(message, "not a regular file");
  }

  // Config fields: strict types, ranges, known names; the message names the file and the key.
  void config_fields_data() {
    QTest::addColumn<QString>("file");
    QTest::addColumn<QString>("key");
    QTest::addColumn<QString>("value");  // JSON
    QTest::addColumn<QString>("expected");
    QTest::newRow("float where an integer is meant") << "text_encoder/config.json" << "num_hidden_layers" << "1.5" << "\"num_hidden_layers\" must be an integer, not 1.5";
    QTest::newRow("boolean where an integer is meant") << "text_encoder/config.json" << "num_hidden_layers" << "true" << "must be an integer, not true";
    QTest::newRow("integer that wraps") << "unet/config.json" << "cross_attention_dim" << "4294967328" << "\"cross_attention_dim\" is 4294967328, too large";
    QTest::newRow("integer list with a float") << "unet/config.json" << "block_out_channels" << "[32, 64.5]" << "\"block_out_channels[1]\" must be an integer";
    QTest::newRow("string where a number is meant") << "vae/config.json" << "scaling_factor" << "\"0.18\"" << "\"scaling_factor\" must be a number";
    QTest::newRow("negative norm_eps") << "unet/config.json" << "norm_eps" << "-1e-5" << "\"norm_eps\" must be greater than 0";
    QTest::newRow("zero layer_norm_eps") << "text_encoder/config.json" << "layer_norm_eps" << "0" << "\"layer_norm_eps\" must be greater than 0";
    QTest::newRow("zero scaling_factor") << "vae/config.json" << "scaling_factor" << "0" << "\"scaling_factor\" must be greater than 0";
    QTest::newRow("beta_start above beta_end") << "scheduler/scheduler_config.json" << "beta_start" << "0.5" << "0 < beta_start < beta_end < 1";
    QTest::newRow("beta_end of 1") << "scheduler/scheduler_config.json" << "beta_end" << "1.0" << "0 < beta_start < beta_end < 1";
    QTest::newRow("300 million timesteps") << "scheduler/scheduler_config.json" << "num_train_timesteps" << "300000000" << "\"num_train_timesteps\" is 300000000, outside 1..10000";
    QTest::newRow("unknown scheduler class") << "scheduler/scheduler_config.json" << "_class_name" << "\"MagicScheduler\"" << "\"MagicScheduler\" is not a diffusers scheduler";
    QTest::newRow("unknown beta schedule") << "scheduler/scheduler_config.json" << "beta_schedule" << "\"cubic\"" << "beta_schedule \"cubic\" is not supported";
    QTest::newRow("trained betas of the wrong type") << "scheduler/scheduler_config.json" << "trained_betas" << "[\"a\"]" << "\"trained_betas[0]\" must be a number";
    QTest::newRow("huge sample_size") << "unet/config.json" << "sample_size" << "100000" << "\"sample_size\" is 100000, outside";
    QTest::newRow("groups that do not divide the channels") << "vae/config.json" << "norm_num_groups" << "3" << "\"norm_num_groups\" is 3, which does not divide 32";
    QTest::newRow("huge layer count") << "text_encoder/config.json" << "num_hidden_layers" << "1000000" << "\"num_hidden_layers\" is 1000000, outside";
    // Sampler options of the wrong type were read as their defaults ("yes" ran without clipping).
    QTest::newRow("sampler flag a string") << "scheduler/scheduler_config.json" << "clip_sample" << "\"yes\"" << "\"clip_sample\" must be true or false, not \"yes\"";
    QTest::newRow("sampler number a string") << "scheduler/scheduler_config.json" << "clip_sample_range" << "\"1.0\"" << "\"clip_sample_range\" must be a number";
    QTest::newRow("solver order a float") << "scheduler/scheduler_config.json" << "solver_order" << "2.5" << "\"solver_order\" must be an integer, not 2.5";
    QTest::newRow("sigmas type a number") << "scheduler/scheduler_config.json" << "final_sigmas_type" << "0" << "\"final_sigmas_type\" must be a string";
    QTest::newRow("zero-SNR flag a number") << "scheduler/scheduler_config.json" << "rescale_betas_zero_snr" << "1" << "\"rescale_betas_zero_snr\" must be true or false";
  }
  void config_fields() {
    QFETCH(QString, file);
    QFETCH(QString, key);
    QFETCH(QString, value);
    QFETCH(QString, expected);
    test::TempDir dir;
    const auto p = copy_pipeline(dir.path());
    const auto path = p / file.toStdString();
    auto config = read(path);
    config[key.toStdString()] = json::parse(value.toStdString());
    write(path, config);
    const auto message = error_of([&] { load_model(p); }, file.startsWith("scheduler") && (key == "_class_name" || key == "beta_schedule") ? ErrorCode::unsupported : ErrorCode::corrupt_file);
    QVERIFY_CONTAINS(message, path.string());
    QVERIFY_CONTAINS(message, expected.toStdString());
  }

  // The samplers themselves refuse an option of the wrong type (a config made in code, or an option
  // the loader's list does not name), instead of running with the default.
  void sampler_options_of_the_wrong_type() {
    auto config = load_model(model_dir()).scheduler;
    config.class_name = "DDIMScheduler";
    config.raw["clip_sample"] = "yes";
    QVERIFY_CONTAINS(error_of([&] { make_scheduler("ddim", config); }, ErrorCode::corrupt_file), "scheduler_config.json: \"clip_sample\" must be true or false, not \"yes\"");
    config.raw["clip_sample"] = true;
    config.raw["clip_sample_range"] = "2";
    QVERIFY_CONTAINS(error_of([&] { make_scheduler("ddim", config); }, ErrorCode::corrupt_file), "\"clip_sample_range\" must be a number, not \"2\"");
    config.class_name = "DPMSolverMultistepScheduler";
    config.raw["lower_order_final"] = 0;
    QVERIFY_CONTAINS(error_of([&] { make_scheduler("dpmpp2m", config); }, ErrorCode::corrupt_file), "\"lower_order_final\" must be true or false, not 0");
    config.raw["lower_order_final"] = nullptr;  // null is the default, as diffusers writes it
    QVERIFY_CONTAINS(error_of([&] { make_scheduler("dpmpp2m", config); }, ErrorCode::corrupt_file), "no error");
  }

  // A tokenizer that gives ids the text encoder has no embedding for, or an encoder with fewer positions
  // than a prompt's 77 tokens, is refused when the pipeline is made, naming both files (it was an
  // out-of-range embedding lookup at the first prompt that used such a token).
  void tokenizer_beyond_the_text_encoder() {
    test::TempDir dir;
    const auto p = copy_pipeline(dir.path());
    auto vocab = read(p / "tokenizer" / "vocab.json");
    vocab["zebracorn</w>"] = 60000;
    write(p / "tokenizer" / "vocab.json", vocab);
    CpuBackend backend;
    const auto model = std::make_shared<const LoadedModel>(load_model(p));
    const auto message = error_of([&] { StableDiffusion sd(model, backend); }, ErrorCode::corrupt_file);
    QVERIFY_CONTAINS(message, (p / "tokenizer" / "vocab.json").string() + " and " + (p / "text_encoder" / "config.json").string());
    QVERIFY_CONTAINS(message, "token ids up to 60000, but the text encoder has embeddings for ids 0..49407 (vocab_size 49408)");
    // A special token outside the vocabulary gets the next id: one past the encoder's table.
    vocab.erase("zebracorn</w>");
    write(p / "tokenizer" / "vocab.json", vocab);
    auto special = read(p / "tokenizer" / "tokenizer_config.json");
    special["pad_token"] = "<|mypad|>";
    write(p / "tokenizer" / "tokenizer_config.json", special);
    QVERIFY_CONTAINS(error_of([&] { StableDiffusion sd(model, backend); }, ErrorCode::corrupt_file), "token ids up to 49408");
    fs::copy_file(model_dir() / "tokenizer" / "tokenizer_config.json", p / "tokenizer" / "tokenizer_config.json",
                  fs::copy_options::overwrite_existing);

    // Weights and config agreeing on 64 positions: consistent, but a prompt is 77 tokens.
    const auto weights = p / "text_encoder" / "model.safetensors";
    auto tensors = all_tensors(weights);
    for (auto& [name, t] : tensors)
      if (name.ends_with("position_embedding.weight")) {
        auto values = t.to_f32();
        values.resize(static_cast<std::size_t>(64 * t.shape()[1]));
        t = Tensor::from_f32({64, t.shape()[1]}, values);
      }
    fs::remove(weights);
    write_safetensors(weights, tensors);
    auto config = read(p / "text_encoder" / "config.json");
    config["max_position_embeddings"] = 64;
    write(p / "text_encoder" / "config.json", config);
    const auto short_model = std::make_shared<const LoadedModel>(load_model(p));
    QVERIFY_CONTAINS(error_of([&] { StableDiffusion sd(short_model, backend); }, ErrorCode::corrupt_file),
                     "a prompt is 77 tokens, but the text encoder has 64 positions (max_position_embeddings)");
  }

  // The request reader (project files, history.json, --stats-json) shares the config readers' strict
  // number reading: a CFG scale beyond float's range (1e39 reads as infinity) or NaN is refused.
  void request_numbers_must_be_finite() {
    json request = {{"prompt", "a cat"}, {"negative_prompt", ""}, {"seed", 1}, {"steps", 4},
                    {"cfg_scale", 7.5},   {"scheduler", "ddim"},  {"width", 64}, {"height", 64}};
    QCOMPARE(generation_request_from_json(request, "node 1").cfg_scale, 7.5f);
    request["cfg_scale"] = 1e39;
    QVERIFY_CONTAINS(error_of([&] { generation_request_from_json(request, "node 1"); }, ErrorCode::invalid_argument),
                     "node 1: \"cfg_scale\" must be a finite number within float's range, got 1e+39");
    request["cfg_scale"] = std::numeric_limits<double>::quiet_NaN();
    QVERIFY_CONTAINS(error_of([&] { generation_request_from_json(request, "node 1"); }, ErrorCode::invalid_argument),
                     "\"cfg_scale\" must be a finite number within float's range, got infinity");
    // Integers as before: one that wraps is refused, by the same helper the config reader uses.
    request["cfg_scale"] = 7;
    request["steps"] = 4294967300u;
    QVERIFY_CONTAINS(error_of([&] { generation_request_from_json(request, "node 1"); }, ErrorCode::invalid_argument),
                     "\"steps\" is out of range: 4294967300");
  }

  // A weights file truncated (or rewritten in place) after it was mapped: the first read past its new
  // end raised SIGBUS and took the app down. Now the read completes (zeros) and the reader's check
  // names the file.
  void truncated_while_mapped() {
    test::TempDir dir;
    const auto file = dir / "vae.safetensors";
    fs::copy_file(model_dir() / "vae" / "diffusion_pytorch_model.safetensors", file);
    QVERIFY(fs::file_size(file) > 65536);
    const auto opened = SafetensorsFile::open(file);
    opened.check_intact();
    QVERIFY(::truncate(file.c_str(), 16) == 0);
    double sum = 0;
    for (const auto& info : opened.tensors())
      for (const float v : opened.tensor(info).to_f32()) sum += v;  // no SIGBUS
    QCOMPARE(sum, 0.0);  // every page past the truncation reads as zeros
    QVERIFY_CONTAINS(error_of([&] { opened.check_intact(); }, ErrorCode::io),
                     file.string() + ": the file was truncated or changed while fisedit was reading it");
    // Opened after the truncation: the header check names the file.
    QVERIFY_CONTAINS(error_of([&] { SafetensorsFile::open(file); }, ErrorCode::corrupt_file), file.string());

    // Through the loader: the VAE's file truncated between loading the model and making the pipeline
    // (which reads every weight again to upload it): a clear error, not a crash.
    const auto p = copy_pipeline(dir / "m");
    const auto vae = p / "vae" / "diffusion_pytorch_model.safetensors";
    fs::remove(vae);
    fs::copy_file(model_dir() / "vae" / "diffusion_pytorch_model.safetensors", vae);
    const auto model = std::make_shared<const LoadedModel>(load_model(p));
    QVERIFY(::truncate(vae.c_str(), 100) == 0);
    CpuBackend backend;
    QVERIFY_CONTAINS(error_of([&] { StableDiffusion sd(model, backend); }, ErrorCode::io),
                     vae.string() + ": the file was truncated or changed while fisedit was reading it");
    // A file deleted (not truncated) while mapped stays readable: the model is made and generates.
    const auto q = copy_pipeline(dir / "n");
    const auto deleted = q / "vae" / "diffusion_pytorch_model.safetensors";
    fs::remove(deleted);
    fs::copy_file(model_dir() / "vae" / "diffusion_pytorch_model.safetensors", deleted);
    const auto intact = std::make_shared<const LoadedModel>(load_model(q));
    fs::remove(deleted);
    StableDiffusion sd(intact, backend);
    GenerationRequest r;
    r.prompt = "a cat";
    r.steps = 2;
    r.width = r.height = 64;
    QCOMPARE(sd.generate(sd.resolve(r)).image.width, 64);
  }

  // One NaN or infinity in a weight is found at load, naming the tensor; fp16 and fp32.
  void non_finite_weight_data() {
    QTest::addColumn<bool>("half");
    QTest::addColumn<float>("value");
    QTest::newRow("f16 NaN") << true << std::numeric_limits<float>::quiet_NaN();
    QTest::newRow("f16 infinity") << true << std::numeric_limits<float>::infinity();
    QTest::newRow("f32 NaN") << false << std::numeric_limits<float>::quiet_NaN();
  }
  void non_finite_weight() {
    QFETCH(bool, half);
    QFETCH(float, value);
    test::TempDir dir;
    const auto p = copy_pipeline(dir.path());
    const auto file = p / "vae" / "diffusion_pytorch_model.safetensors";
    auto tensors = all_tensors(file);
    auto it = std::find_if(tensors.begin(), tensors.end(), [&](const auto& nt) {
      return nt.second.numel() > 0 && (!half || nt.second.dtype() == DType::f16);
    });
    QVERIFY(it != tensors.end());
    auto& [name, t] = *it;
    const std::string bad = name;
    if (half) {
      auto copy = Tensor::zeros(DType::f16, t.shape());
      std::memcpy(const_cast<std::byte*>(copy.data()), t.data(), t.nbytes());
      const std::uint16_t bits = std::isnan(value) ? 0x7e00 : 0x7c00;
      std::memcpy(const_cast<std::byte*>(copy.data()) + 2 * (t.numel() - 1), &bits, 2);
      t = copy;
    } else {
      auto values = t.to_f32();
      values.back() = value;
      t = Tensor::from_f32(t.shape(), values);
    }
    fs::remove(file);
    write_safetensors(file, tensors);
    const auto message = error_of([&] { load_model(p); }, ErrorCode::corrupt_file);
    QVERIFY_CONTAINS(message, (p / "vae").string() + ": VAE weight '" + bad + "' holds NaN or infinity");
    // In a single-file checkpoint, the file.
    auto single = all_tensors(test::reference_dir() / "tiny-sd15" / "single-file.safetensors");
    for (auto& [n, st] : single)
      if (n == "first_stage_model.decoder.conv_in.bias") {
        auto values = st.to_f32();
        values[3] = value;
        st = Tensor::from_f32(st.shape(), values);
      }
    write_safetensors(dir / "nan.safetensors", single);
    QVERIFY_CONTAINS(error_of([&] { load_model(dir / "nan.safetensors"); }, ErrorCode::corrupt_file),
                     (dir / "nan.safetensors").string() + ": VAE weight 'decoder.conv_in.bias' holds NaN or infinity (element 3 of");
  }

  // Weights that overflow in the U-Net stop the generation at the step, not with a black image.
  void non_finite_latents_stop_the_generation() {
    test::TempDir dir;
    const auto p = copy_pipeline(dir.path());
    const auto file = p / "unet" / "diffusion_pytorch_model.safetensors";
    auto tensors = all_tensors(file);
    bool scaled = false;
    for (auto& [name, t] : tensors)
      if (name == "conv_out.weight") {
        auto values = t.to_f32();
        for (auto& v : values) v = v < 0 ? -3e38f : 3e38f;  // finite, but the sums overflow
        t = Tensor::from_f32(t.shape(), values);
        scaled = true;
      }
    QVERIFY(scaled);
    fs::remove(file);
    write_safetensors(file, tensors);
    CpuBackend backend;
    StableDiffusion sd(std::make_shared<const LoadedModel>(load_model(p)), backend);
    GenerationRequest r;
    r.prompt = "a cat";
    r.steps = 2;
    r.width = r.height = 64;
    const auto message = error_of([&] { sd.generate(sd.resolve(r)); }, ErrorCode::invalid_argument);
    QVERIFY_CONTAINS(message, "step 1 of 2: the U-Net's prediction turned NaN or infinite");

    // NaN in the initial noise is refused before anything runs; so are sizes beyond the limit.
    auto plain = std::make_shared<const LoadedModel>(load_model(model_dir()));
    StableDiffusion sd2(plain, backend);
    auto noisy = r;
    std::vector<float> noise(4 * 8 * 8, 0.5f);
    noise[7] = std::numeric_limits<float>::quiet_NaN();
    noisy.initial_noise = Tensor::from_f32({1, 4, 8, 8}, noise);
    QVERIFY_CONTAINS(error_of([&] { sd2.resolve(noisy); }, ErrorCode::invalid_argument), "initial noise holds NaN");
    // A CFG scale that overflows the decoder: an error, not a black PNG.
    auto extreme = r;
    extreme.cfg_scale = 1e38f;
    QVERIFY_CONTAINS(error_of([&] { sd2.generate(sd2.resolve(extreme)); }, ErrorCode::invalid_argument), "NaN or inf");
    auto huge = r;
    huge.width = 8;
    huge.height = 2147483640;
    QVERIFY_CONTAINS(error_of([&] { sd2.resolve(huge); }, ErrorCode::invalid_argument), "larger than the 4096x4096");
  }

  // An edit that turns non-finite stops at its step with the same message, instead of compositing NaN
  // into the image. Here the base's cached starting latents hold one NaN (what a damaged cache would
  // bring): the generation was sound, the edit's first step is not.
  void non_finite_edit_stops_at_its_step() {
    CpuBackend backend;
    StableDiffusion sd(std::make_shared<const LoadedModel>(load_model(model_dir())), backend);
    GenerationRequest r;
    r.prompt = "a cat";
    r.steps = 4;
    r.width = r.height = 64;
    auto base = sd.generate_cached(sd.resolve(r));
    base.latents[0][5] = std::numeric_limits<float>::quiet_NaN();
    EditRequest e;
    e.prompt = "a dog";
    const auto message = error_of([&] { sd.edit(base, e); }, ErrorCode::invalid_argument);
    QVERIFY_CONTAINS(message, "step 1 of 4: the U-Net's prediction turned NaN or infinite");
  }

  // Output files: regular files only, and the reason in the message.
  void output_paths() {
    test::TempDir dir;
    const Image8 image{8, 8, 1, std::vector<std::uint8_t>(64, 128)};
    fs::create_directories(dir / "folder");
    QVERIFY_CONTAINS(error_of([&] { write_png(dir / "folder", image); }, ErrorCode::io), "folder: cannot write there: it is a folder");
    QVERIFY(::mkfifo((dir / "fifo").c_str(), 0600) == 0);
    QVERIFY_CONTAINS(error_of([&] { write_png(dir / "fifo", image); }, ErrorCode::io), "fifo: cannot write there: it is a FIFO");
    QVERIFY(fs::is_fifo(dir / "fifo"));
    write_text(dir / "victim", "keep me");
    fs::create_symlink(dir / "victim", dir / "link.png");
    QVERIFY_CONTAINS(error_of([&] { write_png(dir / "link.png", image); }, ErrorCode::io), "it is a symbolic link");
    QVERIFY(fs::is_symlink(dir / "link.png"));
    QVERIFY_CONTAINS(error_of([&] { check_output_path("/dev/null"); }, ErrorCode::io), "/dev/null: cannot write there: it is a device");
    // A regular file is replaced whole; nothing is left beside it.
    write_png(dir / "ok.png", image);
    write_png(dir / "ok.png", image);
    QCOMPARE(read_png(dir / "ok.png").pixels, image.pixels);
    int entries = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path())) ++entries;
    QCOMPARE(entries, 5);  // folder, fifo, victim, link.png, ok.png
  }
};

QTEST_GUILESS_MAIN(TestHardening)
#include "test_hardening.moc"
