// The history as people use it, through the real window, worker and engine (issue 13): a model switch keeps every node (view only, exportable, editing one is offered its model or told why it cannot be), a deleted subtree comes back with Edit > Undo, "N% re-rendered" is the share of pixels the changed region allows to change, an edit's step previews keep the base image outside its region, file dialogs remember their folders with Recent Projects and Models menus, and the small comforts (title, progress text, zoom, disabled overlay).
#include "test_support.h"
#include "window_driver.h"
#include "ui/history_panel.h"
#include "ui/image_canvas.h"
#include "ui/main_window.h"
#include "ui/mask_toolbar.h"
#include "ui/painted_mask.h"
#include "ui/parameters_panel.h"
#include "ui/project_file.h"
#include "ui/model_worker.h"
#include "backend/cpu/cpu_backend.h"
#include "io/model_loader.h"
#include "pipeline/edit_session.h"
#include "ui/prompt_editor.h"

#include <QtTest>
#include <QAction>
#include <QCheckBox>
#include <QScopeGuard>
#include <QSpinBox>
#include <QDir>
#include <QFileDialog>
#include <QFormLayout>
#include <QGroupBox>
#include <QMenu>
#include <QProgressBar>
#include <QSettings>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QMessageBox>
#include <QTimer>
#include <QPushButton>
#include <QSignalSpy>
#include <QSplitter>
#include <QStatusBar>
#include <QTemporaryDir>
#include <QTreeWidget>

#include <algorithm>
#include <filesystem>

#include <sys/stat.h>

using fisedit::ui::HistoryRecord;
using fisedit::ui::MainWindow;

namespace {

using fisedit::test::kJobTimeoutMs;
using fisedit::test::submitPrompt;
using fisedit::test::kBlueHouse;
using fisedit::test::kGreenHouse;
using fisedit::test::kHouse;
using fisedit::test::kHouseAndTree;
using fisedit::test::tinyModel;
using fisedit::test::toyModel;


bool prepare(MainWindow& window, const QString& model) { return fisedit::test::prepareWindow(window, model); }

const HistoryRecord* current(const MainWindow& w) { return w.history()->record(*w.history()->currentNode()); }

QTreeWidgetItem* itemOf(const MainWindow& w, quint64 id) {
  QTreeWidget* tree = w.history()->tree();
  for (QTreeWidgetItemIterator it(tree); *it; ++it)
    if ((*it)->data(0, Qt::UserRole).toULongLong() == id) return *it;
  return nullptr;
}

// Triggers `action` (one that opens a file dialog) and returns the folder the dialog starts in; the
// dialog is cancelled.
QString dialogFolderOf(QAction* action) {
  if (!action) return QStringLiteral("<no action>");
  QString folder = QStringLiteral("<no dialog>");
  QTimer::singleShot(0, [&folder] {
    auto* dialog = qobject_cast<QFileDialog*>(QApplication::activeModalWidget());
    if (!dialog) return;
    folder = QDir(dialog->directory()).canonicalPath();
    dialog->reject();
  });
  action->trigger();
  return folder;
}

// The paths a File > Recent menu lists, newest first.
QStringList recentPaths(const MainWindow& w, const char* menuName) {
  QStringList paths;
  auto* menu = w.findChild<QMenu*>(QLatin1String(menuName));
  if (!menu) return {QStringLiteral("<no menu>")};
  for (QAction* a : menu->actions())
    if (!a->data().toString().isEmpty()) paths << a->data().toString();
  return paths;
}

QAction* recentAction(const MainWindow& w, const char* menuName, const QString& path) {
  auto* menu = w.findChild<QMenu*>(QLatin1String(menuName));
  if (!menu) return nullptr;
  for (QAction* a : menu->actions())
    if (a->data().toString() == path) return a;
  return nullptr;
}

// A brush stroke on the shown image, as the user paints it.
void paintStroke(MainWindow& w, QPointF from, QPointF to) {
  auto* mask = w.canvas()->mask();
  mask->beginStroke(from, fisedit::ui::PaintedMask::Tool::brush, 16);
  mask->extendStroke(to);
  mask->endStroke();
}

// Every preview the canvas shows while a job runs, into `previews`.
void collectPreviews(MainWindow& w, QList<QImage>& previews) {
  QObject::connect(w.canvas(), &fisedit::ui::ImageCanvas::previewShown, &w, [&w, &previews] {
    if (w.isBusy()) previews << w.canvas()->preview().convertToFormat(QImage::Format_RGB888);
  });
}

// What is wrong with an edit's previews: a pixel outside the edit's region that is not the base's, a
// preview that shows nothing being re-rendered, or most of the image inside the region; empty if none.
QString previewProblem(const QList<QImage>& previews, const QImage& baseImage, const QImage& changedRegion) {
  const QImage base = baseImage.convertToFormat(QImage::Format_RGB888);
  const QImage region = changedRegion.convertToFormat(QImage::Format_Grayscale8);
  for (const QImage& preview : previews) {
    if (preview.size() != base.size()) return QStringLiteral("a preview of another size");
    int changedInside = 0, outside = 0;
    for (int y = 0; y < base.height(); ++y)
      for (int x = 0; x < base.width(); ++x) {
        const bool same = preview.pixel(x, y) == base.pixel(x, y);
        if (qGray(region.pixel(x, y)) == 0) {
          ++outside;
          if (!same) return QStringLiteral("pixel %1,%2 outside the region differs from the base").arg(x).arg(y);
        } else {
          changedInside += !same;
        }
      }
    if (changedInside == 0) return QStringLiteral("the preview does not show the region being re-rendered");
    if (outside < base.width() * base.height() / 4) return QStringLiteral("the painted region covers most of the image");
  }
  return {};
}

// Switches the window to `model` and waits for its engine and for the adoption of the history.
bool switchModel(MainWindow& w, const QString& model) {
  QSignalSpy adopted(&w, &MainWindow::restoredNodesAdopted);
  if (!prepare(w, model)) return false;
  return QTest::qWaitFor([&] { return adopted.count() >= 1; }, kJobTimeoutMs);
}

}  // namespace

class TestHistoryKeeping : public QObject {
  Q_OBJECT

private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QVERIFY(m_dir.isValid());
  }

  // Opening another model keeps the history: view only, marked, exportable; editing a node offers to
  // switch back, and after the switch the edit lands on it.
  void modelSwitchKeepsTheHistory() {
    MainWindow w;
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    QVERIFY(prepare(w, toyModel()));
    const QString toyFingerprint = w.model()->fingerprint;
    QVERIFY(submitPrompt(w, kHouse));
    QVERIFY(submitPrompt(w, kGreenHouse));
    QVERIFY(current(w)->isEdit());
    const QList<HistoryRecord> made = w.history()->records();
    QVERIFY(w.hasUnsavedChanges());

    QVERIFY(switchModel(w, tinyModel()));
    QCOMPARE(w.history()->nodeCount(), 2);
    QVERIFY(w.hasUnsavedChanges());  // nothing was saved, and nothing was thrown away either
    for (const HistoryRecord& r : w.history()->records()) {
      QVERIFY(r.restored);
      QCOMPARE(r.model.fingerprint, toyFingerprint);
      QVERIFY2(itemOf(w, r.id)->text(0).contains(QLatin1String("view only")), qPrintable(itemOf(w, r.id)->text(0)));
    }
    QCOMPARE(w.history()->records()[1].image, made[1].image);
    // Nothing to paint on a view-only image; the title says the history is not saved.
    QVERIFY(!w.maskTools()->brushAction()->isEnabled() && !w.maskTools()->invertAction()->isEnabled());
    QVERIFY(w.isWindowModified() && w.windowTitle().contains(QLatin1String("Untitled")));
    // Viewable and exportable.
    w.history()->selectNode(made[1].id);
    QCOMPARE(w.canvas()->image().convertToFormat(QImage::Format_RGB888), made[1].image.convertToFormat(QImage::Format_RGB888));
    const QString png = m_dir.filePath(QStringLiteral("view-only.png"));
    QVERIFY(w.exportImage(png));
    QVERIFY(QFileInfo(png).size() > 0);

    // Changing its prompt: the bar above the canvas says why it cannot be edited here and offers the
    // model that made it; Generate would make a new image with the open model.
    w.promptEditor()->setPrompts(kBlueHouse, QString());
    QVERIFY(!w.willEdit());
    auto* bar = w.findChild<QWidget*>(QStringLiteral("viewOnlyBar"));
    auto* text = w.findChild<QLabel*>(QStringLiteral("viewOnlyText"));
    auto* switchButton = w.findChild<QPushButton*>(QStringLiteral("switchModelButton"));
    QVERIFY(bar && text && switchButton);
    QVERIFY(bar->isVisible() && switchButton->isVisible() && switchButton->isEnabled());
    QVERIFY2(text->text().contains(QLatin1String("toyworld")) && text->text().contains(QLatin1String("View only")),
             qPrintable(text->text()));
    QVERIFY2(switchButton->text().contains(QLatin1String("toyworld")), qPrintable(switchButton->text()));

    // Switch: the toy model loads, adopts its nodes, and the prompt typed is an edit again.
    QSignalSpy adopted(&w, &MainWindow::restoredNodesAdopted);
    QTest::mouseClick(switchButton, Qt::LeftButton);
    QVERIFY(w.isLoading());
    QTRY_VERIFY_WITH_TIMEOUT(adopted.count() >= 1 && adopted.last().at(0).toInt() == 2, kJobTimeoutMs);
    QVERIFY(!bar->isVisible());
    QCOMPARE(w.model()->fingerprint, toyFingerprint);
    QCOMPARE(w.promptEditor()->prompt(), kBlueHouse);
    QVERIFY(w.willEdit());
    const quint64 base = *w.history()->currentNode();
    QVERIFY(submitPrompt(w, kBlueHouse));
    QVERIFY(current(w)->isEdit());
    QCOMPARE(*current(w)->parent, base);
    QCOMPARE(current(w)->regeneration.nodes, 2);  // its cache rebuilt: the root, then the edit it came from
    // The rebuild is shown apart; the time and speed-up are the edit's own.
    QVERIFY2(itemOf(w, current(w)->id)->text(0).contains(QLatin1String("cache rebuild")), qPrintable(itemOf(w, current(w)->id)->text(0)));
    QVERIFY(fisedit::ui::editMs(*current(w)) < current(w)->totalMs);
    QVERIFY(w.maskTools()->brushAction()->isEnabled());
    QVERIFY(!itemOf(w, current(w)->id)->text(0).contains(QLatin1String("view only")));
  }

  // A node whose model is gone cannot be edited: the bar says why, with no switch to offer.
  void missingModelIsExplained() {
    const QString copy = m_dir.filePath(QStringLiteral("toy-copy"));
    std::filesystem::copy(toyModel().toStdString(), copy.toStdString(), std::filesystem::copy_options::recursive);
    MainWindow w;
    w.show();
    QVERIFY(prepare(w, copy));
    QVERIFY(submitPrompt(w, kHouse));
    QVERIFY(switchModel(w, tinyModel()));
    QVERIFY(current(w)->restored);
    std::filesystem::remove_all(copy.toStdString());
    w.history()->selectNode(w.history()->records().first().id);  // shows the bar for it again
    w.promptEditor()->setPrompts(kBlueHouse, QString());
    const QString text = w.findChild<QLabel*>(QStringLiteral("viewOnlyText"))->text();
    QVERIFY2(text.contains(QLatin1String("no longer at")) && text.contains(copy), qPrintable(text));
    QVERIFY(!w.findChild<QPushButton*>(QStringLiteral("switchModelButton"))->isVisible());
    // Generate makes a new image with the open model instead.
    QSignalSpy finished(&w, &MainWindow::jobFinished);
    w.submit();
    QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, kJobTimeoutMs);
    QVERIFY2(finished.first().first().toBool(), qPrintable(w.statusBar()->currentMessage()));
    QCOMPARE(w.history()->nodeCount(), 2);
    QVERIFY(!current(w)->isEdit() && !current(w)->restored);
  }

  // Deleting a node takes its subtree and says how many; Edit > Undo (Ctrl+Z) puts it back with its
  // images, editable at once from the caches the session still holds.
  void deletionIsUndone() {
    MainWindow w;
    w.show();
    QVERIFY(QTest::qWaitForWindowActive(&w));
    QVERIFY(prepare(w, toyModel()));
    QVERIFY(submitPrompt(w, kHouse));
    QVERIFY(submitPrompt(w, kGreenHouse));
    QVERIFY(submitPrompt(w, kBlueHouse));
    const QList<HistoryRecord> made = w.history()->records();
    QCOMPARE(made.size(), 3);

    w.history()->selectNode(made[1].id);  // the first edit, with the second below it
    auto* remove = w.history()->tree()->findChild<QAction*>(QStringLiteral("deleteNodeAction"));
    QVERIFY(remove);
    QVERIFY2(remove->text().contains(QLatin1String("1 image")), qPrintable(remove->text()));
    w.history()->tree()->setFocus();
    QTest::keyClick(w.history()->tree(), Qt::Key_Delete);
    QCOMPARE(w.history()->nodeCount(), 1);
    const QString status = w.statusBar()->currentMessage();
    QVERIFY2(status.contains(QLatin1String("Deleted 2 image")) && status.contains(QLatin1String("Undo")), qPrintable(status));
    auto* undo = w.findChild<QAction*>(QStringLiteral("undoAction"));
    QVERIFY(undo && undo->isEnabled());
    QVERIFY2(undo->text().contains(QLatin1String("2 image")), qPrintable(undo->text()));

    QTest::keyClick(w.history()->tree(), Qt::Key_Z, Qt::ControlModifier);
    QCOMPARE(w.history()->nodeCount(), 3);
    const QList<HistoryRecord> back = w.history()->records();
    for (int i = 0; i < 3; ++i) {
      QCOMPARE(back[i].id, made[i].id);
      QCOMPARE(back[i].parent, made[i].parent);
      QCOMPARE(back[i].image, made[i].image);
      QVERIFY(!back[i].restored);
    }
    QCOMPARE(*w.history()->currentNode(), made[1].id);
    QCOMPARE(itemOf(w, made[2].id)->parent(), itemOf(w, made[1].id));
    QVERIFY(!undo->isEnabled());

    // The restored leaf edits from its cache, still held: nothing is recomputed first.
    w.history()->selectNode(made[2].id);
    QVERIFY(submitPrompt(w, kHouse));
    QCOMPARE(*current(w)->parent, made[2].id);
    QCOMPARE(current(w)->regeneration.nodes, 0);

    // Deleted, then another model opened: the undo brings the subtree back view-only.
    w.history()->selectNode(made[0].id);
    w.history()->removeCurrent();
    QCOMPARE(w.history()->nodeCount(), 0);
    QVERIFY(prepare(w, tinyModel()));  // a new session: the deleted nodes' caches went with the old one
    undo->trigger();
    QCOMPARE(w.history()->nodeCount(), 4);
    for (const HistoryRecord& r : w.history()->records()) QVERIFY(r.restored);
    // The new session's nodes do not collide with the view-only ones.
    w.history()->selectNode(w.history()->records().first().id);
    QSignalSpy finished(&w, &MainWindow::jobFinished);
    w.promptEditor()->setPrompts(QStringLiteral("a photo of a cat"), QString());
    w.submit();
    QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, kJobTimeoutMs);
    QCOMPARE(w.history()->nodeCount(), 5);
  }

  // The Generate button and the progress stay in the window at 800x600, an error banner included,
  // and the canvas gets more room than the history at 1024x640.
  void layoutKeepsGenerateInView() {
    for (const QSize size : {QSize(800, 600), QSize(1024, 640), QSize(1280, 800)}) {
      MainWindow w;
      w.resize(size);
      w.show();
      QVERIFY(QTest::qWaitForWindowExposed(&w));
      QSignalSpy failed(&w, &MainWindow::loadFailed);
      w.openModel(m_dir.filePath(QStringLiteral("no-such-model")));  // the red banner
      QTRY_COMPARE_WITH_TIMEOUT(failed.count(), 1, kJobTimeoutMs);
      QCoreApplication::processEvents();
      auto* splitter = w.findChild<QSplitter*>(QStringLiteral("mainSplitter"));
      QString minimums;
      for (int i = 0; i < splitter->count(); ++i)
        minimums += QStringLiteral(" %1/%2").arg(splitter->widget(i)->minimumSizeHint().width()).arg(splitter->widget(i)->minimumWidth());
      QVERIFY2(w.width() <= size.width(), qPrintable(QStringLiteral("%1 wide for %2; columns need%3; central %4")
                                                          .arg(w.width()).arg(size.width()).arg(minimums)
                                                          .arg(w.centralWidget()->minimumSizeHint().width())));
      auto* button = w.findChild<QPushButton*>(QStringLiteral("generateButton"));
      QVERIFY(button && button->isVisible());
      const QRect inWindow(button->mapTo(&w, QPoint(0, 0)), button->size());
      QVERIFY2(w.rect().contains(inWindow), qPrintable(QStringLiteral("%1x%2: button at %3,%4 %5x%6")
                                                          .arg(size.width()).arg(size.height())
                                                          .arg(inWindow.x()).arg(inWindow.y())
                                                          .arg(inWindow.width()).arg(inWindow.height())));
      auto* progress = w.findChild<QWidget*>(QStringLiteral("jobProgress"));
      QVERIFY(progress);
      QVERIFY(QRect(progress->mapTo(&w, QPoint(0, 0)), progress->size()).bottom() <= w.rect().bottom());
      const QList<int> columns = w.findChild<QSplitter*>(QStringLiteral("mainSplitter"))->sizes();
      QVERIFY2(columns[1] > columns[2], qPrintable(QStringLiteral("%1x%2: canvas %3, side %4")
                                                       .arg(size.width()).arg(size.height()).arg(columns[1]).arg(columns[2])));
    }
  }

  // "N% re-rendered" is one figure: the share of the image's pixels in the changed region (what the
  // overlay shows and the exported mask holds), in the row, the status bar, the tooltip, the legend
  // and the exported JSON; and a painted region grows by at most its latent cells plus the margin.
  void regionFigureIsTheChangedRegion() {
    MainWindow w;
    w.show();
    QVERIFY(prepare(w, toyModel()));
    QVERIFY(submitPrompt(w, kHouse));
    const int margin = w.parameters()->editOptions().margin;
    QCOMPARE(margin, 2);  // the default
    auto* mask = w.canvas()->mask();
    mask->beginStroke(QPointF(44, 50), fisedit::ui::PaintedMask::Tool::brush, 12);
    mask->extendStroke(QPointF(70, 58));
    mask->endStroke();
    const QImage painted = mask->image().convertToFormat(QImage::Format_Grayscale8);
    QVERIFY(submitPrompt(w, kGreenHouse));
    const HistoryRecord r = *current(w);
    QCOMPARE(r.edit.mask_mode, fisedit::MaskMode::painted);

    // The figure is the region's white share.
    const QImage region = r.changedRegion.convertToFormat(QImage::Format_Grayscale8);
    qint64 white = 0;
    for (int y = 0; y < region.height(); ++y)
      for (int x = 0; x < region.width(); ++x) white += qGray(region.pixel(x, y)) > 127;
    const double share = static_cast<double>(white) / (region.width() * region.height());
    QCOMPARE(fisedit::ui::changedFraction(r), share);
    const QString figure = fisedit::ui::percent(share);
    QVERIFY2(itemOf(w, r.id)->text(0).contains(figure + QStringLiteral(" re-rendered")), qPrintable(itemOf(w, r.id)->text(0)));
    QVERIFY2(w.statusBar()->currentMessage().contains(figure + QStringLiteral(" of the image re-rendered")),
             qPrintable(w.statusBar()->currentMessage()));
    const QString tip = itemOf(w, r.id)->toolTip(0);
    QVERIFY2(tip.contains(figure + QStringLiteral(" of the image may change")) && tip.contains(QLatin1String("painted")) &&
                 tip.contains(QLatin1String("latent cells")) && tip.contains(QLatin1String("margin")),
             qPrintable(tip));
    QVERIFY2(w.canvas()->overlayLegend().contains(figure), qPrintable(w.canvas()->overlayLegend()));
    const fisedit::TextChunks chunks = fisedit::ui::imageTextChunks(r);
    const auto json = std::find_if(chunks.begin(), chunks.end(), [](const auto& c) { return c.first == "fisedit"; });
    QVERIFY(json != chunks.end());
    const QJsonObject record = QJsonDocument::fromJson(QByteArray::fromStdString(json->second)).object();
    QCOMPARE(record.value(QStringLiteral("edit")).toObject().value(QStringLiteral("changed_fraction")).toDouble(), share);

    // Growth: the region stays within the painted pixels' 8-px cells widened by the margin's cells.
    const int cellsH = painted.height() / 8, cellsW = painted.width() / 8;
    QList<bool> cells(cellsH * cellsW, false);
    for (int y = 0; y < painted.height(); ++y)
      for (int x = 0; x < painted.width(); ++x)
        if (qGray(painted.pixel(x, y)) > 127) cells[(y / 8) * cellsW + x / 8] = true;
    int outside = 0;
    for (int y = 0; y < region.height(); ++y)
      for (int x = 0; x < region.width(); ++x) {
        if (qGray(region.pixel(x, y)) <= 127) continue;
        bool near = false;
        for (int cy = std::max(0, y / 8 - margin); cy <= std::min(cellsH - 1, y / 8 + margin) && !near; ++cy)
          for (int cx = std::max(0, x / 8 - margin); cx <= std::min(cellsW - 1, x / 8 + margin) && !near; ++cx)
            near = cells[cy * cellsW + cx];
        outside += !near;
      }
    QCOMPARE(outside, 0);
    QVERIFY(share > 0);
  }

  // Small ones: the exported history folder gets the user's umask, not a temporary folder's 0700, and
  // the quit prompt says that only deletions are unsaved when that is so.
  void exportFolderAndQuitPrompt() {
    MainWindow w;
    w.show();
    QVERIFY(prepare(w, toyModel()));
    QVERIFY(submitPrompt(w, kHouse));
    QVERIFY(submitPrompt(w, kGreenHouse));
    const QString folder = m_dir.filePath(QStringLiteral("exported"));
    QVERIFY(w.exportHistory(folder));
    const mode_t mask = ::umask(0);
    ::umask(mask);
    struct stat st {};
    QCOMPARE(::stat(QFile::encodeName(folder).constData(), &st), 0);
    QCOMPARE(st.st_mode & 0777, 0777 & ~mask);

    QVERIFY(w.saveProject(m_dir.filePath(QStringLiteral("two.fisedit"))));
    w.history()->removeCurrent();  // the edit: only a deletion is unsaved now
    QVERIFY(w.hasUnsavedChanges());
    QString text;
    QTimer::singleShot(0, [&text] {
      auto* box = qobject_cast<QMessageBox*>(QApplication::activeModalWidget());
      if (!box || box->objectName() != QLatin1String("unsavedChangesBox")) return;
      text = box->text();
      box->button(QMessageBox::Cancel)->click();
    });
    QVERIFY(!w.close());  // cancelled
    QVERIFY2(text.contains(QLatin1String("deleted")) && !text.contains(QLatin1String("images that are not saved")),
             qPrintable(text));
    QVERIFY(submitPrompt(w, kBlueHouse));
    QTimer::singleShot(0, [&text] {
      auto* box = qobject_cast<QMessageBox*>(QApplication::activeModalWidget());
      if (!box) return;
      text = box->text();
      box->button(QMessageBox::Discard)->click();
    });
    QVERIFY(w.close());
    QVERIFY2(text.contains(QLatin1String("images that are not saved")), qPrintable(text));
  }

  // An edit's step previews show the base image with only the region being re-rendered changing:
  // every pixel outside the edit's region is the base image's, through the real worker and canvas,
  // and an edit that first rebuilds its cache (a reopened project) shows nothing of the rebuild.
  void editPreviewKeepsTheBaseOutside() {
    const QString project = m_dir.filePath(QStringLiteral("previews.fisedit"));
    {
      MainWindow w;
      w.show();
      QVERIFY(prepare(w, toyModel()));
      w.parameters()->setSteps(8);
      QVERIFY(submitPrompt(w, kHouse));
      const HistoryRecord base = *current(w);
      paintStroke(w, QPointF(40, 40), QPointF(70, 70));
      QList<QImage> previews;
      collectPreviews(w, previews);
      QVERIFY(submitPrompt(w, kGreenHouse));
      QVERIFY(current(w)->isEdit());
      QVERIFY2(!previews.isEmpty(), "no preview during the edit");
      const QString problem = previewProblem(previews, base.image, current(w)->changedRegion);
      QVERIFY2(problem.isEmpty(), qPrintable(problem));
      QVERIFY(w.saveProject(project));
    }

    MainWindow w;
    w.show();
    QSignalSpy adopted(&w, &MainWindow::restoredNodesAdopted);
    QVERIFY(prepare(w, toyModel()));
    QVERIFY(w.openProject(project));
    QTRY_VERIFY_WITH_TIMEOUT(adopted.count() >= 1 && adopted.last().at(0).toInt() == 2, kJobTimeoutMs);
    const HistoryRecord base = w.history()->records().at(1);  // the edit: its rebuild replays the generation and the edit
    w.history()->selectNode(base.id);
    paintStroke(w, QPointF(20, 90), QPointF(40, 110));
    QList<QImage> previews;
    collectPreviews(w, previews);
    QVERIFY(submitPrompt(w, kBlueHouse));
    QCOMPARE(current(w)->regeneration.nodes, 2);
    QVERIFY2(!previews.isEmpty(), "no preview during the edit");
    const QString problem = previewProblem(previews, base.image, current(w)->changedRegion);
    QVERIFY2(problem.isEmpty(), qPrintable(problem));
  }

  // File dialogs start in the last folder of their kind, across sessions; File > Recent Projects and
  // Recent Models list what was opened (newest first, at most 8), open it, and drop what is gone with
  // a message; the title names the project, with the unsaved marker.
  void filesRememberTheirFolders() {
    {
      QSettings settings(QStringLiteral("fisedit"), QStringLiteral("fisedit"));
      settings.remove(QStringLiteral("browse"));
      settings.remove(QStringLiteral("recent"));
    }
    const QString projects = m_dir.filePath(QStringLiteral("projects")), exports = m_dir.filePath(QStringLiteral("pngs"));
    QVERIFY(QDir().mkpath(projects) && QDir().mkpath(exports));
    const QString one = QDir(projects).filePath(QStringLiteral("one.fisedit"));
    {
      MainWindow w;
      w.show();
      QVERIFY(prepare(w, tinyModel()));
      QVERIFY(submitPrompt(w, QStringLiteral("a photo of a cat")));
      QVERIFY(w.isWindowModified() && w.windowTitle().contains(QLatin1String("Untitled[*]")));
      QVERIFY(w.saveProject(one));
      QVERIFY2(w.windowTitle().startsWith(QLatin1String("one.fisedit[*]")) && !w.isWindowModified(), qPrintable(w.windowTitle()));
      QVERIFY(submitPrompt(w, QStringLiteral("a photo of a dog")));
      QVERIFY(w.isWindowModified());
      QVERIFY(w.saveProject(one));
      QVERIFY(w.exportImage(QDir(exports).filePath(QStringLiteral("cat.png"))));

      QCOMPARE(dialogFolderOf(w.findChild<QAction*>(QStringLiteral("openProjectAction"))), QDir(projects).canonicalPath());
      QCOMPARE(dialogFolderOf(w.findChild<QAction*>(QStringLiteral("exportImageAction"))), QDir(exports).canonicalPath());
      QCOMPARE(dialogFolderOf(w.findChild<QAction*>(QStringLiteral("openModelFolderAction"))),
               QFileInfo(tinyModel()).dir().canonicalPath());
      QCOMPARE(recentPaths(w, "recentProjectsMenu"), QStringList{QFileInfo(one).absoluteFilePath()});
      QCOMPARE(recentPaths(w, "recentModelsMenu").value(0), QFileInfo(tinyModel()).absoluteFilePath());
    }

    // A new session: the same folders and lists.
    MainWindow w;
    w.show();
    QCOMPARE(dialogFolderOf(w.findChild<QAction*>(QStringLiteral("openProjectAction"))), QDir(projects).canonicalPath());
    QCOMPARE(dialogFolderOf(w.findChild<QAction*>(QStringLiteral("openModelFolderAction"))),
             QFileInfo(tinyModel()).dir().canonicalPath());
    QCOMPARE(recentPaths(w, "recentProjectsMenu"), QStringList{QFileInfo(one).absoluteFilePath()});

    // Recent Models opens the model; Recent Projects the project, named in the title.
    QSignalSpy loaded(&w, &MainWindow::modelLoaded);
    QAction* recentModel = recentAction(w, "recentModelsMenu", QFileInfo(tinyModel()).absoluteFilePath());
    QVERIFY(recentModel);
    recentModel->trigger();
    QTRY_COMPARE_WITH_TIMEOUT(loaded.count(), 1, kJobTimeoutMs);
    QAction* recentProject = recentAction(w, "recentProjectsMenu", QFileInfo(one).absoluteFilePath());
    QVERIFY(recentProject);
    recentProject->trigger();
    QCOMPARE(w.projectPath(), QFileInfo(one).absoluteFilePath());
    QCOMPARE(w.history()->nodeCount(), 2);
    QVERIFY2(w.windowTitle().startsWith(QLatin1String("one.fisedit")), qPrintable(w.windowTitle()));

    // At most 8, newest first.
    QStringList saved;
    for (int i = 0; i < 10; ++i) {
      saved.prepend(QDir(projects).filePath(QStringLiteral("p%1.fisedit").arg(i)));
      QVERIFY(w.saveProject(saved.first()));
    }
    QCOMPARE(recentPaths(w, "recentProjectsMenu"), saved.mid(0, 8));
    // One that is gone: removed, with a message naming it.
    QVERIFY(QFile::remove(saved[2]));
    QAction* gone = recentAction(w, "recentProjectsMenu", saved[2]);
    QVERIFY(gone);
    gone->trigger();
    QCOMPARE(w.projectPath(), saved[0]);  // nothing opened
    auto* banner = w.findChild<QWidget*>(QStringLiteral("errorBanner"));
    const QString message = w.findChild<QLabel*>(QStringLiteral("errorMessage"))->text();
    QVERIFY(banner->isVisible());
    QVERIFY2(message.contains(QLatin1String("p7.fisedit")) && message.contains(QLatin1String("no longer there")) &&
                 message.contains(QLatin1String("Recent Projects")),
             qPrintable(message));
    QVERIFY(!recentPaths(w, "recentProjectsMenu").contains(saved[2]));
    QCOMPARE(recentPaths(w, "recentProjectsMenu").size(), 7);
  }

  // Small ones: "Changed region" is disabled while there is no edit's region to show; the prompt box
  // keeps its size when the progress appears; the progress text is beside the bar, not on its fill;
  // the zoom is shown; the painted-region message names the real control.
  void smallComforts() {
    MainWindow w;
    w.resize(1024, 640);
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    QVERIFY(prepare(w, toyModel()));
    auto* overlay = w.findChild<QAction*>(QStringLiteral("overlayAction"));
    auto* zoom = w.findChild<QLabel*>(QStringLiteral("zoomLabel"));
    QVERIFY(overlay && zoom);
    QVERIFY(!overlay->isEnabled());  // no image
    overlay->trigger();
    QVERIFY(!overlay->isChecked());
    QVERIFY(zoom->text().isEmpty());

    // The job's progress: the prompt box keeps its height, the words sit beside the bar.
    w.parameters()->setSteps(12);
    w.promptEditor()->setPrompts(kHouse, QString());
    QCoreApplication::processEvents();
    const QSize promptSize = w.promptEditor()->size();
    auto* bar = w.findChild<QProgressBar*>(QStringLiteral("jobProgress"));
    auto* text = w.findChild<QLabel*>(QStringLiteral("jobProgressText"));
    QVERIFY(bar && text);
    QSignalSpy finished(&w, &MainWindow::jobFinished);
    w.submit();
    QTRY_VERIFY_WITH_TIMEOUT(bar->value() >= 1 || finished.count() > 0, kJobTimeoutMs);
    QCoreApplication::processEvents();
    QVERIFY(bar->isVisible() && text->isVisible() && !bar->isTextVisible());
    QVERIFY2(text->text().contains(QLatin1String("step")) && text->text().contains(QLatin1String("left")), qPrintable(text->text()));
    const QRect barRect(bar->mapTo(&w, QPoint(0, 0)), bar->size()), textRect(text->mapTo(&w, QPoint(0, 0)), text->size());
    QVERIFY(!barRect.intersects(textRect));
    QCOMPARE(w.promptEditor()->size(), promptSize);
    QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, kJobTimeoutMs);
    QCoreApplication::processEvents();
    QCOMPARE(w.promptEditor()->size(), promptSize);
    QVERIFY(!overlay->isEnabled());  // a generation has no changed region

    // The zoom, in the status bar.
    QVERIFY2(zoom->text().endsWith(QLatin1Char('%')) && zoom->isVisible(), qPrintable(zoom->text()));
    w.canvas()->setActualSize();
    QCOMPARE(zoom->text(), QStringLiteral("zoom 100%"));
    w.canvas()->zoomIn();
    QCOMPARE(zoom->text(), QStringLiteral("zoom 125%"));

    // Painting switches the region to "painted", and the message names the control that says so.
    auto* mask = w.canvas()->mask();
    mask->beginStroke(QPointF(60, 60), fisedit::ui::PaintedMask::Tool::brush, 20);
    mask->endStroke();
    const QString message = w.statusBar()->currentMessage();
    QVERIFY2(message.contains(QLatin1String("Region, in the Edit box")), qPrintable(message));
    auto* mode = w.findChild<QWidget*>(QStringLiteral("maskModeCombo"));
    QVERIFY(mode);
    auto* box = qobject_cast<QGroupBox*>(mode->parentWidget());
    QVERIFY(box && box->title() == QLatin1String("Edit"));
    auto* form = qobject_cast<QFormLayout*>(box->layout());
    auto* label = form ? qobject_cast<QLabel*>(form->labelForField(mode)) : nullptr;
    QVERIFY(label && label->text() == QLatin1String("Region"));

    QVERIFY(submitPrompt(w, kGreenHouse));
    QVERIFY(overlay->isEnabled());
    overlay->trigger();
    QVERIFY(w.canvas()->overlayVisible());
    w.history()->removeCurrent();
    w.history()->removeCurrent();
    QCOMPARE(w.history()->nodeCount(), 0);
    QVERIFY(!overlay->isEnabled() && !overlay->isChecked());
  }

  // The device running out of memory in the middle of an edit, through the window (issue 15): the
  // banner says so and what to do, the history, the current node and the image on the canvas are as
  // they were, the window is usable, and the memory the half-made edit took is given back (the next
  // image still fits). The CPU backend's memory limit (FISEDIT_DEVICE_MEMORY_LIMIT, read when the
  // window's engine starts) stands for a GPU's memory: set between what a generation and what an
  // edit of it need, measured first with the same model, parameters and prompts.
  void outOfMemoryMidEditKeepsEverything() {
    fisedit::GenerationRequest request;
    fisedit::EditRequest editOptions;
    {
      MainWindow probe;
      QVERIFY(prepare(probe, toyModel()));
      probe.parameters()->setSteps(8);
      probe.parameters()->findChild<QCheckBox*>(QStringLiteral("randomSeed"))->setChecked(false);
      QVERIFY(submitPrompt(probe, kHouse));
      request = current(probe)->request;
      editOptions = probe.parameters()->editOptions();
    }
    editOptions.prompt = kGreenHouse.toStdString();
    std::size_t generationPeak = 0, editPeak = 0;
    {
      auto model = std::make_shared<const fisedit::LoadedModel>(fisedit::load_model(toyModel().toStdString()));
      fisedit::CpuBackend backend;
      fisedit::StableDiffusion sd(model, backend);
      fisedit::EditSession session(sd, fisedit::ui::ModelWorker::kCacheBudgetBytes);
      const auto root = session.generate(request);
      generationPeak = backend.memory_peak();
      backend.reset_memory_peak();
      session.edit(root, editOptions);
      editPeak = backend.memory_peak();
    }
    QVERIFY2(editPeak > generationPeak + generationPeak / 50,
             qPrintable(QStringLiteral("an edit needs %1 bytes, a generation %2: no limit lies between")
                            .arg(editPeak).arg(generationPeak)));
    const QByteArray limit = QByteArray::number(static_cast<qulonglong>((generationPeak + editPeak) / 2));

    // Read by each backend the window's engine starts on (the model's, then the CPU device's); unset
    // when the test ends, whichever way.
    qputenv("FISEDIT_DEVICE_MEMORY_LIMIT", limit);
    const auto unset = qScopeGuard([] { qunsetenv("FISEDIT_DEVICE_MEMORY_LIMIT"); });
    MainWindow w;
    w.show();
    QVERIFY(prepare(w, toyModel()));
    w.parameters()->setSteps(8);
    auto* seed = w.parameters()->findChild<QSpinBox*>(QStringLiteral("seedSpin"));
    w.parameters()->findChild<QCheckBox*>(QStringLiteral("randomSeed"))->setChecked(false);
    seed->setValue(static_cast<int>(request.seed));
    QVERIFY(submitPrompt(w, kHouse));
    const HistoryRecord base = *current(w);
    QCOMPARE(base.image, current(w)->image);
    const QImage shown = w.canvas()->image();

    QVERIFY2(!submitPrompt(w, kGreenHouse), "the edit fitted under the limit");
    auto* banner = w.findChild<QWidget*>(QStringLiteral("errorBanner"));
    const QString message = w.findChild<QLabel*>(QStringLiteral("errorMessage"))->text();
    QVERIFY(banner->isVisible());
    for (const char* part : {"out of device memory", "smaller image size", "history and the current image are unchanged"})
      QVERIFY2(message.contains(QLatin1String(part)), qPrintable(message));
    QVERIFY(!w.isBusy());
    QCOMPARE(w.history()->nodeCount(), 1);
    QCOMPARE(current(w)->id, base.id);
    QCOMPARE(w.canvas()->image(), shown);
    QCOMPARE(w.promptEditor()->prompt(), kGreenHouse);  // the user's text is kept for another try

    // The window takes the next try as the first (the engine-level test, test_edit_session, checks that
    // the half-made edit's memory is given back byte for byte): the same failure, nothing else changed.
    QVERIFY(!submitPrompt(w, kGreenHouse));
    QCOMPARE(w.findChild<QLabel*>(QStringLiteral("errorMessage"))->text(), message);
    QCOMPARE(w.history()->nodeCount(), 1);
    QCOMPARE(w.canvas()->image(), shown);
  }

private:
  QTemporaryDir m_dir;
};

QTEST_MAIN(TestHistoryKeeping)
#include "test_history_keeping.moc"
