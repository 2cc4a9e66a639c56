#pragma once
// What the loaded model is, as the engine understood it: the facts a user needs to trust (or doubt)
// a load, above all the family and prediction type, and what was assumed rather than read.
#include <QWidget>

class QFormLayout;
class QLabel;
class QLineEdit;
class QPushButton;

namespace fisedit::ui {

struct ModelSummary;

class ModelPanel : public QWidget {
  Q_OBJECT

public:
  explicit ModelPanel(QWidget* parent = nullptr);

  void showModel(const ModelSummary& summary);

signals:
  // The user wants to describe a single-file checkpoint with a diffusers config folder.
  void configFolderRequested();

private:
  QLabel* addRow(const QString& label, const QString& objectName);

  QFormLayout* m_form = nullptr;

  QLineEdit* m_source = nullptr;
  QLabel* m_format = nullptr;
  QLabel* m_family = nullptr;
  QLabel* m_prediction = nullptr;
  QLabel* m_scheduler = nullptr;
  QLabel* m_unetChannels = nullptr;
  QLabel* m_unetHeads = nullptr;
  QLabel* m_textEncoder = nullptr;
  QLabel* m_vaeChannels = nullptr;
  QLabel* m_parameters = nullptr;
  QLabel* m_weightDtype = nullptr;
  QLabel* m_defaultSize = nullptr;
  QLabel* m_tokenizer = nullptr;
  QWidget* m_configRow = nullptr;
  QLabel* m_configDir = nullptr;
  QPushButton* m_configButton = nullptr;
  QLabel* m_assumptions = nullptr;
};

}  // namespace fisedit::ui
