// fisedit-cli info and tokenize on every reference model, and their error paths, through the real binary.
#include "io/safetensors.h"
#include "test_support.h"

#include <QProcess>
#include <QtTest>

using namespace fisedit;

namespace {

struct Run {
  int code;
  QString out;
  QString err;
};

Run run_cli(const QStringList& args) {
  QProcess p;
  p.start(FISEDIT_CLI_PATH, args);
  if (!p.waitForFinished(60000)) return {-1, {}, "timeout"};
  return {p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1, QString::fromUtf8(p.readAllStandardOutput()),
          QString::fromUtf8(p.readAllStandardError())};
}

QString reference_path(const std::string& rel) { return QString::fromStdString((test::reference_dir() / rel).string()); }

}  // namespace

class TestCli : public QObject {
  Q_OBJECT

private slots:
  void info_data() {
    QTest::addColumn<QStringList>("args");
    QTest::addColumn<QString>("family");
    QTest::addColumn<QString>("prediction");
    QTest::addColumn<QString>("format");
    for (const char* m : {"tiny-sd2", "tiny-sd15"}) {
      const bool sd2 = std::string(m) == "tiny-sd2";
      const QString family = sd2 ? "SD2.x" : "SD1.x";
      const QString prediction = sd2 ? "v_prediction" : "epsilon";
      const std::string base = m;
      QTest::addRow("%s folder", m) << QStringList{"--model", reference_path(base + "/model")} << family << prediction << "diffusers folder";
      QTest::addRow("%s single file", m) << QStringList{"--model", reference_path(base + "/single-file.safetensors")} << family << prediction
                                         << "single-file checkpoint";
      QTest::addRow("%s single file + config", m)
          << QStringList{"--model", reference_path(base + "/single-file.safetensors"), "--config", reference_path(base + "/model")} << family << prediction
          << "single-file checkpoint";
    }
  }

  void info() {
    QFETCH(QStringList, args);
    QFETCH(QString, family);
    QFETCH(QString, prediction);
    QFETCH(QString, format);
    const auto r = run_cli(QStringList{"info"} + args);
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QVERIFY2(r.out.contains(QRegularExpression("family: +" + QRegularExpression::escape(family))), qPrintable(r.out));
    QVERIFY2(r.out.contains(QRegularExpression("prediction: +" + prediction)), qPrintable(r.out));
    QVERIFY2(r.out.contains(QRegularExpression("format: +" + format)), qPrintable(r.out));
    for (const char* field : {"unet channels:", "unet heads:", "text encoder:", "vae channels:", "weight dtype:      F16", "parameters:"})
      QVERIFY2(r.out.contains(field), qPrintable(r.out));
  }

  void tokenize_data() {
    QTest::addColumn<QStringList>("model");
    QTest::addColumn<QString>("golden");
    for (const char* m : {"tiny-sd2", "tiny-sd15"}) {
      const std::string base = m;
      QTest::addRow("%s folder", m) << QStringList{"--model", reference_path(base + "/model")} << reference_path(base + "/golden.safetensors");
      QTest::addRow("%s single file + config", m)
          << QStringList{"--model", reference_path(base + "/single-file.safetensors"), "--config", reference_path(base + "/model")}
          << reference_path(base + "/golden.safetensors");
    }
  }

  void tokenize() {
    QFETCH(QStringList, model);
    QFETCH(QString, golden);
    // Prompt 4 of the goldens: whitespace runs, punctuation, "!!" (SD2's pad-token quirk), an apostrophe.
    const auto ids = SafetensorsFile::open(golden.toStdString()).tensor("tokens.ids").to_i64();
    QStringList expected;
    for (int i = 0; i < 77; ++i) expected << QString::number(ids[4 * 77 + i]);
    const auto r = run_cli(QStringList{"tokenize"} + model + QStringList{"  Hello,   WORLD!! it's 3.14 o'clock   "});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QCOMPARE(r.out, expected.join(' ') + "\n");
  }

  void errors_data() {
    QTest::addColumn<QStringList>("args");
    QTest::addColumn<int>("code");
    QTest::addColumn<QString>("message");
    QTest::newRow("missing model") << QStringList{"info", "--model", "/nonexistent/model"} << 1 << "/nonexistent/model: no such file";
    QTest::newRow("no tokenizer in a single file")
        << QStringList{"tokenize", "--model", reference_path("tiny-sd2/single-file.safetensors"), "a cat"} << 1 << "pass --config DIR";
    QTest::newRow("unknown option") << QStringList{"info", "--modle", "x"} << 2 << "unknown option --modle";
    QTest::newRow("missing --model") << QStringList{"info"} << 2 << "option --model is required";
    QTest::newRow("no text") << QStringList{"tokenize", "--model", reference_path("tiny-sd2/model")} << 2 << "exactly one TEXT";
    QTest::newRow("unknown command") << QStringList{"paint"} << 2 << "unknown command 'paint'";
  }

  void errors() {
    QFETCH(QStringList, args);
    QFETCH(int, code);
    QFETCH(QString, message);
    const auto r = run_cli(args);
    QCOMPARE(r.code, code);
    QVERIFY2(r.err.contains(message), qPrintable(r.err));
    QCOMPARE(r.err.count('\n'), 1);  // one clear line
    QVERIFY(r.out.isEmpty());
  }
};

QTEST_GUILESS_MAIN(TestCli)
#include "test_cli.moc"
