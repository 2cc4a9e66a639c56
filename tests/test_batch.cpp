// Batch count (issue 14, item 3) through the real window, worker and engine: one Generate with a batch
// count of N makes N nodes with seeds seed..seed+N-1, each the image a single generation of its seed
// makes; a cancel keeps the finished ones only; "Edit all in batch" edits every image of the batch, each
// edit the one a single edit of its image makes, together a batch again; projects keep the grouping and
// refuse a damaged one; the count is remembered. fisedit-cli's --batch-count is in test_cli.
#include "test_support.h"
#include "window_driver.h"
#include "ui/history_panel.h"
#include "ui/main_window.h"
#include "ui/parameters_panel.h"
#include "ui/project_file.h"
#include "ui/prompt_editor.h"

#include <nlohmann/json.hpp>

#include <QtTest>
#include <QCheckBox>
#include <QFile>
#include <QLabel>
#include <QPushButton>
#include <QSettings>
#include <QSignalSpy>
#include <QSpinBox>
#include <QStatusBar>
#include <QTemporaryDir>
#include <QTreeWidget>

#include <algorithm>

using fisedit::ui::HistoryRecord;
using fisedit::ui::MainWindow;

namespace {

using fisedit::test::kJobTimeoutMs;
using fisedit::test::submitPrompt;

const QString kCat = QStringLiteral("a photo of a cat");
const QString kDog = QStringLiteral("a photo of a dog");

void setSeed(MainWindow& w, int seed) {
  w.findChild<QCheckBox*>(QStringLiteral("randomSeed"))->setChecked(false);
  w.findChild<QSpinBox*>(QStringLiteral("seedSpin"))->setValue(seed);
}

QList<HistoryRecord> roots(const MainWindow& w) {
  QList<HistoryRecord> out;
  for (const HistoryRecord& r : w.history()->records())
    if (!r.parent) out << r;
  return out;
}

QList<HistoryRecord> childrenOf(const MainWindow& w, quint64 id) {
  QList<HistoryRecord> out;
  for (const HistoryRecord& r : w.history()->records())
    if (r.parent == id) out << r;
  return out;
}

QString rowText(const MainWindow& w, quint64 id) {
  for (QTreeWidgetItemIterator it(w.history()->tree()); *it; ++it)
    if ((*it)->data(0, Qt::UserRole).toULongLong() == id) return (*it)->text(0);
  return QStringLiteral("<no row>");
}

quint64 currentId(const MainWindow& w) { return w.history()->currentNode().value_or(0); }

// A batch of `count` from `seed`, through the window as the user makes it.
bool runBatch(MainWindow& w, const QString& prompt, int count, int seed) {
  setSeed(w, seed);
  w.parameters()->setBatchCount(count);
  return submitPrompt(w, prompt);
}

}  // namespace

class TestBatch : public QObject {
  Q_OBJECT

private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QVERIFY(m_dir.isValid());
  }

  // Three nodes, seeds s, s+1, s+2, one batch, labelled "(2/3)"; the progress names the image; the first
  // is current at the end; each image is the one a single generation of its seed makes.
  void batchOfThreeMatchesSingleGenerations() {
    MainWindow w;
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    QVERIFY(fisedit::test::prepareWindow(w));
    auto* button = w.findChild<QPushButton*>(QStringLiteral("generateButton"));
    auto* progressText = w.findChild<QLabel*>(QStringLiteral("jobProgressText"));
    QVERIFY(button && progressText);
    setSeed(w, 100);
    w.parameters()->setBatchCount(3);
    w.promptEditor()->setPrompts(kCat, QString());
    QCOMPARE(button->text(), QStringLiteral("Generate 3 images"));

    QStringList progress;
    QList<int> images;
    const auto watching = connect(&w, &MainWindow::jobProgress, this, [&](int image, int count, int, int) {
      QCOMPARE(count, 3);
      images << image;
      progress << progressText->text();
    });
    QVERIFY(runBatch(w, kCat, 3, 100));
    disconnect(watching);

    const QList<HistoryRecord> batch = roots(w);
    QCOMPARE(batch.size(), 3);
    for (int i = 0; i < 3; ++i) {
      QCOMPARE(batch[i].request.seed, std::uint64_t(100 + i));
      QVERIFY(batch[i].inBatch());
      QCOMPARE(batch[i].batch.id, batch[0].batch.id);
      QCOMPARE(batch[i].batch.index, i + 1);
      QCOMPARE(batch[i].batch.size, 3);
      const QString row = rowText(w, batch[i].id);
      QVERIFY2(row.contains(QStringLiteral("seed %1 (%2/3)").arg(100 + i).arg(i + 1)), qPrintable(row));
    }
    // Every image ran, in order, and the text said which one.
    QVERIFY(!images.isEmpty() && images.first() == 1 && images.last() == 3);
    QVERIFY(std::is_sorted(images.begin(), images.end()));
    QVERIFY2(std::any_of(progress.begin(), progress.end(),
                         [](const QString& t) { return t.startsWith(QLatin1String("image 2 of 3, step ")); }),
             qPrintable(progress.join(QStringLiteral(" | "))));
    QCOMPARE(currentId(w), batch[0].id);  // the first at the end
    QVERIFY(!w.isBusy());
    QVERIFY(w.statusBar()->currentMessage().contains(QLatin1String("batch of 3 images")));

    // The same images, one Generate each.
    w.parameters()->setBatchCount(1);
    QCOMPARE(button->text(), QStringLiteral("Generate"));
    for (int i = 0; i < 3; ++i) {
      setSeed(w, 100 + i);
      QVERIFY(submitPrompt(w, kCat));
      const HistoryRecord* single = w.history()->record(currentId(w));
      QVERIFY(!single->inBatch() && !single->isEdit());
      QCOMPARE(single->request.seed, std::uint64_t(100 + i));
      QVERIFY2(single->image == batch[i].image, qPrintable(QStringLiteral("seed %1 differs").arg(100 + i)));
    }
  }

  // Cancel while the second image runs: the first stays, the second is dropped, the third never starts.
  void cancelKeepsTheFinishedImages() {
    MainWindow w;
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    QVERIFY(fisedit::test::prepareWindow(w));
    w.parameters()->setSteps(12);  // image 2 runs long enough to be cancelled mid-way
    bool cancelled = false;
    QList<int> images;
    connect(&w, &MainWindow::jobProgress, this, [&](int image, int, int step, int) {
      images << image;
      if (image == 2 && step >= 1 && !cancelled) {
        cancelled = true;
        w.cancel();
      }
    });
    QVERIFY(!runBatch(w, kCat, 3, 7));  // jobFinished(false): cancelled
    QVERIFY(cancelled);
    QCOMPARE(w.history()->nodeCount(), 1);
    const HistoryRecord* first = w.history()->record(currentId(w));
    QVERIFY(first);
    QCOMPARE(first->request.seed, std::uint64_t(7));
    QCOMPARE(first->batch.index, 1);
    QCOMPARE(first->batch.size, 3);
    QVERIFY(!images.contains(3));
    QVERIFY2(w.statusBar()->currentMessage().contains(QLatin1String("1 of the batch's 3 images")),
             qPrintable(w.statusBar()->currentMessage()));
    QVERIFY(!w.isBusy());
    // Nothing of the batch is left queued: the next Generate makes one image.
    w.parameters()->setBatchCount(1);
    w.parameters()->setSteps(4);
    setSeed(w, 9);
    QVERIFY(submitPrompt(w, kCat));
    QCOMPARE(w.history()->nodeCount(), 2);
    QVERIFY(!w.history()->record(currentId(w))->inBatch());
  }

  // A node the user selects while the batch runs stays shown: the later images are added without
  // taking the selection, and the end does not move it to the batch's first.
  void userChoiceDuringTheBatchIsKept() {
    MainWindow w;
    QVERIFY(fisedit::test::prepareWindow(w));
    setSeed(w, 50);
    QVERIFY(submitPrompt(w, kDog));
    const quint64 chosen = currentId(w);
    bool selected = false;
    connect(&w, &MainWindow::jobProgress, this, [&](int image, int, int, int) {
      if (image == 2 && !selected) {
        selected = true;
        w.history()->selectNode(chosen);
      }
    });
    QVERIFY(runBatch(w, kCat, 3, 60));
    QVERIFY(selected);
    QCOMPARE(w.history()->nodeCount(), 4);
    QCOMPARE(currentId(w), chosen);
    QCOMPARE(w.promptEditor()->prompt(), kDog);
  }

  // "Edit all 3 in batch": three children, one per image, each the edit a single edit of its image
  // makes, together a batch, which can again be edited as one.
  void batchEditEditsEveryImage() {
    MainWindow w;
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    QVERIFY(fisedit::test::prepareWindow(w));
    QVERIFY(runBatch(w, kCat, 3, 200));
    const QList<HistoryRecord> batch = roots(w);
    QCOMPARE(batch.size(), 3);
    auto* check = w.findChild<QCheckBox*>(QStringLiteral("editBatchCheck"));
    auto* button = w.findChild<QPushButton*>(QStringLiteral("generateButton"));
    QVERIFY(check && button);
    QVERIFY(!check->isVisible());  // nothing to edit yet: the prompt is the image's
    w.history()->selectNode(batch[1].id);
    w.promptEditor()->setPrompts(kDog, QString());
    QVERIFY(w.willEdit());
    QVERIFY(check->isVisible());
    QCOMPARE(check->text(), QStringLiteral("Edit all 3 in batch"));
    check->setChecked(true);
    QVERIFY2(button->text().startsWith(QLatin1String("Edit all 3")), qPrintable(button->text()));
    QVERIFY(submitPrompt(w, kDog));

    QCOMPARE(w.history()->nodeCount(), 6);
    QList<HistoryRecord> edits;
    for (const HistoryRecord& member : batch) {
      const QList<HistoryRecord> children = childrenOf(w, member.id);
      QCOMPARE(children.size(), 1);
      edits << children.first();
    }
    for (int i = 0; i < 3; ++i) {
      QVERIFY(edits[i].isEdit());
      QCOMPARE(edits[i].request.prompt, kDog.toStdString());
      QCOMPARE(edits[i].request.seed, std::uint64_t(200 + i));
      QVERIFY(edits[i].inBatch());
      QVERIFY(edits[i].batch.id != batch[0].batch.id);
      QCOMPARE(edits[i].batch.id, edits[0].batch.id);
      QCOMPARE(edits[i].batch.index, i + 1);
      QCOMPARE(edits[i].batch.size, 3);
      const QString row = rowText(w, edits[i].id);
      QVERIFY2(row.contains(QStringLiteral("(%1/3)").arg(i + 1)), qPrintable(row));
    }
    QCOMPARE(currentId(w), edits[0].id);
    // The result is a batch again: a further prompt change is offered to all three.
    w.promptEditor()->setPrompts(QStringLiteral("a photo of a bird"), QString());
    QVERIFY(w.willEdit() && check->isVisible());
    QCOMPARE(check->text(), QStringLiteral("Edit all 3 in batch"));

    // Without the option only the current image is edited, as a single edit; it is the batch's edit.
    check->setChecked(false);
    for (int i = 0; i < 3; ++i) {
      w.history()->selectNode(batch[i].id);
      QVERIFY(submitPrompt(w, kDog));
      const HistoryRecord* single = w.history()->record(currentId(w));
      QVERIFY(single->parent == batch[i].id);
      QVERIFY(!single->inBatch());
      QVERIFY2(single->image == edits[i].image, qPrintable(QStringLiteral("the edit of image %1 differs").arg(i + 1)));
      QVERIFY2(single->changedRegion == edits[i].changedRegion, qPrintable(QStringLiteral("region %1").arg(i + 1)));
    }
    QCOMPARE(w.history()->nodeCount(), 9);
  }

  // A project keeps which nodes were one batch; a file without batches still opens; a damaged tag is refused.
  void projectKeepsTheBatch() {
    MainWindow w;
    QVERIFY(fisedit::test::prepareWindow(w));
    QVERIFY(runBatch(w, kCat, 2, 300));
    const QList<HistoryRecord> made = w.history()->records();
    QCOMPARE(made.size(), 2);
    const QString path = m_dir.filePath(QStringLiteral("batch.fisedit"));
    QVERIFY(w.saveProject(path));
    const auto read = fisedit::ui::loadProject(path);
    QVERIFY2(read.ok(), qPrintable(read.error));
    QCOMPARE(read.content.records.size(), 2);
    for (int i = 0; i < 2; ++i) QVERIFY(read.content.records[i].batch == made[i].batch);

    QFile file(path);
    QVERIFY(file.open(QIODevice::ReadOnly));
    const QByteArray bytes = file.readAll();
    file.close();
    const auto rewrite = [&](const QString& name, const std::function<void(nlohmann::json&)>& change) {
      nlohmann::json doc = nlohmann::json::parse(bytes.constData(), bytes.constData() + bytes.size());
      change(doc["nodes"][1]);
      QFile out(m_dir.filePath(name));
      if (!out.open(QIODevice::WriteOnly)) return QString();
      out.write(QByteArray::fromStdString(doc.dump()));
      return out.fileName();
    };
    // Written before batches: no tag, no batch.
    const auto old = fisedit::ui::loadProject(rewrite(QStringLiteral("old.fisedit"), [](nlohmann::json& n) { n.erase("batch"); }));
    QVERIFY2(old.ok(), qPrintable(old.error));
    QVERIFY(!old.content.records[1].inBatch());
    QVERIFY(old.content.records[0].inBatch());
    for (const auto& [name, change] : std::vector<std::pair<QString, std::function<void(nlohmann::json&)>>>{
             {"index.fisedit", [](nlohmann::json& n) { n["batch"]["index"] = 3; }},
             {"size.fisedit", [](nlohmann::json& n) { n["batch"]["size"] = 17; }},
             {"id.fisedit", [](nlohmann::json& n) { n["batch"]["id"] = -1; }},
             {"text.fisedit", [](nlohmann::json& n) { n["batch"] = "2/2"; }}}) {
      const auto damaged = fisedit::ui::loadProject(rewrite(name, change));
      QVERIFY2(!damaged.ok() && damaged.error.contains(QLatin1String("damaged batch")), qPrintable(name + ": " + damaged.error));
    }
  }

  // Remembered like the other parameters, within 1..16.
  void batchCountIsRemembered() {
    const QString ini = m_dir.filePath(QStringLiteral("choices.ini"));
    {
      fisedit::ui::ParametersPanel panel;
      QCOMPARE(panel.batchCount(), 1);
      panel.setBatchCount(5);
      QSettings settings(ini, QSettings::IniFormat);
      panel.saveChoices(settings);
    }
    {
      fisedit::ui::ParametersPanel panel;
      panel.restoreChoices(QSettings(ini, QSettings::IniFormat));
      QCOMPARE(panel.batchCount(), 5);
      panel.setBatchCount(99);
      QCOMPARE(panel.batchCount(), fisedit::ui::kMaxBatchCount);
    }
  }

private:
  QTemporaryDir m_dir;
};

QTEST_MAIN(TestBatch)
#include "test_batch.moc"
