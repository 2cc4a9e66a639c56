// Live editing (issue 14, main_window.h): while the "Live" toggle is on, a pause in typing starts a
// provisional edit of the committed node; a newer text cancels the running one at its next step; the
// canvas shows the latest result, and Enter in the prompt box (or leaving it) keeps it as one history
// node. The window only sends requests and takes answers: typing never waits for the engine.
#include "ui/history_panel.h"
#include "ui/image_canvas.h"
#include "ui/main_window.h"
#include "ui/model_worker.h"
#include "ui/parameters_panel.h"
#include "ui/prompt_editor.h"

#include <QAction>
#include <QApplication>
#include <QCheckBox>
#include <QFocusEvent>
#include <QKeyEvent>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSettings>
#include <QStatusBar>
#include <QTabWidget>
#include <QTimer>

namespace fisedit::ui {

QSettings appSettings();  // main_window.cpp

namespace {

const QString kLiveKey = QStringLiteral("live/enabled");


}  // namespace

QWidget* MainWindow::createLiveToggle() {
  m_liveAction = new QAction(tr("&Live Editing"), this);
  m_liveAction->setObjectName(QStringLiteral("liveAction"));
  m_liveAction->setIconText(tr("Live"));
  m_liveAction->setCheckable(true);
  m_liveAction->setChecked(appSettings().value(kLiveKey, false).toBool());
  m_liveAction->setToolTip(tr("Live: each pause in typing the prompt edits the image at once (a preview); "
                              "Enter keeps it in the history, Esc drops it"));
  connect(m_liveAction, &QAction::toggled, this, [this](bool on) {
    appSettings().setValue(kLiveKey, on);
    if (!on) {
      if (liveActive()) dropLive(true);
      m_liveTimer->stop();
    } else {
      onPromptsEdited();  // a prompt already changed is edited after the pause, as if just typed
    }
    updateGenerateButton();
  });

  m_liveTimer = new QTimer(this);
  m_liveTimer->setObjectName(QStringLiteral("liveTimer"));
  m_liveTimer->setSingleShot(true);
  m_liveTimer->setInterval(kLivePauseMs);
  connect(m_liveTimer, &QTimer::timeout, this, &MainWindow::onLivePause);
  connect(m_promptEditor, &PromptEditor::promptsChanged, this, &MainWindow::onPromptsEdited);
  for (auto* edit : m_promptEditor->findChildren<QPlainTextEdit*>()) edit->installEventFilter(this);

  // A check box rather than a tool button: its state reads at a glance in every style.
  auto* box = new QCheckBox(m_liveAction->iconText());
  box->setObjectName(QStringLiteral("liveCheck"));
  box->setToolTip(m_liveAction->toolTip());
  box->setChecked(m_liveAction->isChecked());
  box->setFocusPolicy(Qt::TabFocus);  // a click leaves the focus in the prompt box: leaving it keeps the edit
  connect(box, &QCheckBox::toggled, m_liveAction, &QAction::setChecked);
  connect(m_liveAction, &QAction::toggled, box, &QCheckBox::setChecked);
  connect(m_liveAction, &QAction::changed, box, [this, box] { box->setEnabled(m_liveAction->isEnabled()); });
  return box;
}

bool MainWindow::liveEditing() const { return m_liveAction && m_liveAction->isChecked() && m_liveAction->isEnabled(); }

bool MainWindow::liveTextMatches(const GenerationRequest& request) const {
  return request.prompt == m_promptEditor->prompt().toStdString() &&
         request.negative_prompt == m_promptEditor->negativePrompt().toStdString();
}

void MainWindow::onPromptsEdited() {
  if (!m_liveAction || !m_liveAction->isChecked()) return;
  m_liveTimer->start();  // restarts: only a pause starts an edit
}

void MainWindow::onLivePause() {
  if (!liveEditing() || m_busy) return;  // a normal job ends on a new node, whose prompts come with it
  const auto current = m_history->currentNode();
  if (!current) return;
  if (m_liveBase && *m_liveBase != *current) dropLive(false);  // not expected: selecting a node drops live edits
  const HistoryRecord* base = m_history->record(*current);
  if (liveTextMatches(base->request)) {  // typed back to the committed prompt: its image again
    if (liveActive()) {
      dropLive(true);
      statusBar()->clearMessage();
    }
    return;
  }
  if (!willEdit()) {
    statusBar()->showMessage(tr("Live: only a change of the prompts is edited live; Generate makes a new image"), 5000);
    return;
  }
  m_liveBase = *current;
  if (m_liveTicket != 0) {
    if (m_liveRunningPrompt == m_promptEditor->prompt() && m_liveRunningNegative == m_promptEditor->negativePrompt()) {
      // Typed back to what is being edited: let it finish, unless it is stopping already.
      m_livePending = m_liveStop.stop_requested();
      return;
    }
    if (!m_liveStop.stop_requested()) {
      m_liveStop.request_stop();  // directly: a queued call would wait behind the edit it is meant to stop
      ++m_liveStats.cancelled;
    }
    m_livePending = true;  // the newest text only, whatever was typed in between
    return;
  }
  if (m_livePreview && liveTextMatches(m_livePreview->request)) return;  // already shown
  startLiveEdit();
}

void MainWindow::startLiveEdit() {
  const quint64 base = *m_liveBase;
  EditRequest request = m_parameters->editOptions();
  request.prompt = m_promptEditor->prompt().toStdString();
  request.negative_prompt = m_promptEditor->negativePrompt().toStdString();
  request.painted_mask = paintedMaskForEdit();
  boundPaintedGrowth(request);
  m_liveStop = std::stop_source();
  const std::stop_token stop = m_liveStop.get_token();
  const quint64 ticket = ++m_lastLiveTicket;
  m_liveTicket = ticket;
  m_liveRunningPrompt = m_promptEditor->prompt();
  m_liveRunningNegative = m_promptEditor->negativePrompt();
  m_livePending = false;
  ++m_liveStats.started;
  statusBar()->showMessage(m_liveCommitWanted ? tr("Live: finishing the edit to keep it...") : tr("Live: editing..."));
  QMetaObject::invokeMethod(
      m_worker, [worker = m_worker, base, request, stop, ticket] { worker->liveEdit(base, request, stop, ticket); },
      Qt::QueuedConnection);
}

void MainWindow::onLiveEdited(const HistoryRecord& record, quint64 ticket) {
  if (ticket != m_liveTicket) {  // dropped while it ran: nothing shows it, the session need not keep it
    QMetaObject::invokeMethod(m_worker, [worker = m_worker, id = record.id] { worker->dropLiveNode(id); }, Qt::QueuedConnection);
    return;
  }
  m_liveTicket = 0;
  ++m_liveStats.finished;
  if (m_livePreview)
    QMetaObject::invokeMethod(m_worker, [worker = m_worker, id = m_livePreview->id] { worker->dropLiveNode(id); },
                              Qt::QueuedConnection);
  m_livePreview = record;
  showCanvasOf(record);
  statusBar()->showMessage(tr("Live preview, %1 of the image re-rendered in %2 s: Enter keeps it, Esc drops it")
                               .arg(percent(changedFraction(record)))
                               .arg(record.totalMs / 1000.0, 0, 'f', 1));
  emit liveEditShown(QString::fromStdString(record.request.prompt));
  continueLive();
}

void MainWindow::onLiveEditEnded(quint64 ticket, bool cancelled, const QString& message) {
  if (ticket != m_liveTicket) return;
  m_liveTicket = 0;
  if (!cancelled) {
    m_livePending = m_liveCommitWanted = false;
    showError(tr("<b>The live edit stopped</b><br>%1").arg(message.toHtmlEscaped()));
    return;
  }
  continueLive();
}

void MainWindow::continueLive() {
  if (!m_liveBase || m_liveTicket != 0) return;
  if (m_livePreview && liveTextMatches(m_livePreview->request)) {
    m_livePending = false;
    if (m_liveCommitWanted) keepLivePreview();
    return;
  }
  if (!m_livePending && !m_liveCommitWanted) return;
  const HistoryRecord* base = m_history->record(*m_liveBase);
  if (!base || liveTextMatches(base->request) || !willEdit()) {
    dropLive(true);
    return;
  }
  startLiveEdit();
}

void MainWindow::commitLiveEdit() {
  if (!liveEditing() || m_busy) return;
  m_liveTimer->stop();
  const auto current = m_history->currentNode();
  if (!current) return;
  if (m_liveBase && *m_liveBase != *current) dropLive(false);
  if (liveTextMatches(m_history->record(*current)->request)) {  // nothing changed: nothing to keep
    if (liveActive()) dropLive(true);
    return;
  }
  if (!willEdit()) return;
  m_liveBase = *current;
  if (m_livePreview && liveTextMatches(m_livePreview->request)) {
    keepLivePreview();
    return;
  }
  m_liveCommitWanted = true;
  statusBar()->showMessage(tr("Live: finishing the edit to keep it..."));
  if (m_liveTicket == 0) {
    startLiveEdit();
  } else if (m_liveStop.stop_requested() || m_liveRunningPrompt != m_promptEditor->prompt() ||
             m_liveRunningNegative != m_promptEditor->negativePrompt()) {  // the running edit is not the text's
    if (!m_liveStop.stop_requested()) {
      m_liveStop.request_stop();
      ++m_liveStats.cancelled;
    }
    m_livePending = true;
  }
}

void MainWindow::keepLivePreview() {
  const HistoryRecord record = *m_livePreview;
  m_livePreview.reset();
  m_liveBase.reset();
  m_livePending = m_liveCommitWanted = false;
  QMetaObject::invokeMethod(m_worker, [worker = m_worker, id = record.id] { worker->keepLiveNode(id); }, Qt::QueuedConnection);
  m_liveCommitting = true;
  m_history->addRecord(record);  // selects it, which shows it: the committed node from now on
  m_liveCommitting = false;
  m_sideTabs->setCurrentWidget(m_history);
  ++m_liveStats.committed;
  m_unsavedChanges = true;
  m_newNodesUnsaved = true;
  updateWindowTitle();
  statusBar()->showMessage(tr("Live edit kept in the history (%1 of the image re-rendered)").arg(percent(changedFraction(record))),
                           8000);
  emit liveEditCommitted(record.id);
}

void MainWindow::dropLive(bool restoreCanvas) {
  m_liveTimer->stop();
  const bool active = liveActive();
  if (m_liveTicket != 0) {
    if (!m_liveStop.stop_requested()) {
      m_liveStop.request_stop();
      ++m_liveStats.cancelled;
    }
    m_liveTicket = 0;  // its answer is stale now: a node it made is dropped when it comes
  }
  if (m_livePreview) {
    QMetaObject::invokeMethod(m_worker, [worker = m_worker, id = m_livePreview->id] { worker->dropLiveNode(id); },
                              Qt::QueuedConnection);
    m_livePreview.reset();
    if (restoreCanvas && m_liveBase)
      if (const HistoryRecord* base = m_history->record(*m_liveBase)) showCanvasOf(*base);
  }
  m_liveBase.reset();
  m_livePending = m_liveCommitWanted = false;
  if (active) ++m_liveStats.dropped;
}

void MainWindow::forgetLive() {
  m_liveTimer->stop();
  if (m_liveTicket != 0) m_liveStop.request_stop();
  m_liveTicket = 0;
  m_livePreview.reset();
  m_liveBase.reset();
  m_livePending = m_liveCommitWanted = false;
}

void MainWindow::showCanvasOf(const HistoryRecord& record) {
  const HistoryRecord* parent = record.parent ? m_history->record(*record.parent) : nullptr;
  // setImage() starts a blank mask: with one painted (the live edits' region), the result is shown as a
  // preview over the image instead, the mask kept for the next edit.
  if (!m_canvas->mask()->isEmpty()) {
    if (m_history->currentNode() && record.id == *m_history->currentNode())
      m_canvas->clearPreview();
    else
      m_canvas->showPreview(record.image);
    return;
  }
  m_canvas->setImage(record.image, record.changedRegion, parent ? parent->image : QImage());
  m_overlayAction->setEnabled(record.isEdit());
  m_canvas->setOverlayLegend(record.isEdit() ? tr("Tinted: re-rendered, %1 of the image (the exported mask's white)\n"
                                                  "Dimmed: kept, pixel for pixel the previous image")
                                                   .arg(percent(changedFraction(record)))
                                             : QString());
}

bool MainWindow::eventFilter(QObject* watched, QEvent* event) {
  if (m_liveAction && m_liveAction->isChecked() && qobject_cast<QPlainTextEdit*>(watched)) {
    if (event->type() == QEvent::KeyPress) {
      const auto* key = static_cast<QKeyEvent*>(event);
      const auto modifiers = key->modifiers() & ~Qt::KeypadModifier;
      if ((key->key() == Qt::Key_Return || key->key() == Qt::Key_Enter) && modifiers == Qt::NoModifier && liveEditing()) {
        commitLiveEdit();
        return true;  // no new line: Enter keeps the edit (Shift+Enter still breaks the line)
      }
    } else if (event->type() == QEvent::FocusOut) {
      const auto reason = static_cast<QFocusEvent*>(event)->reason();
      // Another window, a menu or a popup is not leaving the prompt; the other prompt field is not either.
      // Nor is the Generate button: its click keeps the edit (submit()), and keeping it here first would
      // leave the click a new generation.
      const QWidget* next = QApplication::focusWidget();
      const bool leaving = reason != Qt::ActiveWindowFocusReason && reason != Qt::PopupFocusReason &&
                           reason != Qt::MenuBarFocusReason && next != m_generateButton &&
                           !m_promptEditor->isAncestorOf(next);
      if (leaving && liveEditing() && (liveActive() || m_liveTimer->isActive())) commitLiveEdit();
    }
  }
  return QMainWindow::eventFilter(watched, event);
}

}  // namespace fisedit::ui
