// ClipTokenizer against the ids HF transformers produced for the reference prompts (golden.json,
// golden.safetensors), for SD2 (tokenizer.json, pad "!") and SD1.5 (vocab.json + merges.txt only).
#include "core/error.h"
#include "io/safetensors.h"
#include "test_support.h"
#include "text/clip_tokenizer.h"

#include <QtTest>
#include <nlohmann/json.hpp>

#include <atomic>
#include <fstream>
#include <map>
#include <thread>

using fisedit::ClipTokenizer;
using Ids = std::vector<std::int64_t>;
namespace fs = std::filesystem;

namespace {

constexpr int kGoldenPrompts = 8;

fs::path model_dir(const std::string& model) { return fisedit::test::reference_dir() / model; }

// Loading parses ~100k vocabulary entries and merges; one load per model serves all rows.
const ClipTokenizer& tokenizer(const std::string& model) {
  static std::map<std::string, ClipTokenizer> loaded;
  auto it = loaded.find(model);
  if (it == loaded.end())
    it = loaded.emplace(model, ClipTokenizer::from_folder(model_dir(model) / "model" / "tokenizer")).first;
  return it->second;
}

const nlohmann::json& golden(const std::string& model) {
  static std::map<std::string, nlohmann::json> loaded;
  auto it = loaded.find(model);
  if (it == loaded.end()) {
    std::ifstream in(model_dir(model) / "golden.json");
    it = loaded.emplace(model, nlohmann::json::parse(in)).first;
  }
  return it->second;
}

QString show(const Ids& ids) {
  QStringList parts;
  for (const auto id : ids) parts << QString::number(id);
  return "[" + parts.join(", ") + "]";
}

QByteArray mismatch(const Ids& got, const Ids& want) {
  std::size_t first = 0;
  while (first < got.size() && first < want.size() && got[first] == want[first]) ++first;
  return QString("first difference at index %1\n   got: %2\n  want: %3").arg(first).arg(show(got), show(want)).toUtf8();
}

// QCOMPARE cannot print a std::vector; this shows both id lists and where they part.
#define COMPARE_IDS(got_expr, want_expr)                          \
  do {                                                            \
    const Ids got = (got_expr);                                   \
    const Ids want = (want_expr);                                 \
    QVERIFY2(got == want, mismatch(got, want).constData());       \
  } while (false)

// Prompts beyond the goldens' (special tokens inside words and in upper case, contractions, digits,
// NFC, casing with context, invalid UTF-8, emoji, CJK), for comparing the two loading paths.
const std::vector<std::string> kExtraPrompts = {
    "WORLD!! <|startoftext|>a<|endoftext|>b <|ENDOFTEXT|>'s",
    "I'M SURE THEY'LL, WE'VE, YOU'RE, HE'D, ISN'T, CAT'S ''s",
    "1234567890 ½ ² Ⅻ x²",
    "ΣΟΦΟΣ İstanbul STRASSE straße Ǆ",
    "cafe\xcc\x81 \xef\xac\x81ne tab\there\nline\xc2\xa0nbsp",
    "broken utf8 \xff\xfe end",
    "emoji 👩‍🚀🏳️‍🌈 日本語のテキスト 한국어",
};

}  // namespace

class TestTokenizer : public QObject {
  Q_OBJECT

private slots:
  void initTestCase() { QVERIFY(fs::is_directory(fisedit::test::reference_dir())); }

  void golden_ids_data() {
    QTest::addColumn<QString>("model");
    QTest::addColumn<int>("index");
    for (const char* model : {"tiny-sd2", "tiny-sd15"})
      for (int i = 0; i < kGoldenPrompts; ++i)
        QTest::addRow("%s/prompt%d", model, i) << QString(model) << i;
  }

  void golden_ids() {
    QFETCH(QString, model);
    QFETCH(int, index);
    const std::string name = model.toStdString();
    const auto& json = golden(name);
    QCOMPARE(int(json["prompts"].size()), kGoldenPrompts);
    const std::string prompt = json["prompts"][index].get<std::string>();
    const ClipTokenizer& tok = tokenizer(name);

    COMPARE_IDS(tok.encode_unpadded(prompt), json["tokens_unpadded"][index].get<Ids>());

    const auto all = fisedit::SafetensorsFile::open(model_dir(name) / "golden.safetensors").tensor("tokens.ids");
    QCOMPARE(all.shape(), (fisedit::Shape{kGoldenPrompts, ClipTokenizer::kMaxLength}));
    const Ids values = all.to_i64();
    const auto row = values.begin() + index * ClipTokenizer::kMaxLength;
    COMPARE_IDS(tok.encode(prompt), Ids(row, row + ClipTokenizer::kMaxLength));
  }

  void special_ids() {
    const ClipTokenizer& sd2 = tokenizer("tiny-sd2");
    const ClipTokenizer& sd15 = tokenizer("tiny-sd15");
    for (const ClipTokenizer* tok : {&sd2, &sd15}) {
      QCOMPARE(tok->bos_id(), 49406);
      QCOMPARE(tok->eos_id(), 49407);
      QCOMPARE(tok->vocab_size(), std::size_t(49408));
      QCOMPARE(tok->token_text(320), std::string("a</w>"));
      QCOMPARE(tok->token_text(49406), std::string("<|startoftext|>"));
    }
    QCOMPARE(sd2.pad_id(), 0);  // "!"
    QCOMPARE(sd15.pad_id(), 49407);
    QVERIFY_THROWS_EXCEPTION(fisedit::Error, sd2.token_text(49408));
    // The README's example of the pad-token quirk.
    COMPARE_IDS(sd2.encode_unpadded("WORLD!!"), (Ids{49406, 1002, 0, 0, 49407}));
    COMPARE_IDS(sd15.encode_unpadded("WORLD!!"), (Ids{49406, 1002, 748, 49407}));
  }

  void vocab_merges_match_tokenizer_json() {
    // Only the files a tokenizer.json-less folder has; tokenizer.json's absence selects that path.
    fisedit::test::TempDir dir;
    const fs::path source = model_dir("tiny-sd2") / "model" / "tokenizer";
    for (const char* file : {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"})
      fs::copy_file(source / file, dir / file);
    const ClipTokenizer from_files = ClipTokenizer::from_folder(dir.path());
    const ClipTokenizer& from_json = tokenizer("tiny-sd2");
    QCOMPARE(from_files.pad_id(), from_json.pad_id());
    QCOMPARE(from_files.vocab_size(), from_json.vocab_size());

    std::vector<std::string> prompts = kExtraPrompts;
    for (const auto& prompt : golden("tiny-sd2")["prompts"]) prompts.push_back(prompt.get<std::string>());
    for (const auto& prompt : prompts) {
      const Ids a = from_files.encode_unpadded(prompt);
      const Ids b = from_json.encode_unpadded(prompt);
      QVERIFY2(a == b, (QByteArray("prompt \"") + prompt.c_str() + "\": " + mismatch(a, b)).constData());
      COMPARE_IDS(from_files.encode(prompt), from_json.encode(prompt));
    }
  }

  void usable_from_threads() {
    // Expected ids from one thread; then four threads share a freshly loaded tokenizer (empty word
    // cache), so they race on cache insertions as well as lookups.
    std::vector<std::string> prompts;
    for (const auto& prompt : golden("tiny-sd15")["prompts"]) {
      for (char variant = 'a'; variant <= 'j'; ++variant)
        prompts.push_back(prompt.get<std::string>() + " variant" + variant);
    }
    std::vector<Ids> want;
    for (const auto& prompt : prompts) want.push_back(tokenizer("tiny-sd15").encode(prompt));
    const ClipTokenizer fresh = ClipTokenizer::from_folder(model_dir("tiny-sd15") / "model" / "tokenizer");
    std::atomic<int> mismatches = 0;
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (std::size_t k = 0; k < prompts.size(); ++k) {
          const std::size_t i = (k * 7 + t * 13) % prompts.size();  // a different order per thread
          if (fresh.encode(prompts[i]) != want[i]) ++mismatches;
        }
      });
    }
    for (auto& thread : threads) thread.join();
    QCOMPARE(mismatches.load(), 0);
  }

  void missing_folder_names_file() {
    fisedit::test::TempDir dir;
    const fs::path missing = dir / "no-such-tokenizer";
    try {
      ClipTokenizer::from_folder(missing);
      QFAIL("loading a missing folder did not throw");
    } catch (const fisedit::Error& e) {
      QCOMPARE(e.code(), fisedit::ErrorCode::not_found);
      QVERIFY2(std::string(e.what()).find((missing / "vocab.json").string()) != std::string::npos, e.what());
    }
  }

  void corrupt_vocab_names_file() {
    fisedit::test::TempDir dir;
    const fs::path source = model_dir("tiny-sd15") / "model" / "tokenizer";
    for (const char* file : {"merges.txt", "tokenizer_config.json"}) fs::copy_file(source / file, dir / file);
    for (const std::string content : {"{\"a\": 1, ", "[\"not\", \"an\", \"object\"]", "{\"a\": 0, \"b\": 1}"}) {
      std::ofstream(dir / "vocab.json", std::ios::trunc) << content;
      try {
        ClipTokenizer::from_folder(dir.path());
        QFAIL(("loading vocab.json " + content + " did not throw").c_str());
      } catch (const fisedit::Error& e) {
        QCOMPARE(e.code(), fisedit::ErrorCode::corrupt_file);
        QVERIFY2(std::string(e.what()).find((dir / "vocab.json").string()) != std::string::npos, e.what());
      }
    }
  }
};

QTEST_GUILESS_MAIN(TestTokenizer)
#include "test_tokenizer.moc"
