#pragma once
// A prompt change as the history shows it: "+hat -cap". Words, not characters, because prompts are
// edited a word at a time and a word is what changes the image.
#include <QString>
#include <QStringList>

namespace fisedit::ui {

// The words removed from `before` ("-word") and added in `after` ("+word"), in the order they appear,
// from a longest common subsequence of the two word lists. Words are split at whitespace and commas
// (A1111-style prompts list tags with commas) and compared case-sensitively; empty when they match.
QStringList wordDiff(const QString& before, const QString& after);

// The diff joined for display; "(same prompt)" when nothing changed (e.g. only the negative prompt did).
QString wordDiffText(const QString& before, const QString& after);

}  // namespace fisedit::ui
