// The preview of latents the window shows while a job runs: SD's linear latent-to-RGB factors,
// [-1, 1] mapped to bytes with clamping, each latent pixel an 8x8 block; other shapes give nothing;
// an edit's preview keeps the base image outside its region.
#include "ui/latent_preview.h"

#include <QtTest>

#include <vector>

using fisedit::ui::latentPreview;

class TestLatentPreview : public QObject {
  Q_OBJECT

private slots:
  void knownPixels_data() {
    QTest::addColumn<float>("c0");
    QTest::addColumn<float>("c1");
    QTest::addColumn<float>("c2");
    QTest::addColumn<float>("c3");
    QTest::addColumn<QColor>("expected");
    QTest::newRow("zero is mid grey") << 0.f << 0.f << 0.f << 0.f << QColor(128, 128, 128);
    // R = 0.298, G = 0.207, B = 0.208 -> round((v + 1) * 127.5)
    QTest::newRow("channel 0") << 1.f << 0.f << 0.f << 0.f << QColor(165, 154, 154);
    // R = -0.158 -> 107, G = 0.189 -> 152, B = 0.264 -> 161
    QTest::newRow("channel 2") << 0.f << 0.f << 1.f << 0.f << QColor(107, 152, 161);
    // R = 0.298*4 + 0.187*4 = 1.94 -> clamped to 255; G, B likewise above 1
    QTest::newRow("clamped high") << 4.f << 4.f << 0.f << 0.f << QColor(255, 255, 255);
    // R = -0.184*6 = -1.10, G and B lower still: all below -1 -> 0
    QTest::newRow("clamped low") << 0.f << 0.f << 0.f << 6.f << QColor(0, 0, 0);
  }

  void knownPixels() {
    QFETCH(float, c0);
    QFETCH(float, c1);
    QFETCH(float, c2);
    QFETCH(float, c3);
    QFETCH(QColor, expected);
    // [4, 1, 2]: the given values at latent (0, 0), zeros at (0, 1).
    const std::vector<float> latents = {c0, 0, c1, 0, c2, 0, c3, 0};
    const QImage image = latentPreview(latents, 4, 1, 2);
    QCOMPARE(image.size(), QSize(16, 8));
    QCOMPARE(image.format(), QImage::Format_RGB888);
    for (const QPoint at : {QPoint(0, 0), QPoint(7, 7), QPoint(3, 5)}) QCOMPARE(image.pixelColor(at), expected);
    // The neighbour's block starts exactly 8 pixels on.
    QCOMPARE(image.pixelColor(8, 0), QColor(128, 128, 128));
    QCOMPARE(image.pixelColor(15, 7), QColor(128, 128, 128));
  }

  void layoutIsChannelsThenRows() {
    // [4, 2, 1]: channel 0 is 1 at row 1 only, so the second block row is the brighter one.
    const std::vector<float> latents = {0, 1, 0, 0, 0, 0, 0, 0};
    const QImage image = latentPreview(latents, 4, 2, 1);
    QCOMPARE(image.size(), QSize(8, 16));
    QCOMPARE(image.pixelColor(4, 4), QColor(128, 128, 128));
    QCOMPARE(image.pixelColor(4, 12), QColor(165, 154, 154));
  }

  void otherShapesGiveNoPreview() {
    const std::vector<float> three(3 * 4, 0.f);
    QVERIFY(latentPreview(three, 3, 2, 2).isNull());   // not SD's 4-channel latent space
    const std::vector<float> short_(4 * 3, 0.f);
    QVERIFY(latentPreview(short_, 4, 2, 2).isNull());  // fewer values than the shape says
    QVERIFY(latentPreview({}, 4, 0, 0).isNull());
  }

  // An edit's preview: the base image's pixels outside the region's latent cells, the latents' inside.
  void editPreviewKeepsTheBaseOutsideTheRegion() {
    QImage base(16, 8, QImage::Format_RGB888);
    base.fill(QColor(10, 20, 30));
    const std::vector<float> latents = {1, 0, 0, 0, 0, 0, 0, 0};  // [4, 1, 2]: channel 0 is 1 at latent (0, 0)
    const std::vector<float> region = {0, 1};                     // only latent (0, 1) is recomputed
    const QImage image = fisedit::ui::editPreview(base, latents, 4, 1, 2, region);
    QCOMPARE(image.size(), QSize(16, 8));
    QCOMPARE(image.pixelColor(0, 0), QColor(10, 20, 30));   // outside: the base, not the latent's colour
    QCOMPARE(image.pixelColor(7, 7), QColor(10, 20, 30));
    QCOMPARE(image.pixelColor(8, 0), QColor(128, 128, 128)); // inside: the latents' preview
    QCOMPARE(image.pixelColor(15, 7), QColor(128, 128, 128));
    QVERIFY(fisedit::ui::editPreview(base, latents, 4, 1, 2, std::vector<float>{1}).isNull());  // region of another size
    QVERIFY(fisedit::ui::editPreview(base.scaled(8, 8), latents, 4, 1, 2, region).isNull());    // base of another size
  }
};

QTEST_MAIN(TestLatentPreview)
#include "test_latent_preview.moc"
