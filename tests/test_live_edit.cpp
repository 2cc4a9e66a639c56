// Live editing through the real window, worker and engine (issue 14 item 6): text typed into the prompt
// box drives edits after each pause, a newer text cancels the stale edit, Enter keeps one history node
// whose image is the normal edit's, Esc drops the preview, and with Live off typing starts nothing.
#include "window_driver.h"
#include "ui/history_panel.h"
#include "ui/image_canvas.h"
#include "ui/main_window.h"
#include "ui/model_worker.h"
#include "ui/parameters_panel.h"
#include "ui/prompt_editor.h"

#include <QtTest>
#include <QAction>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSemaphore>
#include <QSettings>
#include <QSignalSpy>
#include <QTimer>
#include <QCheckBox>
#include <QTreeWidget>

using fisedit::ui::HistoryRecord;
using fisedit::ui::MainWindow;

namespace {

using fisedit::test::kJobTimeoutMs;
using fisedit::test::kBlueHouse;
using fisedit::test::kGreenHouse;
using fisedit::test::kHouse;
using fisedit::test::submitPrompt;
using fisedit::test::toyModel;


QImage rgb(const QImage& image) { return image.convertToFormat(QImage::Format_RGB888); }

const HistoryRecord* current(const MainWindow& w) { return w.history()->record(*w.history()->currentNode()); }

QPlainTextEdit* promptEdit(const MainWindow& w) { return w.findChild<QPlainTextEdit*>(QStringLiteral("promptEdit")); }

// Replaces the prompt as a user does: select all, then type the new text key by key (one burst: no pause).
void typePrompt(MainWindow& w, const QString& text) {
  QPlainTextEdit* edit = promptEdit(w);
  QTest::keyClick(edit, Qt::Key_A, Qt::ControlModifier);
  QTest::keyClicks(edit, text);
}

// Keeps the worker thread busy until released: what the window does meanwhile can be seen whatever the
// engine's speed (a live edit sent now waits behind it, as if it were slow).
struct WorkerHold {
  QSemaphore entered, release;
  explicit WorkerHold(MainWindow& w) {
    QMetaObject::invokeMethod(
        w.worker(), [this] { entered.release(); release.acquire(); }, Qt::QueuedConnection);
    entered.acquire();
  }
  ~WorkerHold() { release.release(); }  // never leaves the worker blocked, even when a check fails
  void let_go() { release.release(); }
};

}  // namespace

class TestLiveEdit : public QObject {
  Q_OBJECT

private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QSettings(QStringLiteral("fisedit"), QStringLiteral("fisedit")).remove(QStringLiteral("live"));
  }

  void typingDrivesLiveEdits() {
    MainWindow w;
    w.show();
    QVERIFY(QTest::qWaitForWindowActive(&w));
    QAction* live = w.liveAction();
    QVERIFY(live && live->isCheckable() && !live->isChecked());
    auto* check = w.findChild<QCheckBox*>(QStringLiteral("liveCheck"));
    QVERIFY(check && !check->isChecked());
    QVERIFY(!live->isEnabled() && !check->isEnabled());  // nothing to edit yet
    QVERIFY(fisedit::test::prepareWindow(w, toyModel()));
    QVERIFY(!live->isEnabled());
    QVERIFY(submitPrompt(w, kHouse));
    QVERIFY(live->isEnabled() && check->isEnabled());
    const quint64 base = *w.history()->currentNode();
    const QImage baseImage = rgb(current(w)->image);
    promptEdit(w)->setFocus();
    QTRY_VERIFY(promptEdit(w)->hasFocus());

    // (d) Live off: typing and pausing starts nothing.
    typePrompt(w, kBlueHouse);
    QTest::qWait(3 * MainWindow::kLivePauseMs);
    QCOMPARE(w.liveStats().started, 0);
    QVERIFY(!w.isBusy() && !w.liveEditRunning());
    QCOMPARE(w.history()->nodeCount(), 1);

    // (a) Live on (remembered): the prompt already changed is edited after the pause, one edit for
    // the whole burst of keys; the canvas shows the result, the history does not get it.
    QTest::mouseClick(check, Qt::LeftButton);  // the box beside the Generate button
    QVERIFY(live->isChecked());
    QVERIFY(QSettings(QStringLiteral("fisedit"), QStringLiteral("fisedit")).value(QStringLiteral("live/enabled")).toBool());
    QSignalSpy shown(&w, &MainWindow::liveEditShown);
    QTRY_COMPARE_WITH_TIMEOUT(shown.count(), 1, kJobTimeoutMs);
    QCOMPARE(shown.first().first().toString(), kBlueHouse);
    QCOMPARE(w.liveStats().started, 1);
    QVERIFY(w.livePreview() && w.livePreview()->parent == base);
    QVERIFY(rgb(w.canvas()->image()) != baseImage);
    QCOMPARE(rgb(w.canvas()->image()), rgb(w.livePreview()->image));
    QCOMPARE(w.history()->nodeCount(), 1);
    QCOMPARE(*w.history()->currentNode(), base);

    // Esc drops the preview: the committed image again, the text kept.
    QTest::keyClick(promptEdit(w), Qt::Key_Escape);
    QVERIFY(!w.livePreview());
    QCOMPARE(rgb(w.canvas()->image()), baseImage);
    QCOMPARE(w.promptEditor()->prompt(), kBlueHouse);
    QCOMPARE(w.liveStats().dropped, 1);

    // (b) A burst typed while an edit runs: the window stays responsive (the keys land, the pause
    // timer fires: the engine runs elsewhere) and the stale edit is cancelled, the newest text queued.
    {
      WorkerHold hold(w);  // the next live edit cannot finish until let go
      typePrompt(w, kHouse + QStringLiteral(" and a tree"));
      QTRY_COMPARE_WITH_TIMEOUT(w.liveStats().started, 2, 10000);
      QVERIFY(w.liveEditRunning());
      typePrompt(w, QStringLiteral("a yellow house"));
      QCOMPARE(w.promptEditor()->prompt(), QStringLiteral("a yellow house"));
      typePrompt(w, kGreenHouse);  // a third text before the pause: only the newest waits
      QCOMPARE(w.promptEditor()->prompt(), kGreenHouse);
      QTRY_COMPARE_WITH_TIMEOUT(w.liveStats().cancelled, 1, 10000);
      QTest::qWait(3 * MainWindow::kLivePauseMs);
      QCOMPARE(w.liveStats().started, 2);  // one running, one waiting: not a queue of stale edits
      QCOMPARE(w.liveStats().cancelled, 1);
      QVERIFY(w.liveEditRunning());
      hold.let_go();
    }
    // The cancelled edit made nothing; the waiting text's edit runs and is shown.
    QTRY_VERIFY_WITH_TIMEOUT(w.livePreview() && w.livePreview()->request.prompt == kGreenHouse.toStdString(),
                             kJobTimeoutMs);
    QCOMPARE(w.liveStats().started, 3);
    QCOMPARE(w.liveStats().finished, 2);
    QCOMPARE(w.history()->nodeCount(), 1);

    // (c) Enter keeps it: one new node, child of the committed one, with the text typed.
    QSignalSpy committed(&w, &MainWindow::liveEditCommitted);
    QTest::keyClick(promptEdit(w), Qt::Key_Return);
    QCOMPARE(committed.count(), 1);
    QCOMPARE(w.promptEditor()->prompt(), kGreenHouse);  // no new line
    QCOMPARE(w.history()->nodeCount(), 2);
    const HistoryRecord kept = *current(w);
    QCOMPARE(kept.id, committed.first().first().toULongLong());
    QVERIFY(kept.parent && *kept.parent == base);
    QCOMPARE(QString::fromStdString(kept.request.prompt), kGreenHouse);
    QCOMPARE(rgb(w.canvas()->image()), rgb(kept.image));
    QVERIFY(w.hasUnsavedChanges());
    QVERIFY(!w.livePreview() && !w.liveEditRunning());
    QCOMPARE(w.liveStats().committed, 1);

    // The kept node is the committed one now: a further live edit starts from it, and Enter before its
    // result comes finishes that edit, then keeps it.
    typePrompt(w, QStringLiteral("a green house at the center and a tree, sand background"));
    QTest::keyClick(promptEdit(w), Qt::Key_Return);
    QTRY_COMPARE_WITH_TIMEOUT(committed.count(), 2, kJobTimeoutMs);
    QCOMPARE(w.history()->nodeCount(), 3);
    QCOMPARE(*current(w)->parent, kept.id);
    QCOMPARE(w.liveStats().committed, 2);

    // The live node's image is what a normal edit of the same prompt from the same node makes.
    live->setChecked(false);
    w.history()->selectNode(base);
    QVERIFY(submitPrompt(w, kGreenHouse));
    QCOMPARE(w.history()->nodeCount(), 4);
    QCOMPARE(*current(w)->parent, base);
    QVERIFY(current(w)->id != kept.id);
    QVERIFY(rgb(current(w)->image) == rgb(kept.image));
  }

  // Selecting another node while a live edit is under way drops it; leaving the prompt box keeps the
  // result shown.
  void selectionDropsAndFocusOutKeeps() {
    MainWindow w;
    w.show();
    QVERIFY(QTest::qWaitForWindowActive(&w));
    QVERIFY(fisedit::test::prepareWindow(w, toyModel()));
    QVERIFY(submitPrompt(w, kHouse));
    const quint64 first = *w.history()->currentNode();
    QVERIFY(submitPrompt(w, kGreenHouse));
    const quint64 second = *w.history()->currentNode();
    QVERIFY(w.liveAction()->isEnabled());
    w.liveAction()->setChecked(true);  // remembered from the test before too, unless it ran alone
    promptEdit(w)->setFocus();
    QTRY_VERIFY(promptEdit(w)->hasFocus());

    {
      WorkerHold hold(w);
      typePrompt(w, kBlueHouse);
      QTRY_VERIFY_WITH_TIMEOUT(w.liveEditRunning(), 10000);
      w.history()->selectNode(first);  // the user clicks an older image
      QVERIFY(!w.liveEditRunning());
      QCOMPARE(w.liveStats().cancelled, 1);
      QCOMPARE(w.promptEditor()->prompt(), kHouse);  // the selected node's prompt
      hold.let_go();
    }
    QTest::qWait(3 * MainWindow::kLivePauseMs);
    QVERIFY(!w.livePreview());
    QCOMPARE(w.history()->nodeCount(), 2);
    QCOMPARE(*w.history()->currentNode(), first);

    // From the first node now: a pause, then leaving the box keeps the result.
    QSignalSpy shown(&w, &MainWindow::liveEditShown);
    promptEdit(w)->setFocus();
    typePrompt(w, kBlueHouse);
    QTRY_COMPARE_WITH_TIMEOUT(shown.count(), 1, kJobTimeoutMs);
    w.history()->tree()->setFocus(Qt::MouseFocusReason);
    QCOMPARE(w.history()->nodeCount(), 3);
    QCOMPARE(*current(w)->parent, first);
    QCOMPARE(QString::fromStdString(current(w)->request.prompt), kBlueHouse);
    QVERIFY(current(w)->id != second);

    // The button keeps the live edit too (once: pressing it takes the focus from the prompt box first).
    const quint64 third = *w.history()->currentNode();
    promptEdit(w)->setFocus();
    QTRY_VERIFY(promptEdit(w)->hasFocus());
    typePrompt(w, kGreenHouse);
    auto* button = w.findChild<QPushButton*>(QStringLiteral("generateButton"));
    QCOMPARE(button->text(), QStringLiteral("Keep Live Edit"));
    QSignalSpy committed(&w, &MainWindow::liveEditCommitted);
    QSignalSpy finished(&w, &MainWindow::jobFinished);
    QTest::mouseClick(button, Qt::LeftButton);
    QTRY_COMPARE_WITH_TIMEOUT(committed.count(), 1, kJobTimeoutMs);
    QTest::qWait(3 * MainWindow::kLivePauseMs);
    QCOMPARE(finished.count(), 0);  // no generation or normal edit besides
    QCOMPARE(w.history()->nodeCount(), 4);
    QCOMPARE(*current(w)->parent, third);
    QCOMPARE(QString::fromStdString(current(w)->request.prompt), kGreenHouse);
  }

  // Typing back to the text of an edit already told to stop: that text is edited again once it stops,
  // not lost.
  void typedBackWhileStopping() {
    MainWindow w;
    w.show();
    QVERIFY(QTest::qWaitForWindowActive(&w));
    QVERIFY(fisedit::test::prepareWindow(w, toyModel()));
    QVERIFY(submitPrompt(w, kHouse));
    w.liveAction()->setChecked(true);
    {
      WorkerHold hold(w);
      typePrompt(w, kBlueHouse);
      QTRY_VERIFY_WITH_TIMEOUT(w.liveEditRunning(), 10000);
      typePrompt(w, kGreenHouse);
      QTRY_COMPARE_WITH_TIMEOUT(w.liveStats().cancelled, 1, 10000);
      typePrompt(w, kBlueHouse);
      QTest::qWait(3 * MainWindow::kLivePauseMs);
      QCOMPARE(w.liveStats().started, 1);
      hold.let_go();
    }
    QTRY_VERIFY_WITH_TIMEOUT(w.livePreview() && w.livePreview()->request.prompt == kBlueHouse.toStdString(),
                             kJobTimeoutMs);
    QCOMPARE(w.liveStats().started, 2);
    QCOMPARE(w.liveStats().finished, 1);
    // Live off drops the preview: the committed image again, nothing added.
    w.liveAction()->setChecked(false);
    QVERIFY(!w.livePreview());
    QCOMPARE(rgb(w.canvas()->image()), rgb(current(w)->image));
    QCOMPARE(w.history()->nodeCount(), 1);
  }
};

QTEST_MAIN(TestLiveEdit)
#include "test_live_edit.moc"
