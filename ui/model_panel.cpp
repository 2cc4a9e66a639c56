// The model panel (model_panel.h): one row per fact of the loaded model.
#include "ui/model_panel.h"

#include "ui/model_summary.h"

#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QVBoxLayout>

namespace fisedit::ui {

ModelPanel::ModelPanel(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);

  auto* modelBox = new QGroupBox(tr("Model"), this);
  m_form = new QFormLayout(modelBox);
  m_form->setRowWrapPolicy(QFormLayout::DontWrapRows);
  m_form->setFieldGrowthPolicy(QFormLayout::AllNonFixedFieldsGrow);

  // A read-only line edit rather than a label: paths have no spaces to wrap at, and a line edit
  // scrolls and lets the user copy the path.
  m_source = new QLineEdit(modelBox);
  m_source->setObjectName(QStringLiteral("sourceValue"));
  m_source->setReadOnly(true);
  m_form->addRow(tr("Source"), m_source);

  m_format = addRow(tr("Format"), QStringLiteral("formatValue"));
  m_family = addRow(tr("Family"), QStringLiteral("familyValue"));
  m_prediction = addRow(tr("Prediction"), QStringLiteral("predictionValue"));
  m_scheduler = addRow(tr("Scheduler"), QStringLiteral("schedulerValue"));
  m_unetChannels = addRow(tr("U-Net channels"), QStringLiteral("unetChannelsValue"));
  m_unetHeads = addRow(tr("U-Net heads"), QStringLiteral("unetHeadsValue"));
  m_textEncoder = addRow(tr("Text encoder"), QStringLiteral("textEncoderValue"));
  m_vaeChannels = addRow(tr("VAE channels"), QStringLiteral("vaeChannelsValue"));
  m_parameters = addRow(tr("Parameters"), QStringLiteral("parametersValue"));
  m_weightDtype = addRow(tr("Weight dtype"), QStringLiteral("weightDtypeValue"));
  m_defaultSize = addRow(tr("Default size"), QStringLiteral("defaultSizeValue"));
  m_tokenizer = addRow(tr("Tokenizer"), QStringLiteral("tokenizerValue"));

  // Only a single-file checkpoint takes a config folder; diffusers folders carry their own configs.
  m_configRow = new QWidget(modelBox);
  auto* configLayout = new QHBoxLayout(m_configRow);
  configLayout->setContentsMargins(0, 0, 0, 0);
  m_configDir = new QLabel(m_configRow);
  m_configDir->setObjectName(QStringLiteral("configDirValue"));
  m_configDir->setWordWrap(true);
  m_configDir->setTextInteractionFlags(Qt::TextSelectableByMouse);
  m_configButton = new QPushButton(tr("Config folder..."), m_configRow);
  m_configButton->setObjectName(QStringLiteral("configFolderButton"));
  m_configButton->setToolTip(tr("Describe this checkpoint with the configs and tokenizer of a diffusers folder "
                                "of the same family (like diffusers' from_single_file(config=...)), then reload"));
  configLayout->addWidget(m_configDir, 1);
  configLayout->addWidget(m_configButton);
  m_form->addRow(tr("Config"), m_configRow);
  connect(m_configButton, &QPushButton::clicked, this, &ModelPanel::configFolderRequested);
  layout->addWidget(modelBox);

  auto* assumedBox = new QGroupBox(tr("Assumed, not read from the files"), this);
  auto* assumedLayout = new QVBoxLayout(assumedBox);
  m_assumptions = new QLabel(assumedBox);
  m_assumptions->setObjectName(QStringLiteral("assumptionsValue"));
  m_assumptions->setWordWrap(true);
  m_assumptions->setTextFormat(Qt::RichText);
  m_assumptions->setTextInteractionFlags(Qt::TextSelectableByMouse);
  assumedLayout->addWidget(m_assumptions);
  layout->addWidget(assumedBox);
  layout->addStretch(1);
}

QLabel* ModelPanel::addRow(const QString& label, const QString& objectName) {
  auto* value = new QLabel(m_form->parentWidget());
  value->setObjectName(objectName);
  value->setWordWrap(true);
  value->setTextInteractionFlags(Qt::TextSelectableByMouse);
  m_form->addRow(label, value);
  return value;
}

void ModelPanel::showModel(const ModelSummary& summary) {
  m_source->setText(summary.source);
  m_source->setToolTip(summary.source);
  m_format->setText(summary.format);
  m_family->setText(summary.family);
  m_prediction->setText(summary.prediction);
  m_scheduler->setText(summary.scheduler);
  m_unetChannels->setText(summary.unetChannels);
  m_unetHeads->setText(summary.unetHeads);
  m_textEncoder->setText(summary.textEncoder);
  m_vaeChannels->setText(summary.vaeChannels);
  m_parameters->setText(summary.parameters);
  m_weightDtype->setText(summary.weightDtype);
  m_defaultSize->setText(summary.defaultSize);

  if (summary.tokenizer) {
    m_tokenizer->setText(tr("CLIP BPE, %1 tokens").arg(summary.tokenizer->vocab_size()));
    m_tokenizer->setToolTip(QString());
  } else {
    m_tokenizer->setText(tr("none"));
    m_tokenizer->setToolTip(summary.tokenizerNote);
  }

  m_form->setRowVisible(m_configRow, summary.singleFile);
  m_configDir->setText(summary.configDir.isEmpty() ? tr("none (family rules)") : summary.configDir);

  if (summary.assumptions.isEmpty()) {
    m_assumptions->setText(tr("Nothing: every setting was read from the model's config files."));
  } else {
    QString items;
    for (const auto& a : summary.assumptions) items += QStringLiteral("<li>%1</li>").arg(a.toHtmlEscaped());
    m_assumptions->setText(QStringLiteral("<ul>%1</ul>").arg(items));
  }
}

}  // namespace fisedit::ui
