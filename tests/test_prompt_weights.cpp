// AUTOMATIC1111's emphasis syntax: the parse, the weighted tokens, the rescaled encoder output, and
// generations through it (a prompt with all weights 1 is the plain prompt, bit for bit).
#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "io/model_loader.h"
#include "pipeline/generation.h"
#include "test_support.h"
#include "text/prompt_weights.h"

#include <QtTest>

#include <cmath>
#include <numeric>
#include <random>

using namespace fisedit;

namespace {

using Runs = std::vector<std::pair<std::string, float>>;

Runs runs_of(std::string_view prompt) {
  Runs out;
  for (const auto& run : parse_prompt_weights(prompt)) out.emplace_back(run.text, run.weight);
  return out;
}

const ClipTokenizer& sd2_tokenizer() {
  static const ClipTokenizer tokenizer =
      ClipTokenizer::from_folder(test::reference_dir() / "tiny-sd2" / "model" / "tokenizer");
  return tokenizer;
}

}  // namespace

class TestPromptWeights : public QObject {
  Q_OBJECT

  CpuBackend backend_;

private slots:
  void parse_data() {
    QTest::addColumn<QString>("prompt");
    QTest::addColumn<Runs>("runs");
    const float up = 1.1f, down = 1.0f / 1.1f;
    QTest::newRow("plain") << "a photo of a cat" << Runs{{"a photo of a cat", 1.0f}};
    QTest::newRow("weights") << "a (cat:1.5) on a [sofa]"
                             << Runs{{"a ", 1.0f}, {"cat", 1.5f}, {" on a ", 1.0f}, {"sofa", down}};
    QTest::newRow("nested") << "((cat)), dog" << Runs{{"cat", up * up}, {", dog", 1.0f}};
    QTest::newRow("nested explicit") << "(a (cat:2) b:0.5)" << Runs{{"a ", 0.5f}, {"cat", 1.0f}, {" b", 0.5f}};
    QTest::newRow("spaces around the weight") << "(cat : 0.25 )" << Runs{{"cat ", 0.25f}};
    QTest::newRow("escaped") << "\\(literal\\) \\[x\\] \\\\" << Runs{{"(literal) [x] \\", 1.0f}};
    QTest::newRow("lone backslash") << "a\\b" << Runs{{"ab", 1.0f}};
    QTest::newRow("unclosed") << "a (cat" << Runs{{"a ", 1.0f}, {"cat", up}};
    QTest::newRow("stray closers") << "stray) and ] here" << Runs{{"stray) and ] here", 1.0f}};
    QTest::newRow("colon without a weight") << "(time: noon)" << Runs{{"time: noon", up}};
    QTest::newRow("weight outside brackets") << "cat:1.5)" << Runs{{"cat:1.5)", 1.0f}};
    QTest::newRow("empty") << "" << Runs{{"", 1.0f}};
  }
  void parse() {
    QFETCH(QString, prompt);
    QFETCH(Runs, runs);
    const auto got = runs_of(prompt.toStdString());
    QCOMPARE(got.size(), runs.size());
    for (std::size_t i = 0; i < runs.size(); ++i) {
      QCOMPARE(QString::fromStdString(got[i].first), QString::fromStdString(runs[i].first));
      QVERIFY2(std::abs(got[i].second - runs[i].second) < 1e-6f, qPrintable(QString::number(got[i].second)));
    }
  }

  // Any text parses (and tokenizes): random strings of the syntax's characters never throw, and every
  // weight is a product of the bracket factors and finite explicit weights.
  void any_text_parses() {
    std::mt19937 random(5);
    const std::string alphabet = "()[]:\\ab1.5- ";
    for (int n = 0; n < 2000; ++n) {
      std::string text;
      const int length = static_cast<int>(random() % 24);
      for (int i = 0; i < length; ++i) text += alphabet[random() % alphabet.size()];
      const auto runs = parse_prompt_weights(text);
      QVERIFY(!runs.empty());
      for (const auto& run : runs) QVERIFY2(std::isfinite(run.weight), text.c_str());
      for (const auto& chunk : encoder_chunks(sd2_tokenizer(), text))
        QCOMPARE(chunk.ids.size(), std::size_t{ClipTokenizer::kMaxLength});
    }
  }

  // The tokens are the text's without the syntax; a prompt of weight 1 is the tokenizer's own encoding.
  void tokens() {
    const auto& tokenizer = sd2_tokenizer();
    const auto plain = encoder_chunks(tokenizer, "a photo of a cat").at(0);
    QCOMPARE(plain.ids, tokenizer.encode("a photo of a cat"));
    QVERIFY(!plain.weighted());
    const auto weighted = prompt_tokens(tokenizer, "a photo of a (cat:1.5)");
    const auto unpadded = tokenizer.encode_unpadded("a photo of a cat");
    QCOMPARE(weighted.ids, std::vector<std::int64_t>(unpadded.begin() + 1, unpadded.end() - 1));
    QCOMPARE(weighted.weights, (std::vector<float>{1.0f, 1.0f, 1.0f, 1.0f, 1.5f}));
    // Past 75 content tokens the prompt goes on in a second chunk (test_long_prompts), weights kept.
    std::string long_prompt = "(cat:1.2)";
    for (int i = 0; i < 100; ++i) long_prompt += " dog";
    const auto first = encoder_chunks(tokenizer, long_prompt).at(0);
    QCOMPARE(first.ids.size(), std::size_t{ClipTokenizer::kMaxLength});
    QCOMPARE(first.ids.back(), tokenizer.eos_id());
    QCOMPARE(first.weights[1], 1.2f);
    QCOMPARE(first.weights.back(), 1.0f);
    QCOMPARE(prompt_tokens(tokenizer, long_prompt).ids.size(), std::size_t{101});
  }

  // Rows are weighted, then the whole output keeps its mean.
  void encoder_output_weights() {
    std::vector<float> hidden = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f};  // [3, 2]
    const double mean_before = std::accumulate(hidden.begin(), hidden.end(), 0.0) / 6.0;
    apply_token_weights(hidden, {1.0f, 2.0f, 1.0f});
    const double mean_after = std::accumulate(hidden.begin(), hidden.end(), 0.0) / 6.0;
    QVERIFY(std::abs(mean_after - mean_before) < 1e-6);
    QVERIFY(std::abs(hidden[2] / hidden[0] - 2.0f * 3.0f / 1.0f) < 1e-5f);  // row 1 doubled against row 0
    try {
      apply_token_weights(hidden, {1.0f, 1.0f, 1.0f, 1.0f});  // 6 values are not 4 rows
      QFAIL("mismatched weights were accepted");
    } catch (const Error& e) {
      QCOMPARE(e.code(), ErrorCode::invalid_argument);
    }
    // Nested huge weights overflow: refused with a message, never a NaN image.
    std::string huge = "cat";
    for (int i = 0; i < 8; ++i) huge = "(" + huge + ":100000)";
    const auto tokens = encoder_chunks(sd2_tokenizer(), huge).at(0);
    std::vector<float> rows(tokens.weights.size() * 2, 1.0f);
    try {
      apply_token_weights(rows, tokens.weights);
      QFAIL("an overflowing weight was accepted");
    } catch (const Error& e) {
      QCOMPARE(e.code(), ErrorCode::invalid_argument);
      QVERIFY(QString::fromStdString(e.what()).contains(QStringLiteral("out of range")));
    }
  }

  // Through the pipeline: weight 1 written out is the plain prompt bit for bit; a real weight changes
  // the image.
  void generations() {
    StableDiffusion sd(std::make_shared<LoadedModel>(load_model(test::reference_dir() / "tiny-sd2" / "model")), backend_);
    const auto image = [&](const std::string& prompt) {
      return sd.generate({prompt, "", 7, 4, 7.5f, "ddim", 64, 64, std::nullopt}).image.pixels;
    };
    const auto plain = image("a photo of a cat");
    QVERIFY(image("(a photo of a cat:1.0)") == plain);
    QVERIFY(image("a photo of a (cat:1.6)") != plain);
    QVERIFY(image("a photo of a \\(cat\\)") != plain);  // literal brackets are tokens
  }

  // Changing only a weight is an edit like any other: with attention control (whose token alignment
  // reads the syntax-free tokens) the image changes inside the edit's region only.
  void weight_change_edits() {
    StableDiffusion sd(std::make_shared<LoadedModel>(load_model(test::reference_dir() / "tiny-sd2" / "model")), backend_);
    const auto base = sd.generate_cached({"a photo of a (cat:1.2)", "", 7, 6, 7.5f, "ddim", 128, 128, std::nullopt});
    EditRequest e{.prompt = "a photo of a (cat:1.8)"};
    e.attention_control = true;
    const auto edit = sd.edit(base, e);
    QVERIFY(edit.stats.attention_control_steps > 0);
    int changed_outside = 0, changed = 0;
    for (std::size_t p = 0; p < edit.changed_region.pixels.size(); ++p)
      for (int c = 0; c < 3; ++c) {
        const bool differs = edit.generation.result.image.pixels[p * 3 + c] != base.result.image.pixels[p * 3 + c];
        changed += differs;
        changed_outside += differs && edit.changed_region.pixels[p] == 0;
      }
    QCOMPARE(changed_outside, 0);
    QVERIFY(changed > 0);
  }
};

QTEST_GUILESS_MAIN(TestPromptWeights)
#include "test_prompt_weights.moc"
