// Opening a saved project restores an editable tree, through the real window, worker and engine on
// the built-in toy-world model (CPU, 4 steps at 128x128): the worker's session adopts the nodes, an edit of
// a restored node rebuilds that node's cache first (its root generated again, its painted edit
// replayed) and lands as its child, every pixel outside the changed region the restored parent's and
// the image the same bytes the session that made the project gives; a project made with another
// model stays view-only and names the model to open (and becomes editable once it is open); a history
// that mixes two models reopens each node with its own; an old project without painted masks keeps
// such edits view-only; a saved image the rebuild does not
// reproduce is edited all the same, with a note in the status bar; an edit with attention control
// lands with controlled steps, keeps every pixel outside its region, and replays with control from a
// reopened project; and an exported PNG carries AUTOMATIC1111's parameters and the full record as JSON.
#include "test_support.h"
#include "window_driver.h"
#include "ui/history_panel.h"
#include "ui/image_canvas.h"
#include "ui/main_window.h"
#include "ui/painted_mask.h"
#include "ui/parameters_panel.h"
#include "ui/project_file.h"
#include "ui/prompt_editor.h"

#include "io/a1111_parameters.h"
#include "io/image_file.h"
#include "pipeline/generation.h"

#include <QtTest>
#include <QBuffer>
#include <QCheckBox>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QPushButton>
#include <QSignalSpy>
#include <QStatusBar>
#include <QTreeWidget>

#include <functional>
#include <memory>

using fisedit::ui::HistoryRecord;
using fisedit::ui::MainWindow;

namespace {

using fisedit::test::kJobTimeoutMs;
using fisedit::test::submitPrompt;
using fisedit::test::kHouse;
using fisedit::test::kHouseAndTree;
using fisedit::test::tinyModel;
using fisedit::test::toyModel;

// Prompts in the toy world's grammar (engine/toyworld/world.h), so that edits change what the model draws.
const QString kHouseTreeAndBoat =
    QStringLiteral("a red house at the center and a green tree at the top left and a blue boat at the bottom, sand background");
const QString kHouseTreeAndStar =
    QStringLiteral("a red house at the center and a green tree at the top left and a pink star at the right, sand background");

bool prepare(MainWindow& window, const QString& model) { return fisedit::test::prepareWindow(window, model); }

// Opens the project and waits for the worker's answer (or the view-only note): {adopted, view-only}.
std::pair<int, int> openAndAdopt(MainWindow& window, const QString& path) {
  QSignalSpy adopted(&window, &MainWindow::restoredNodesAdopted);
  if (!window.openProject(path)) return {-1, -1};
  if (!QTest::qWaitFor([&] { return adopted.count() == 1; }, kJobTimeoutMs)) return {-2, -2};
  return {adopted.first().at(0).toInt(), adopted.first().at(1).toInt()};
}

const HistoryRecord* current(const MainWindow& w) { return w.history()->record(*w.history()->currentNode()); }

QImage rgb(const QImage& image) { return image.convertToFormat(QImage::Format_RGB888); }

// The project's JSON with `change` applied to it, saved under a new name.
QString changedProject(const QString& path, const QString& name, const std::function<void(QJsonObject&)>& change) {
  QFile in(path);
  if (!in.open(QIODevice::ReadOnly)) return {};
  QJsonObject root = QJsonDocument::fromJson(in.readAll()).object();
  change(root);
  const QString out = QFileInfo(path).dir().filePath(name);
  QFile file(out);
  if (!file.open(QIODevice::WriteOnly | QIODevice::Truncate)) return {};
  file.write(QJsonDocument(root).toJson());
  return out;
}

}  // namespace

class TestProjectRestore : public QObject {
  Q_OBJECT

private slots:
  // The project: a generation and a painted edit of it, made and saved on the toy-world model.
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QVERIFY(m_dir.isValid());
    m_made = std::make_unique<MainWindow>();
    m_made->show();
    QVERIFY(QTest::qWaitForWindowExposed(m_made.get()));
    QVERIFY(prepare(*m_made, toyModel()));
    QVERIFY(submitPrompt(*m_made, kHouse));
    auto* mask = m_made->canvas()->mask();
    mask->beginStroke(QPointF(30, 30), fisedit::ui::PaintedMask::Tool::brush, 24);
    mask->extendStroke(QPointF(90, 60));
    mask->endStroke();
    QVERIFY(!mask->isEmpty());
    m_made->promptEditor()->setPrompts(kHouseAndTree, QString());
    QVERIFY(m_made->willEdit());
    QVERIFY(submitPrompt(*m_made, kHouseAndTree));
    QCOMPARE(current(*m_made)->edit.mask_mode, fisedit::MaskMode::painted);
    QVERIFY(current(*m_made)->edit.painted_mask.has_value());
    m_project = m_dir.filePath(QStringLiteral("house.fisedit"));
    QVERIFY(m_made->saveProject(m_project));
  }

  void restoredNodeIsEditedAfterItsCacheIsRebuilt() {
    MainWindow fresh;  // a new window, worker and session
    fresh.show();
    QVERIFY(prepare(fresh, toyModel()));
    QCOMPARE(openAndAdopt(fresh, m_project), std::make_pair(2, 0));
    const QList<HistoryRecord> opened = fresh.history()->records(), made = m_made->history()->records();
    QCOMPARE(opened.size(), 2);
    for (const HistoryRecord& r : opened) {
      QVERIFY(!r.restored);
      QVERIFY(r.id < fisedit::ui::kRestoredIdBase);  // the session's own ids now
    }
    QCOMPARE(*opened[1].parent, opened[0].id);
    QCOMPARE(fresh.history()->tree()->topLevelItem(0)->childCount(), 1);
    // The painted mask came back with the edit: the replay re-renders the same region.
    QVERIFY(opened[1].edit.painted_mask.has_value());
    QVERIFY(opened[1].edit.painted_mask->pixels == made[1].edit.painted_mask->pixels);

    // Edit the restored edit: its cache is rebuilt (the root generated, the painted edit replayed).
    const QString prompt = kHouseTreeAndBoat;
    fresh.history()->selectNode(opened[1].id);
    fresh.promptEditor()->setPrompts(prompt, QString());
    QVERIFY(fresh.willEdit());
    QVERIFY(fresh.findChild<QPushButton*>(QStringLiteral("generateButton"))->text().startsWith(QLatin1String("Edit")));
    QVERIFY(submitPrompt(fresh, prompt));
    const HistoryRecord* edit = current(fresh);
    QVERIFY(edit->isEdit());
    QCOMPARE(*edit->parent, opened[1].id);
    QCOMPARE(edit->regeneration.nodes, 2);
    QVERIFY(!edit->regeneration.image_differs);
    const QString status = fresh.statusBar()->currentMessage();
    QVERIFY2(status.contains(QLatin1String("recomputed")) && !status.contains(QLatin1String("differs")), qPrintable(status));
    QCOMPARE(fresh.history()->tree()->topLevelItem(0)->child(0)->childCount(), 1);

    const QImage parent = rgb(opened[1].image), edited = rgb(edit->image);
    int outside = 0;
    for (int y = 0; y < 128; ++y)
      for (int x = 0; x < 128; ++x)
        if (qGray(edit->changedRegion.pixel(x, y)) == 0) {
          ++outside;
          QCOMPARE(edited.pixel(x, y), parent.pixel(x, y));
        }
    QVERIFY2(outside > 0, "the edit re-rendered the whole image: nothing was checked");

    // The session that made the project, editing its own cached node, gives the same bytes.
    m_made->history()->selectNode(made[1].id);
    QVERIFY(submitPrompt(*m_made, prompt));
    QCOMPARE(current(*m_made)->regeneration.nodes, 0);
    QCOMPARE(rgb(current(*m_made)->image), edited);
    QCOMPARE(current(*m_made)->changedRegion, edit->changedRegion);

    // The restored root branches like any node; deleting it takes its subtree.
    fresh.history()->selectNode(opened[0].id);
    QVERIFY(submitPrompt(fresh, QStringLiteral("a blue house at the center, sand background")));
    QCOMPARE(*current(fresh)->parent, opened[0].id);
    QCOMPARE(current(fresh)->regeneration.nodes, 1);
    QCOMPARE(fresh.history()->tree()->topLevelItem(0)->childCount(), 2);

    // Saved again, adopted and new nodes alike reopen editable, painted mask included.
    const QString again = m_dir.filePath(QStringLiteral("house-again.fisedit"));
    QVERIFY(fresh.saveProject(again));
    QCOMPARE(openAndAdopt(fresh, again), std::make_pair(4, 0));
    QVERIFY(fresh.history()->records()[1].edit.painted_mask.has_value());
    fresh.history()->selectNode(fresh.history()->records()[0].id);
    fresh.history()->removeCurrent();
    QCOMPARE(fresh.history()->nodeCount(), 0);
    QVERIFY(fresh.hasUnsavedChanges() == false);  // nothing left to lose
  }

  void projectOfAnotherModelStaysViewOnly() {
    MainWindow other;
    other.show();
    QVERIFY(prepare(other, tinyModel()));
    QCOMPARE(openAndAdopt(other, m_project), std::make_pair(0, 2));
    for (const HistoryRecord& r : other.history()->records()) QVERIFY(r.restored);
    const QString status = other.statusBar()->currentMessage();
    QVERIFY2(status.contains(QLatin1String("View only")) && status.contains(QFileInfo(toyModel()).fileName()) &&
                 status.contains(QLatin1String("Open that model")),
             qPrintable(status));
    const HistoryRecord edit = other.history()->records().last();
    other.history()->selectNode(edit.id);
    QVERIFY(other.statusBar()->currentMessage().contains(QLatin1String("View only")));
    other.promptEditor()->setPrompts(kHouseTreeAndStar, QString());
    QVERIFY(!other.willEdit());
    QCOMPARE(other.findChild<QPushButton*>(QStringLiteral("generateButton"))->text(), QStringLiteral("Generate"));

    // Opening the model it names keeps the history and makes it editable.
    QSignalSpy adopted(&other, &MainWindow::restoredNodesAdopted);
    QVERIFY(prepare(other, toyModel()));
    QTRY_COMPARE_WITH_TIMEOUT(adopted.count(), 1, kJobTimeoutMs);
    QCOMPARE(adopted.first().at(0).toInt(), 2);
    QCOMPARE(other.history()->nodeCount(), 2);
    const HistoryRecord restoredEdit = other.history()->records().last();
    QVERIFY(!restoredEdit.restored && restoredEdit.isEdit());
    other.history()->selectNode(restoredEdit.id);
    other.promptEditor()->setPrompts(kHouseTreeAndStar, QString());
    QVERIFY(other.willEdit());
  }

  // A project opened view-only, then an image made with the open model, saved together: each node
  // keeps the model that made it, so each model reopens its own nodes as editable, and only those.
  void mixedHistoryKeepsEachNodesModel() {
    MainWindow window;
    window.show();
    QVERIFY(prepare(window, tinyModel()));
    QCOMPARE(openAndAdopt(window, m_project), std::make_pair(0, 2));
    QVERIFY(submitPrompt(window, QStringLiteral("a photo of a cat")));
    QCOMPARE(window.history()->nodeCount(), 3);
    const QString mixed = m_dir.filePath(QStringLiteral("mixed.fisedit"));
    QVERIFY(window.saveProject(mixed));

    MainWindow toy;
    toy.show();
    QVERIFY(prepare(toy, toyModel()));
    QCOMPARE(openAndAdopt(toy, mixed), std::make_pair(2, 1));
    const QString status = toy.statusBar()->currentMessage();
    QVERIFY2(status.contains(QLatin1String("1 stay view-only")) && status.contains(QFileInfo(tinyModel()).fileName()),
             qPrintable(status));
    const QList<HistoryRecord> records = toy.history()->records();
    QVERIFY(!records[0].restored && !records[1].restored && records[2].restored);
    QCOMPARE(records[2].request.prompt, std::string("a photo of a cat"));
    QCOMPARE(records[2].model.fingerprint, window.model()->fingerprint);

    QCOMPARE(openAndAdopt(window, mixed), std::make_pair(1, 2));
    for (const HistoryRecord& r : window.history()->records())
      QCOMPARE(r.restored, r.request.prompt != "a photo of a cat");
  }

  // Written before painted masks and fingerprints were saved: the model is matched by its path, and
  // the painted edit, which cannot be replayed without its mask, stays view-only and says why.
  void olderProjectKeepsUnreplayableEditsViewOnly() {
    const QString old = changedProject(m_project, QStringLiteral("old.fisedit"), [](QJsonObject& root) {
      QJsonObject model = root.value(QStringLiteral("model")).toObject();
      model.remove(QStringLiteral("fingerprint"));
      root.insert(QStringLiteral("model"), model);
      QJsonArray nodes = root.value(QStringLiteral("nodes")).toArray();
      for (auto node : nodes) {
        QJsonObject n = node.toObject();
        n.remove(QStringLiteral("paintedMaskPng"));
        node = n;
      }
      root.insert(QStringLiteral("nodes"), nodes);
    });
    QVERIFY(!old.isEmpty());
    MainWindow window;
    window.show();
    QVERIFY(prepare(window, toyModel()));
    QCOMPARE(openAndAdopt(window, old), std::make_pair(1, 1));
    const QList<HistoryRecord> records = window.history()->records();
    QVERIFY(!records[0].restored && records[1].restored);
    QCOMPARE(*records[1].parent, records[0].id);  // still under its parent in the tree
    const QString status = window.statusBar()->currentMessage();
    QVERIFY2(status.contains(QLatin1String("view-only")) && status.contains(QLatin1String("painted mask")), qPrintable(status));
  }

  // A saved image the rebuild does not give back (as from another device): the edit goes ahead from
  // the saved image, keeps it outside the changed region, and the status bar says they differ.
  void rebuiltImageThatDiffersIsReported() {
    QImage tampered;
    const QString path = changedProject(m_project, QStringLiteral("tampered.fisedit"), [&](QJsonObject& root) {
      QJsonArray nodes = root.value(QStringLiteral("nodes")).toArray();
      QJsonObject first = nodes[0].toObject();
      QImage image;
      image.loadFromData(QByteArray::fromBase64(first.value(QStringLiteral("imagePng")).toString().toLatin1()), "PNG");
      tampered = rgb(image);
      for (int x = 0; x < 128; ++x) tampered.setPixel(x, 127, qRgb(255, 0, 255));
      QByteArray png;
      QBuffer buffer(&png);
      buffer.open(QIODevice::WriteOnly);
      tampered.save(&buffer, "PNG");
      first.insert(QStringLiteral("imagePng"), QString::fromLatin1(png.toBase64()));
      nodes[0] = first;
      root.insert(QStringLiteral("nodes"), nodes);
    });
    QVERIFY(!path.isEmpty());
    MainWindow window;
    window.show();
    QVERIFY(prepare(window, toyModel()));
    QCOMPARE(openAndAdopt(window, path), std::make_pair(2, 0));
    const HistoryRecord root = window.history()->records().first();
    window.history()->selectNode(root.id);
    QVERIFY(submitPrompt(window, QStringLiteral("a red house at the center, night background")));
    const HistoryRecord* edit = current(window);
    QCOMPARE(*edit->parent, root.id);
    QVERIFY(edit->regeneration.image_differs);
    const QString status = window.statusBar()->currentMessage();
    QVERIFY2(status.contains(QLatin1String("differs from the saved one")), qPrintable(status));
    const QImage edited = rgb(edit->image);
    for (int y = 0; y < 128; ++y)
      for (int x = 0; x < 128; ++x)
        if (qGray(edit->changedRegion.pixel(x, y)) == 0) QCOMPARE(edited.pixel(x, y), tampered.pixel(x, y));
  }

  // The edit options' attention control reaches the engine through the worker, and the project keeps
  // it: the replay that rebuilds the edit's cache runs with control too, or its image would differ.
  void attentionControlEditLandsAndReplays() {
    MainWindow window;
    window.show();
    QVERIFY(prepare(window, toyModel()));
    QVERIFY(submitPrompt(window, kHouse));
    const HistoryRecord root = *current(window);
    const QString prompt = kHouseAndTree;
    window.parameters()->setAttentionControl(true);
    // With control the 4-step, 128-pixel edit's detection moves the whole image: keep a region (the
    // project must keep this choice too, or the replay would re-render everything).
    window.findChild<QCheckBox*>(QStringLiteral("wholeImageIfGlobalCheck"))->setChecked(false);
    QVERIFY(submitPrompt(window, prompt));
    const HistoryRecord controlled = *current(window);
    QVERIFY(controlled.isEdit());
    QCOMPARE(*controlled.parent, root.id);
    QVERIFY(controlled.edit.attention_control);
    QCOMPARE(controlled.stats.attention_control_steps, fisedit::default_detection_steps(4));
    QVERIFY(controlled.stats.attention_control_steps > 0);
    const QString tip = window.history()->tree()->currentItem()->toolTip(0);
    QVERIFY2(tip.contains(QLatin1String("attention control: 1 step")), qPrintable(tip));
    const QImage base = rgb(root.image), edited = rgb(controlled.image);
    int outside = 0;
    for (int y = 0; y < 128; ++y)
      for (int x = 0; x < 128; ++x)
        if (qGray(controlled.changedRegion.pixel(x, y)) == 0) {
          ++outside;
          QCOMPARE(edited.pixel(x, y), base.pixel(x, y));
        }
    QVERIFY2(outside > 0, "the edit re-rendered the whole image: nothing was checked");

    // The same edit without control gives another image: the flag is not lost on the way.
    window.history()->selectNode(root.id);
    window.parameters()->setAttentionControl(false);
    QVERIFY(submitPrompt(window, prompt));
    QVERIFY(!current(window)->edit.attention_control);
    QCOMPARE(current(window)->stats.attention_control_steps, 0);
    QVERIFY2(rgb(current(window)->image) != edited, "attention control changed nothing on the toy-world model");
    QVERIFY(window.history()->tree()->currentItem()->toolTip(0).contains(QLatin1String("attention control: off")));

    const QString path = m_dir.filePath(QStringLiteral("controlled.fisedit"));
    QVERIFY(window.saveProject(path));
    MainWindow fresh;
    fresh.show();
    QVERIFY(prepare(fresh, toyModel()));
    QCOMPARE(openAndAdopt(fresh, path), std::make_pair(3, 0));
    const HistoryRecord reopened = fresh.history()->records()[1];
    QVERIFY(reopened.edit.attention_control);
    QCOMPARE(reopened.stats.attention_control_steps, controlled.stats.attention_control_steps);
    fresh.history()->selectNode(reopened.id);
    QVERIFY(submitPrompt(fresh, kHouseTreeAndBoat));
    QCOMPARE(current(fresh)->regeneration.nodes, 2);
    QVERIFY2(!current(fresh)->regeneration.image_differs, "the replay without attention control gave another image");
  }

  void exportedImageCarriesParametersAndRecord() {
    const HistoryRecord edit = m_made->history()->records()[1];
    m_made->history()->selectNode(edit.id);
    const QString path = m_dir.filePath(QStringLiteral("edit.png"));
    QVERIFY(m_made->exportImage(path));
    const auto chunks = fisedit::read_png_text(path.toStdString());
    QCOMPARE(chunks.size(), std::size_t{2});
    QCOMPARE(chunks[0].first, std::string("parameters"));
    QCOMPARE(chunks[0].second, fisedit::a1111_parameters(edit.request, QFileInfo(toyModel()).fileName().toStdString()));
    QCOMPARE(chunks[1].first, std::string("fisedit"));
    QJsonParseError error;
    const QJsonObject json = QJsonDocument::fromJson(QByteArray::fromStdString(chunks[1].second), &error).object();
    QCOMPARE(error.error, QJsonParseError::NoError);
    QCOMPARE(json.value(QStringLiteral("prompt")).toString(), kHouseAndTree);
    QCOMPARE(json.value(QStringLiteral("seed")).toInteger(), qint64(edit.request.seed));
    QCOMPARE(json.value(QStringLiteral("steps")).toInt(), 4);
    QCOMPARE(json.value(QStringLiteral("width")).toInt(), 128);
    QCOMPARE(json.value(QStringLiteral("scheduler")).toString().toStdString(), edit.request.scheduler);
    QCOMPARE(json.value(QStringLiteral("model")).toString(), QFileInfo(toyModel()).fileName());
    QCOMPARE(json.value(QStringLiteral("model_fingerprint")).toString(), m_made->model()->fingerprint);
    QVERIFY(json.value(QStringLiteral("device")).toString().contains(QLatin1String("CPU")));
    QCOMPARE(json.value(QStringLiteral("edit_of")).toString(), kHouse);
    const QJsonObject editJson = json.value(QStringLiteral("edit")).toObject();
    QCOMPARE(editJson.value(QStringLiteral("mask_mode")).toString(), QStringLiteral("painted"));
    QCOMPARE(editJson.value(QStringLiteral("edit_fraction")).toDouble(), edit.stats.edit_fraction);
    QVERIFY(json.value(QStringLiteral("timings_ms")).toObject().value(QStringLiteral("total")).toDouble() > 0);
    QCOMPARE(fisedit::ui::toQImage(fisedit::read_png(path.toStdString())), rgb(edit.image));
  }

  void cleanupTestCase() { m_made.reset(); }

private:
  QTemporaryDir m_dir;
  QString m_project;
  std::unique_ptr<MainWindow> m_made;
};

QTEST_MAIN(TestProjectRestore)
#include "test_project_restore.moc"
