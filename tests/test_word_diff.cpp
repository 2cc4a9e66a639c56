// The prompt change the history shows for an edit: words added (+) and removed (-), in order.
#include "ui/word_diff.h"

#include <QtTest>

using fisedit::ui::wordDiff;
using fisedit::ui::wordDiffText;

class TestWordDiff : public QObject {
  Q_OBJECT

private slots:
  void diff_data() {
    QTest::addColumn<QString>("before");
    QTest::addColumn<QString>("after");
    QTest::addColumn<QStringList>("expected");
    QTest::newRow("same") << "a photo of a cat" << "a photo of a cat" << QStringList{};
    QTest::newRow("whitespace only") << "a  photo\nof a cat" << "a photo of a cat" << QStringList{};
    QTest::newRow("added at end") << "a cat" << "a cat wearing a hat" << QStringList{"+wearing", "+a", "+hat"};
    QTest::newRow("added in middle") << "a cat on a sofa" << "a black cat on a sofa" << QStringList{"+black"};
    QTest::newRow("removed") << "a fluffy cat" << "a cat" << QStringList{"-fluffy"};
    QTest::newRow("replaced") << "a photo of a cat" << "a photo of a dog" << QStringList{"-cat", "+dog"};
    QTest::newRow("comma tags") << "cat, hat, sunny" << "cat,hat, rainy" << QStringList{"-sunny", "+rainy"};
    QTest::newRow("case matters") << "a Cat" << "a cat" << QStringList{"-Cat", "+cat"};
    QTest::newRow("from empty") << "" << "a cat" << QStringList{"+a", "+cat"};
    QTest::newRow("to empty") << "a cat" << "" << QStringList{"-a", "-cat"};
    QTest::newRow("repeated word") << "a cat and a dog" << "a cat and a dog and a bird"
                                   << QStringList{"+and", "+a", "+bird"};
  }

  void diff() {
    QFETCH(QString, before);
    QFETCH(QString, after);
    QFETCH(QStringList, expected);
    QCOMPARE(wordDiff(before, after), expected);
  }

  void text() {
    QCOMPARE(wordDiffText(QStringLiteral("a cat"), QStringLiteral("a cat in a hat")), QStringLiteral("+in +a +hat"));
    QCOMPARE(wordDiffText(QStringLiteral("a cat"), QStringLiteral("a cat")), QStringLiteral("(same prompt)"));
  }
};

QTEST_MAIN(TestWordDiff)
#include "test_word_diff.moc"
