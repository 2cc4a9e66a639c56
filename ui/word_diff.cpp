// The word-level prompt change the history shows (word_diff.h).
#include "ui/word_diff.h"

#include <QObject>
#include <QRegularExpression>

#include <vector>

namespace fisedit::ui {
namespace {

QStringList words(const QString& text) {
  static const QRegularExpression separators(QStringLiteral("[\\s,]+"));
  return text.split(separators, Qt::SkipEmptyParts);
}

}  // namespace

QStringList wordDiff(const QString& before, const QString& after) {
  const QStringList a = words(before);
  const QStringList b = words(after);
  const auto n = a.size(), m = b.size();
  // lcs[i][j]: the longest common subsequence of a[i..] and b[j..]. Prompts are short (77 tokens), so
  // the quadratic table is a few kilobytes.
  std::vector<std::vector<int>> lcs(n + 1, std::vector<int>(m + 1, 0));
  for (auto i = n - 1; i >= 0; --i)
    for (auto j = m - 1; j >= 0; --j)
      lcs[i][j] = a[i] == b[j] ? lcs[i + 1][j + 1] + 1 : std::max(lcs[i + 1][j], lcs[i][j + 1]);

  QStringList changes;
  qsizetype i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] == b[j]) {
      ++i;
      ++j;
    } else if (i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1])) {
      changes << QLatin1Char('-') + a[i++];  // removals first: "-cat +dog" reads as a replacement
    } else {
      changes << QLatin1Char('+') + b[j++];
    }
  }
  return changes;
}

QString wordDiffText(const QString& before, const QString& after) {
  const QStringList changes = wordDiff(before, after);
  return changes.isEmpty() ? QObject::tr("(same prompt)") : changes.join(QLatin1Char(' '));
}

}  // namespace fisedit::ui
