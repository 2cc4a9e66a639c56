// The history on disk, through the real window, worker and engine (tiny SD2 model on the CPU, 4 steps
// at 128x128): an export folder reads back with its parent links and PNG parameters, a saved project
// opens in a fresh window with the same nodes and pixels and edit options (attention control
// included; a file written before it existed opens with it off), a version-1 file (camelCase request
// keys) opens with the same requests, a damaged or newer project is refused
// without touching the open tree, and closing with unsaved history asks first.
#include "test_support.h"
#include "window_driver.h"
#include "ui/history_panel.h"
#include "ui/main_window.h"
#include "ui/parameters_panel.h"
#include "ui/project_file.h"
#include "ui/prompt_editor.h"

#include "io/a1111_parameters.h"
#include "io/image_file.h"
#include "pipeline/generation.h"

#include <QtTest>
#include <QAbstractButton>
#include <QApplication>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QMessageBox>
#include <QSignalSpy>
#include <QTreeWidget>

#include <memory>

using fisedit::ui::HistoryRecord;
using fisedit::ui::MainWindow;

namespace {

using fisedit::test::kJobTimeoutMs;
using fisedit::test::submitPrompt;
using fisedit::test::tinyModel;

bool prepare(MainWindow& window) { return fisedit::test::prepareWindow(window); }

bool samePixels(const QImage& a, const QImage& b) {
  return a.convertToFormat(QImage::Format_RGB888) == b.convertToFormat(QImage::Format_RGB888);
}

QString errorText(const MainWindow& w) { return w.findChild<QLabel*>(QStringLiteral("errorMessage"))->text(); }
bool errorShown(const MainWindow& w) { return w.findChild<QWidget*>(QStringLiteral("errorBanner"))->isVisible(); }

// Answers the next unsaved-changes box with `button`, noting that it appeared.
void answerUnsavedBox(QMessageBox::StandardButton button, bool* appeared) {
  QTimer::singleShot(0, [button, appeared] {
    auto* box = qobject_cast<QMessageBox*>(QApplication::activeModalWidget());
    if (!box || box->objectName() != QLatin1String("unsavedChangesBox")) return;
    *appeared = true;
    box->button(button)->click();
  });
}

}  // namespace

class TestProjectFile : public QObject {
  Q_OBJECT

private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QVERIFY(m_dir.isValid());
    m_window = std::make_unique<MainWindow>();
    m_window->show();
    QVERIFY(QTest::qWaitForWindowExposed(m_window.get()));
    QVERIFY(prepare(*m_window));
    QVERIFY(submitPrompt(*m_window, QStringLiteral("a photo of a cat")));
    QVERIFY(m_window->willEdit() == false);
    m_window->promptEditor()->setPrompts(QStringLiteral("a photo of a cat wearing a hat"), QString());
    QVERIFY(m_window->willEdit());
    m_window->parameters()->setAttentionControl(true);
    QVERIFY(submitPrompt(*m_window, QStringLiteral("a photo of a cat wearing a hat")));
    QCOMPARE(m_window->history()->nodeCount(), 2);
    QVERIFY(m_window->history()->records().last().isEdit());
    QVERIFY(m_window->history()->records().last().edit.attention_control);
    QVERIFY(m_window->history()->records().last().stats.attention_control_steps > 0);
  }

  void exportRoundTrip() {
    const QString folder = m_dir.filePath(QStringLiteral("export"));
    QVERIFY(m_window->exportHistory(folder));
    // Nothing of the temporary folder is left beside it.
    QCOMPARE(QDir(m_dir.path()).entryList(QDir::Dirs | QDir::NoDotAndDotDot | QDir::Hidden), QStringList{QStringLiteral("export")});

    QFile json(folder + QStringLiteral("/history.json"));
    QVERIFY(json.open(QIODevice::ReadOnly));
    const QJsonObject root = QJsonDocument::fromJson(json.readAll()).object();
    QCOMPARE(root.value(QStringLiteral("version")).toInt(), fisedit::ui::kHistoryFormatVersion);
    QCOMPARE(root.value(QStringLiteral("model")).toObject().value(QStringLiteral("family")).toString(), m_window->model()->family);
    const QJsonArray nodes = root.value(QStringLiteral("nodes")).toArray();
    const QList<HistoryRecord> records = m_window->history()->records();
    QCOMPARE(nodes.size(), records.size());
    const std::string modelName = QFileInfo(m_window->model()->source).fileName().toStdString();
    for (int i = 0; i < nodes.size(); ++i) {
      const QJsonObject node = nodes[i].toObject();
      const HistoryRecord& r = records[i];
      QCOMPARE(node.value(QStringLiteral("id")).toInteger(), qint64(r.id));
      QCOMPARE(node.value(QStringLiteral("prompt")).toString().toStdString(), r.request.prompt);
      QCOMPARE(node.value(QStringLiteral("seed")).toInteger(), qint64(r.request.seed));
      QCOMPARE(node.value(QStringLiteral("steps")).toInt(), 4);
      QCOMPARE(node.value(QStringLiteral("width")).toInt(), 128);
      QCOMPARE(node.value(QStringLiteral("scheduler")).toString().toStdString(), r.request.scheduler);
      QVERIFY(node.value(QStringLiteral("timings")).toObject().value(QStringLiteral("unetMs")).toDouble() >= 0);
      const auto image = std::filesystem::path(folder.toStdString()) / node.value(QStringLiteral("image")).toString().toStdString();
      QCOMPARE(node.value(QStringLiteral("image")).toString(), fisedit::ui::nodeFileStem(i) + QStringLiteral(".png"));
      QVERIFY(samePixels(fisedit::ui::toQImage(fisedit::read_png(image)), r.image));
      const auto text = fisedit::read_png_text(image);
      QCOMPARE(text.size(), std::size_t{2});
      QCOMPARE(text[0].second, fisedit::a1111_parameters(r.request, modelName));
      QCOMPARE(text[1].first, std::string("fisedit"));
      const QJsonObject record = QJsonDocument::fromJson(QByteArray::fromStdString(text[1].second)).object();
      QCOMPARE(record.value(QStringLiteral("prompt")).toString().toStdString(), r.request.prompt);
      QCOMPARE(record.value(QStringLiteral("model_fingerprint")).toString(), m_window->model()->fingerprint);
      if (r.isEdit()) {
        QCOMPARE(node.value(QStringLiteral("parent")).toInteger(), qint64(*r.parent));
        QCOMPARE(node.value(QStringLiteral("edit")).toObject().value(QStringLiteral("mask_mode")).toString(), QStringLiteral("automatic"));
        QVERIFY(node.value(QStringLiteral("editFraction")).toDouble() > 0);
        QCOMPARE(node.value(QStringLiteral("edit")).toObject().value(QStringLiteral("attention_control")).toBool(false), true);
        QCOMPARE(node.value(QStringLiteral("editStats")).toObject().value(QStringLiteral("attentionControlSteps")).toInt(-1),
                 r.stats.attention_control_steps);
        const QJsonObject editRecord = record.value(QStringLiteral("edit")).toObject();
        QCOMPARE(editRecord.value(QStringLiteral("attention_control")).toBool(false), true);
        QCOMPARE(editRecord.value(QStringLiteral("attention_control_steps")).toInt(-1), r.stats.attention_control_steps);
        QVERIFY(QFileInfo::exists(folder + QLatin1Char('/') + node.value(QStringLiteral("mask")).toString()));
      } else {
        QVERIFY(node.value(QStringLiteral("parent")).isNull());
      }
    }
    // An export never lands on top of an earlier one.
    QVERIFY(!m_window->exportHistory(folder));
    QVERIFY(errorShown(*m_window));
  }

  void savedProjectOpensInAFreshWindow() {
    const QString path = m_dir.filePath(QStringLiteral("cats.fisedit"));
    QVERIFY(m_window->hasUnsavedChanges());
    QVERIFY(m_window->saveProject(path));
    QVERIFY(!m_window->hasUnsavedChanges());

    MainWindow fresh;  // no model loaded: a project can be looked at without one
    QVERIFY(fresh.openProject(path));
    const QList<HistoryRecord> saved = m_window->history()->records(), opened = fresh.history()->records();
    QCOMPARE(opened.size(), saved.size());
    for (int i = 0; i < saved.size(); ++i) {
      QCOMPARE(opened[i].request.prompt, saved[i].request.prompt);
      QCOMPARE(opened[i].request.seed, saved[i].request.seed);
      QCOMPARE(opened[i].isEdit(), saved[i].isEdit());
      QVERIFY(samePixels(opened[i].image, saved[i].image));
      QCOMPARE(opened[i].changedRegion, saved[i].changedRegion);
      QCOMPARE(opened[i].edit.attention_control, saved[i].edit.attention_control);
      QCOMPARE(opened[i].stats.attention_control_steps, saved[i].stats.attention_control_steps);
      QCOMPARE(opened[i].edit.detect_steps, saved[i].edit.detect_steps);
      QCOMPARE(opened[i].edit.mask_mode, saved[i].edit.mask_mode);
      QVERIFY(opened[i].restored);
    }
    QVERIFY(opened[1].edit.attention_control);
    QVERIFY(opened[1].stats.attention_control_steps > 0);
    QCOMPARE(*opened[1].parent, opened[0].id);
    QCOMPARE(fresh.history()->tree()->topLevelItem(0)->childCount(), 1);
    QCOMPARE(fresh.projectPath(), path);
    QVERIFY(!fresh.hasUnsavedChanges());
  }

  // Written before attention control was kept: the edit opens with it off, as it was made.
  void projectWithoutAttentionControlOpens() {
    QFile saved(m_dir.filePath(QStringLiteral("cats.fisedit")));
    QVERIFY(saved.open(QIODevice::ReadOnly));
    QJsonObject root = QJsonDocument::fromJson(saved.readAll()).object();
    QJsonArray nodes = root.value(QStringLiteral("nodes")).toArray();
    int removed = 0;
    for (auto node : nodes) {
      QJsonObject n = node.toObject();
      QJsonObject edit = n.value(QStringLiteral("edit")).toObject(), stats = n.value(QStringLiteral("editStats")).toObject();
      removed += edit.contains(QStringLiteral("attention_control")) + stats.contains(QStringLiteral("attentionControlSteps"));
      edit.remove(QStringLiteral("attention_control"));
      stats.remove(QStringLiteral("attentionControlSteps"));
      if (n.contains(QStringLiteral("edit"))) n.insert(QStringLiteral("edit"), edit);
      if (n.contains(QStringLiteral("editStats"))) n.insert(QStringLiteral("editStats"), stats);
      node = n;
    }
    QCOMPARE(removed, 2);  // the edit's two keys
    root.insert(QStringLiteral("nodes"), nodes);
    QFile old(m_dir.filePath(QStringLiteral("before-attention-control.fisedit")));
    QVERIFY(old.open(QIODevice::WriteOnly));
    old.write(QJsonDocument(root).toJson());
    old.close();

    const auto read = fisedit::ui::loadProject(old.fileName());
    QVERIFY2(read.ok(), qPrintable(read.error));
    QCOMPARE(read.content.records.size(), 2);
    const HistoryRecord& edit = read.content.records[1];
    QVERIFY(edit.isEdit());
    QVERIFY(!edit.edit.attention_control);
    QCOMPARE(edit.stats.attention_control_steps, 0);
    QCOMPARE(edit.request.prompt, std::string("a photo of a cat wearing a hat"));
  }

  // Version 1 spelled the request's keys in camelCase: such a project opens with the same requests and
  // edit settings.
  void versionOneProjectWithCamelCaseKeysOpens() {
    QFile saved(m_dir.filePath(QStringLiteral("cats.fisedit")));
    QVERIFY(saved.open(QIODevice::ReadOnly));
    QJsonObject root = QJsonDocument::fromJson(saved.readAll()).object();
    root.insert(QStringLiteral("version"), 1);
    const auto rename = [](QJsonObject& o, const char* from, const char* to) {
      QVERIFY2(o.contains(QLatin1String(from)), from);
      o.insert(QLatin1String(to), o.take(QLatin1String(from)));
    };
    QJsonArray nodes = root.value(QStringLiteral("nodes")).toArray();
    for (auto node : nodes) {
      QJsonObject n = node.toObject();
      rename(n, "negative_prompt", "negativePrompt");
      rename(n, "cfg_scale", "cfgScale");
      if (n.contains(QStringLiteral("edit"))) {
        QJsonObject edit = n.value(QStringLiteral("edit")).toObject();
        rename(edit, "mask_mode", "maskMode");
        rename(edit, "mask_margin", "margin");
        rename(edit, "detect_steps", "detectSteps");
        rename(edit, "attention_control", "attentionControl");
        rename(edit, "whole_image_if_global", "wholeImageIfGlobal");
        n.insert(QStringLiteral("edit"), edit);
      }
      node = n;
    }
    root.insert(QStringLiteral("nodes"), nodes);
    QFile old(m_dir.filePath(QStringLiteral("version-1.fisedit")));
    QVERIFY(old.open(QIODevice::WriteOnly));
    old.write(QJsonDocument(root).toJson(QJsonDocument::Compact));
    old.close();

    const auto read = fisedit::ui::loadProject(old.fileName());
    QVERIFY2(read.ok(), qPrintable(read.error));
    const QList<HistoryRecord> records = m_window->history()->records();
    QCOMPARE(read.content.records.size(), records.size());
    for (int i = 0; i < records.size(); ++i) {
      const HistoryRecord &a = read.content.records[i], &b = records[i];
      QCOMPARE(a.request.prompt, b.request.prompt);
      QCOMPARE(a.request.negative_prompt, b.request.negative_prompt);
      QCOMPARE(a.request.seed, b.request.seed);
      QCOMPARE(a.request.steps, b.request.steps);
      QCOMPARE(a.request.cfg_scale, b.request.cfg_scale);
      QCOMPARE(a.request.scheduler, b.request.scheduler);
      QCOMPARE(a.request.width, b.request.width);
      QCOMPARE(a.request.height, b.request.height);
      QCOMPARE(a.isEdit(), b.isEdit());
      if (!b.isEdit()) continue;
      QCOMPARE(a.edit.mask_mode, b.edit.mask_mode);
      QCOMPARE(a.edit.margin, b.edit.margin);
      QCOMPARE(a.edit.detect_steps, b.edit.detect_steps);
      QCOMPARE(a.edit.feather, b.edit.feather);
      QCOMPARE(a.edit.attention_control, b.edit.attention_control);
      QCOMPARE(a.edit.whole_image_if_global, b.edit.whole_image_if_global);
      QCOMPARE(a.edit.prompt, b.request.prompt);
    }
    QVERIFY(read.content.records[1].edit.attention_control);
  }

  // A request key of the wrong type is damage, reported with the node and the key.
  void mistypedRequestKeyIsReported() {
    QFile saved(m_dir.filePath(QStringLiteral("cats.fisedit")));
    QVERIFY(saved.open(QIODevice::ReadOnly));
    QJsonObject root = QJsonDocument::fromJson(saved.readAll()).object();
    QJsonArray nodes = root.value(QStringLiteral("nodes")).toArray();
    QJsonObject first = nodes[0].toObject();
    first.insert(QStringLiteral("steps"), QStringLiteral("four"));
    nodes[0] = first;
    root.insert(QStringLiteral("nodes"), nodes);
    QFile bad(m_dir.filePath(QStringLiteral("mistyped.fisedit")));
    QVERIFY(bad.open(QIODevice::WriteOnly));
    bad.write(QJsonDocument(root).toJson());
    bad.close();
    const auto read = fisedit::ui::loadProject(bad.fileName());
    QVERIFY(!read.ok());
    const QString expected = QStringLiteral("mistyped.fisedit is damaged: node %1: \"steps\" must be an integer, got string \"four\"")
                                 .arg(first.value(QStringLiteral("id")).toInteger());
    QVERIFY2(read.error.startsWith(expected), qPrintable(read.error));
  }

  void damagedProjectIsRefused_data() {
    QTest::addColumn<QByteArray>("content");
    QTest::addColumn<QString>("message");
    QFile saved(m_dir.filePath(QStringLiteral("cats.fisedit")));
    QVERIFY(saved.open(QIODevice::ReadOnly));
    const QByteArray whole = saved.readAll();
    QTest::newRow("truncated") << whole.left(whole.size() / 2) << QStringLiteral("damaged");
    QByteArray newer = whole;
    const QByteArray version = "\"version\":" + QByteArray::number(fisedit::ui::kHistoryFormatVersion);
    QVERIFY(newer.contains(version));
    newer.replace(version, "\"version\":99");
    QTest::newRow("wrong version") << newer << QStringLiteral("version 99");
    QTest::newRow("not a project") << QByteArray("{\"hello\": 1}") << QStringLiteral("not a fisedit project");
    // A number past double's range is nlohmann's out_of_range, not a parse_error: it ended the app
    // (tests/fuzz/fuzz_project's first crash).
    QTest::newRow("number overflow") << QByteArray("{\"format\": \"fisedit-project\", \"version\": 8E888}")
                                     << QStringLiteral("number overflow");
  }

  void damagedProjectIsRefused() {
    QFETCH(QByteArray, content);
    QFETCH(QString, message);
    const QString path = m_dir.filePath(QStringLiteral("bad.fisedit"));
    QFile file(path);
    QVERIFY(file.open(QIODevice::WriteOnly | QIODevice::Truncate));
    file.write(content);
    file.close();
    const QList<HistoryRecord> before = m_window->history()->records();
    const auto current = m_window->history()->currentNode();
    QVERIFY(!m_window->openProject(path));
    QVERIFY(errorShown(*m_window));
    QVERIFY2(errorText(*m_window).contains(message), qPrintable(errorText(*m_window)));
    QCOMPARE(m_window->history()->nodeCount(), before.size());
    QCOMPARE(m_window->history()->currentNode(), current);
    QVERIFY(!m_window->history()->records().first().restored);
    QCOMPARE(m_window->projectPath(), m_dir.filePath(QStringLiteral("cats.fisedit")));
  }

  // A project made with another model (here: its fingerprint says so) stays view-only: changing a
  // restored node's prompt makes a new image with its parameters instead of an edit, and its id
  // cannot collide with the session's.
  void generatingFromARestoredNodeStartsANewImage() {
    QFile saved(m_dir.filePath(QStringLiteral("cats.fisedit")));
    QVERIFY(saved.open(QIODevice::ReadOnly));
    QJsonObject root = QJsonDocument::fromJson(saved.readAll()).object();
    QJsonObject model = root.value(QStringLiteral("model")).toObject();
    QCOMPARE(model.value(QStringLiteral("fingerprint")).toString(), m_window->model()->fingerprint);
    model.insert(QStringLiteral("fingerprint"), QStringLiteral("0123456789abcdef"));
    root.insert(QStringLiteral("model"), model);
    QFile other(m_dir.filePath(QStringLiteral("other-model.fisedit")));
    QVERIFY(other.open(QIODevice::WriteOnly));
    other.write(QJsonDocument(root).toJson());
    other.close();
    QSignalSpy adopted(m_window.get(), &MainWindow::restoredNodesAdopted);
    QVERIFY(m_window->openProject(other.fileName()));
    QCOMPARE(adopted.count(), 1);
    QCOMPARE(adopted.first().at(0).toInt(), 0);
    QCOMPARE(m_window->history()->nodeCount(), 2);
    const HistoryRecord restoredEdit = m_window->history()->records().last();
    m_window->history()->selectNode(restoredEdit.id);
    m_window->promptEditor()->setPrompts(QStringLiteral("a photo of a cat wearing a red hat"), QString());
    QVERIFY(!m_window->willEdit());
    QVERIFY(submitPrompt(*m_window, QStringLiteral("a photo of a cat wearing a red hat")));
    QCOMPARE(m_window->history()->nodeCount(), 3);
    const HistoryRecord* made = m_window->history()->record(*m_window->history()->currentNode());
    QVERIFY(!made->isEdit() && !made->restored);
    QCOMPARE(made->request.steps, restoredEdit.request.steps);
    QCOMPARE(made->request.width, restoredEdit.request.width);
    QCOMPARE(m_window->history()->tree()->topLevelItemCount(), 2);
  }

  void closingWithUnsavedHistoryAsks() {
    QVERIFY(m_window->saveProject(m_window->projectPath()));
    QVERIFY(!m_window->hasUnsavedChanges());
    QVERIFY(submitPrompt(*m_window, QStringLiteral("a photo of a dog")));  // a new generation
    QVERIFY(m_window->hasUnsavedChanges());
    bool appeared = false;
    answerUnsavedBox(QMessageBox::Cancel, &appeared);
    QVERIFY(!m_window->close());
    QVERIFY(appeared);
    QVERIFY(m_window->isVisible());
    appeared = false;
    answerUnsavedBox(QMessageBox::Discard, &appeared);
    QVERIFY(m_window->close());
    QVERIFY(appeared);
  }

  void cleanupTestCase() { m_window.reset(); }

private:
  QTemporaryDir m_dir;
  std::unique_ptr<MainWindow> m_window;
};

QTEST_MAIN(TestProjectFile)
#include "test_project_file.moc"
