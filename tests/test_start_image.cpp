// Image to image in the app's layer (issue 14 item 5): the parameters panel's start image goes into
// the request and comes back from a node's request; a project keeps an image-to-image node's start
// image, so it regenerates (and can be edited) after reopening, and refuses a node that lost it.
#include "io/image_read.h"
#include "test_support.h"
#include "ui/history_panel.h"
#include "ui/prompt_editor.h"
#include "window_driver.h"
#include "ui/main_window.h"
#include "ui/parameters_panel.h"
#include "ui/project_file.h"

#include <QApplication>
#include <QDropEvent>
#include <QFile>
#include <QLabel>
#include <QMimeData>
#include <QUrl>
#include <QToolButton>
#include <QtTest>

#include <nlohmann/json.hpp>

using namespace fisedit;
using namespace fisedit::ui;

namespace {

Image8 picture(int width, int height) {
  Image8 image{width, height, 3, std::vector<std::uint8_t>(static_cast<std::size_t>(width) * height * 3)};
  for (std::size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = static_cast<std::uint8_t>(i * 7 % 251);
  return image;
}

}  // namespace

class TestStartImage : public QObject {
  Q_OBJECT

private slots:
  void panel_puts_the_start_image_in_the_request() {
    ParametersPanel panel;
    QVERIFY(!panel.hasStartImage());
    QVERIFY(!panel.request(1).init_image);
    QSignalSpy changed(&panel, &ParametersPanel::changed);
    panel.setStartImage(picture(40, 30), QStringLiteral("photo.jpg"));
    QVERIFY(changed.count() > 0);
    QCOMPARE(panel.strength(), 0.75);
    auto r = panel.request(1);
    QVERIFY(r.init_image);
    QCOMPARE(r.init_image->width, 40);
    QCOMPARE(r.strength, 0.75f);
    QCOMPARE(r.init_image_name, std::string("photo.jpg"));
    panel.setStrength(0.3);
    QCOMPARE(panel.request(1).strength, 0.3f);
    // A node's request shows its start image; a text-to-image node clears it.
    GenerationRequest node = panel.request(5);
    node.init_image = picture(64, 64);
    node.strength = 0.6f;
    panel.showRequest(node);
    QVERIFY(panel.request(5).init_image->pixels == node.init_image->pixels);
    QCOMPARE(panel.request(5).strength, 0.6f);
    node.init_image.reset();
    panel.showRequest(node);
    QVERIFY(!panel.hasStartImage());
    QVERIFY(!panel.request(5).init_image);
    // The clear button.
    panel.setStartImage(picture(8, 8), QString());
    auto* clear = panel.findChild<QToolButton*>(QStringLiteral("clearStartImageButton"));
    QVERIFY(clear);
    clear->click();
    QVERIFY(!panel.hasStartImage());
  }

  // File > Open Image as Start... and drops: a JPEG, or a PNG without parameters, is a start image.
  void the_window_takes_start_images() {
    test::TempDir dir;
    MainWindow window;
    const QString png = QString::fromStdString((dir / "photo.png").string());
    write_png(png.toStdString(), picture(100, 60));
    QVERIFY(window.useStartImage(png));
    QVERIFY(window.parameters()->hasStartImage());
    const auto r = window.parameters()->request(1);
    QCOMPARE(r.width, 96);  // the picture's size, multiples of 8 (at least 64)
    QCOMPARE(r.height, 64);
    QCOMPARE(r.init_image->width, 100);  // the engine fits it
    QCOMPARE(r.init_image_name, std::string("photo.png"));
    window.parameters()->clearStartImage();

    QMimeData mime;
    mime.setUrls({QUrl::fromLocalFile(png)});
    const QPoint inside = window.rect().center();
    QDragEnterEvent enter(inside, Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
    enter.setAccepted(false);
    QApplication::sendEvent(&window, &enter);
    QVERIFY(enter.isAccepted());
    QDropEvent drop(QPointF(inside), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
    QApplication::sendEvent(&window, &drop);
    QVERIFY(window.parameters()->hasStartImage());

    QFile notImage(QString::fromStdString((dir / "text.jpg").string()));
    QVERIFY(notImage.open(QIODevice::WriteOnly));
    notImage.write("not an image");
    notImage.close();
    QVERIFY(!window.useStartImage(notImage.fileName()));
    QVERIFY(window.findChild<QLabel*>(QStringLiteral("errorMessage"))->text().contains(QStringLiteral("text.jpg")));
  }

  // The whole flow: Generate from a start image, then a prompt change is an edit of that node, and
  // outside its region the pixels stay.
  void generate_from_a_start_image_then_edit() {
    MainWindow window;
    QVERIFY(test::prepareWindow(window));
    window.parameters()->setStartImage(picture(128, 128), QStringLiteral("start.png"));
    window.parameters()->setStrength(0.5);
    QVERIFY(test::submitPrompt(window, QStringLiteral("a photo of a cat")));
    const auto base = window.history()->records().last();
    QVERIFY(base.request.init_image);
    QCOMPARE(base.request.strength, 0.5f);
    QVERIFY(window.parameters()->hasStartImage());
    window.promptEditor()->setPrompts(QStringLiteral("a photo of a cat wearing a hat"), QString());
    QVERIFY(window.willEdit());
    QVERIFY(test::submitPrompt(window, QStringLiteral("a photo of a cat wearing a hat")));
    const auto edit = window.history()->records().last();
    QVERIFY(edit.isEdit());
    QCOMPARE(edit.parent, std::optional<quint64>(base.id));
    QVERIFY(edit.request.init_image);
    QVERIFY(!edit.changedRegion.isNull());
    int changed = 0;
    const QImage region = edit.changedRegion.convertToFormat(QImage::Format_Grayscale8);
    for (int y = 0; y < region.height(); ++y)
      for (int x = 0; x < region.width(); ++x)
        if (region.pixelColor(x, y).value() == 0) changed += edit.image.pixel(x, y) != base.image.pixel(x, y);
    QCOMPARE(changed, 0);
  }

  void a_project_keeps_the_start_image() {
    test::TempDir dir;
    HistoryRecord r;
    r.id = 1;
    r.request = GenerationRequest{"a cat", "", 3, 8, 7.5f, "ddim", 64, 64, std::nullopt};
    r.request.init_image = picture(64, 64);
    r.request.init_image_name = "start.png";
    r.request.strength = 0.5f;
    r.image = toQImage(picture(64, 64));
    ProjectContent content{QStringLiteral("/m"), QStringLiteral("SD1.x"), QStringLiteral("f"), {r}};
    const QString path = QString::fromStdString((dir / "p.fisedit").string());
    QCOMPARE(saveProject(path, content), QString());
    const auto read = loadProject(path);
    QVERIFY2(read.ok(), qPrintable(read.error));
    const auto& back = read.content.records.first().request;
    QVERIFY(back.init_image);
    QVERIFY(back.init_image->pixels == r.request.init_image->pixels);
    QCOMPARE(back.strength, 0.5f);
    QCOMPARE(back.init_image_name, std::string("start.png"));

    // A node that says it started from a picture but lost it is refused, not read as text to image.
    QFile file(path);
    QVERIFY(file.open(QIODevice::ReadOnly));
    auto json = nlohmann::json::parse(file.readAll().toStdString());
    file.close();
    json["nodes"][0].erase("initImagePng");
    QVERIFY(file.open(QIODevice::WriteOnly | QIODevice::Truncate));
    file.write(QByteArray::fromStdString(json.dump()));
    file.close();
    const auto damaged = loadProject(path);
    QVERIFY(!damaged.ok());
    QVERIFY2(damaged.error.contains(QStringLiteral("starting image")), qPrintable(damaged.error));
  }
};

QTEST_MAIN(TestStartImage)
#include "test_start_image.moc"
