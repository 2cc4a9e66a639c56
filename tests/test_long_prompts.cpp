// Prompts longer than 75 tokens (issue 14): chunks of 75 and BREAK, the CFG batch's chunk padding
// (repetition leaves the image as it was), the tail of a long prompt acting on the image, the 8-chunk
// limit, and edits whose prompt crosses a chunk boundary, with and without attention control.
#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "pipeline/generation.h"
#include "text/prompt_weights.h"
#include "test_support.h"

#include <QtTest>

#include <algorithm>
#include <cmath>
#include <string>

using namespace fisedit;

namespace {

std::string words(const char* word, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += (i ? " " : "") + std::string(word);
  return s;
}

int max_pixel_difference(const Image8& a, const Image8& b) {
  int worst = 0;
  for (std::size_t i = 0; i < a.pixels.size(); ++i) worst = std::max(worst, std::abs(int(a.pixels[i]) - int(b.pixels[i])));
  return worst;
}

}  // namespace

class TestLongPrompts : public QObject {
  Q_OBJECT

  CpuBackend backend_;
  std::shared_ptr<const LoadedModel> sd2_ =
      std::make_shared<LoadedModel>(load_model(test::reference_dir() / "tiny-sd2" / "model"));
  const ClipTokenizer tokenizer_ = ClipTokenizer::from_folder(test::reference_dir() / "tiny-sd2" / "model" / "tokenizer");
  const ClipTokenizer& tokenizer() const { return tokenizer_; }

  GenerationRequest request(const std::string& prompt, const std::string& negative = "") const {
    return GenerationRequest{prompt, negative, 5, 4, 7.5f, "ddim", 64, 64, std::nullopt};
  }

private slots:
  // 75 content tokens a chunk, each encoded as BOS, tokens, EOS, padding; a short prompt is one chunk,
  // the tokenizer's own encoding.
  void chunks_of_75() {
    QCOMPARE(encoder_chunks(tokenizer(), "a photo of a cat").size(), std::size_t{1});
    QCOMPARE(encoder_chunks(tokenizer(), "a photo of a cat")[0].ids, tokenizer().encode("a photo of a cat"));
    QCOMPARE(encoder_chunks(tokenizer(), words("dog", 75)).size(), std::size_t{1});
    const auto chunks = encoder_chunks(tokenizer(), "(cat:1.2) " + words("dog", 100));  // 101 tokens
    QCOMPARE(chunks.size(), std::size_t{2});
    for (const auto& c : chunks) {
      QCOMPARE(c.ids.size(), std::size_t{ClipTokenizer::kMaxLength});
      QCOMPARE(c.ids.front(), tokenizer().bos_id());
    }
    QCOMPARE(chunks[0].ids[76], tokenizer().eos_id());        // 75 tokens, then EOS
    QCOMPARE(chunks[1].ids[27], tokenizer().eos_id());        // the other 26, then EOS and padding
    QCOMPARE(chunks[1].ids[28], tokenizer().pad_id());
    QCOMPARE(chunks[0].weights[1], 1.2f);
    QVERIFY(!chunks[1].weighted());
  }

  // BREAK (capitals, a word of its own) starts a new chunk; at the ends or doubled it makes no empty one.
  void break_keyword() {
    QCOMPARE(encoder_chunks(tokenizer(), "a red cat BREAK a blue sky").size(), std::size_t{2});
    QCOMPARE(encoder_chunks(tokenizer(), "a red cat BREAK a blue sky")[1].ids,
             tokenizer().encode("a blue sky"));
    QCOMPARE(encoder_chunks(tokenizer(), "(a red cat BREAK a blue sky:1.3)").size(), std::size_t{2});
    QCOMPARE(encoder_chunks(tokenizer(), "BREAK a cat BREAK").size(), std::size_t{1});
    QCOMPARE(encoder_chunks(tokenizer(), "a cat BREAK BREAK a dog").size(), std::size_t{2});
    QCOMPARE(encoder_chunks(tokenizer(), "a BREAKfast, break, Break").size(), std::size_t{1});
    const auto content = prompt_tokens(tokenizer(), words("dog", 70) + " BREAK " + words("cat", 80));
    const auto chunks = chunk_tokens(content);
    QCOMPARE(chunks.size(), std::size_t{3});  // 70 | 75 | 5
    QCOMPARE(chunks[0].ids.size(), std::size_t{70});
    QCOMPARE(chunks[1].ids.size(), std::size_t{75});
    QCOMPARE(chunks[2].ids.size(), std::size_t{5});
  }

  // More than 8 chunks is refused with the count, never cut short in silence.
  void too_long_is_refused() {
    QCOMPARE(encoder_chunks(tokenizer(), words("dog", 600)).size(), std::size_t{8});
    try {
      encoder_chunks(tokenizer(), words("dog", 601));
      QFAIL("a 601-token prompt was accepted");
    } catch (const Error& e) {
      QCOMPARE(e.code(), ErrorCode::invalid_argument);
      QVERIFY2(std::string(e.what()).find("601 tokens") != std::string::npos, e.what());
    }
  }

  // The text encoder's output is 77 rows a chunk, each chunk encoded on its own.
  void encoding_concatenates_chunks() {
    StableDiffusion sd(sd2_, backend_);
    const auto one = sd.encode_prompt("a red cat");
    const auto two = sd.encode_prompt("a red cat BREAK a blue sky");
    QCOMPARE(one.dim(1), std::int64_t{77});
    QCOMPARE(two.dim(1), std::int64_t{154});
    const auto a = one.to_f32(), b = two.to_f32();
    QVERIFY(test::relative_l2(std::vector<float>(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(a.size())), a) < 1e-6);
    const auto sky = sd.encode_prompt("a blue sky").to_f32();
    QVERIFY(test::relative_l2(std::vector<float>(b.begin() + static_cast<std::ptrdiff_t>(a.size()), b.end()), sky) < 1e-6);
  }

  // The words past 75 tokens act on the image (they used to be dropped).
  void tail_acts_on_the_image() {
    StableDiffusion sd(sd2_, backend_);
    const std::string head = words("cat", 75);
    const auto short_image = sd.generate(request(head)).image;
    const auto long_image = sd.generate(request(head + " a blue sky with clouds")).image;
    QVERIFY2(max_pixel_difference(short_image, long_image) > 8,
             qPrintable(QString::number(max_pixel_difference(short_image, long_image))));
  }

  // A prompt and negative prompt of different chunk counts share the CFG batch by repetition when one
  // count divides the other: keys repeated are the same attention, so "N BREAK N" as the negative
  // prompt (two chunks, the prompt repeated beside it) gives the image of "N".
  void repetition_keeps_the_image() {
    StableDiffusion sd(sd2_, backend_);
    const auto plain = sd.generate(request("a red cat", "blurry")).image;
    const auto repeated = sd.generate(request("a red cat", "blurry BREAK blurry")).image;
    QVERIFY2(max_pixel_difference(plain, repeated) <= 1, qPrintable(QString::number(max_pixel_difference(plain, repeated))));
    // Three chunks beside two: the prompt is padded with the empty prompt's chunk, and runs.
    const auto padded = sd.generate(request("a BREAK b BREAK c", "x BREAK y")).image;
    QCOMPARE(padded.width, 64);
  }

  // The negative prompts' encodings are remembered (the last few): whatever was remembered, each
  // negative prompt conditions as its own encoding, and another one changes the image.
  void remembered_negative_prompts_stay_apart() {
    StableDiffusion sd(sd2_, backend_);
    const auto first = sd.generate(request("a red cat", "blurry")).image;
    QVERIFY(max_pixel_difference(first, sd.generate(request("a red cat", "dark")).image) > 0);
    for (const char* other : {"a", "b", "c", "d", "e"}) sd.generate(request("a red cat", other));  // more than it keeps
    QVERIFY(sd.generate(request("a red cat", "blurry")).image.pixels == first.pixels);
    QVERIFY(sd.generate(request("a red cat", "blurry")).image.pixels == first.pixels);  // remembered this time
  }

  // An edit whose prompt grows past 75 tokens: the context grows a chunk, the edit runs (with attention
  // control aligning tokens across the chunks) and keeps everything outside its region.
  void edit_across_a_chunk_boundary() {
    StableDiffusion sd(sd2_, backend_);
    const std::string head = words("cat", 70);
    const auto base = sd.generate_cached(request(head + " on a red sofa"));
    for (const bool control : {false, true}) {
      EditRequest e;
      e.prompt = head + " on a blue sofa in a garden with flowers and trees";  // 81 tokens: two chunks
      e.attention_control = control;
      const auto edit = sd.edit(base, e);
      QCOMPARE(edit.stats.unconditional_reused_steps, 0);  // the negative context grew a chunk too
      const auto& region = edit.mask;
      QVERIFY(!region.values.empty());
      const auto& a = base.latents.back();
      const auto& b = edit.generation.latents.back();
      int changed_outside = 0;
      for (std::size_t i = 0; i < a.size(); ++i)
        changed_outside += region.values[i % region.values.size()] == 0.0f && a[i] != b[i];
      QCOMPARE(changed_outside, 0);
      // And back to one chunk from the edited generation.
      EditRequest back;
      back.prompt = head + " on a green sofa";
      back.attention_control = control;
      QVERIFY(!sd.edit(edit.generation, back).generation.latents.empty());
    }
  }
};

QTEST_GUILESS_MAIN(TestLongPrompts)
#include "test_long_prompts.moc"
