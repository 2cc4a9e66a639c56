// Image to image in the window (main_window.h): File > Open Image as Start... and pictures dropped on
// the window set the parameters panel's start image; Generate then runs image to image from it, the
// node keeps it (its request's init_image), and prompt edits of that node work as of any other.
#include "ui/main_window.h"
#include "ui/parameters_panel.h"

#include "core/error.h"
#include "io/image_read.h"

#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QStatusBar>

#include <algorithm>
#include <cmath>

namespace fisedit::ui {

void MainWindow::chooseStartImage() {
  const QString file = QFileDialog::getOpenFileName(this, tr("Open Image as Start"), browseDir(BrowseKind::exports),
                                                    tr("Images (*.png *.jpg *.jpeg)"));
  if (!file.isEmpty()) useStartImage(file);
}

bool MainWindow::useStartImage(const QString& path) {
  const QString name = QFileInfo(path).fileName();
  Image8 image;
  try {
    image = read_image(std::filesystem::path(QFile::encodeName(path).toStdString()));
  } catch (const Error& e) {
    showError(tr("<b>Could not open %1 as a start image</b><br>%2")
                  .arg(name.toHtmlEscaped(), QString::fromStdString(e.what()).toHtmlEscaped()));
    return false;
  }
  // The size follows the picture's aspect, no larger than the size set now (the model's, usually):
  // the engine fits the picture to it (scaled, centred crop), multiples of 8.
  const auto current = m_parameters->request(0);
  const double limit = std::max(current.width, current.height);
  const double scale = std::min(1.0, limit / std::max(image.width, image.height));
  const int width = std::max(64, static_cast<int>(std::floor(image.width * scale)) / 8 * 8);
  const int height = std::max(64, static_cast<int>(std::floor(image.height * scale)) / 8 * 8);
  m_parameters->setSize(width, height);
  m_parameters->setStartImage(image, name);
  statusBar()->showMessage(tr("Start image %1 (%2×%3 at %4×%5): Generate re-renders it from the prompt, Strength %6")
                               .arg(name).arg(image.width).arg(image.height).arg(width).arg(height)
                               .arg(m_parameters->strength(), 0, 'f', 2),
                           10000);
  return true;
}

}  // namespace fisedit::ui
