// The parameters panel (parameters_panel.h): generation and edit options, size presets, requests.
#include "ui/parameters_panel.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QGroupBox>
#include <QLabel>
#include <QHBoxLayout>
#include <QPixmap>
#include <QSettings>
#include <QSlider>
#include <QSignalBlocker>
#include <QSpinBox>
#include <QStandardItemModel>
#include <QToolButton>
#include <QVBoxLayout>

#include <cmath>

#include "ui/history_record.h"  // toQImage

namespace fisedit::ui {
namespace {

// Sizes SD 1.x and 2.x are commonly run at (the presets of AUTOMATIC1111's and InvokeAI's users), after
// the model's own; a size typed by hand shows as "Custom".
const QList<QSize> kPresets = {{512, 512}, {768, 768}, {512, 768}, {768, 512}, {640, 448}, {448, 640}, {1024, 1024}};
constexpr int kMaxSeed = 2147483647;  // a QSpinBox holds an int; A1111 seeds are 32-bit too

QSpinBox* spin(int min, int max, int value, int step, const QString& name) {
  auto* box = new QSpinBox;
  box->setRange(min, max);
  box->setValue(value);
  box->setSingleStep(step);
  box->setObjectName(name);
  return box;
}

}  // namespace

ParametersPanel::ParametersPanel(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->addWidget(createGenerationBox());
  layout->addWidget(createStartImageBox());
  layout->addWidget(createEditBox());
}

QWidget* ParametersPanel::createGenerationBox() {
  auto* box = new QGroupBox(tr("Parameters"));
  auto* form = new QFormLayout(box);

  m_seed = spin(0, kMaxSeed, 42, 1, QStringLiteral("seedSpin"));
  m_randomSeed = new QCheckBox(tr("random"));
  m_randomSeed->setObjectName(QStringLiteral("randomSeed"));
  m_randomSeed->setToolTip(tr("A new seed for every new image. Edits keep their image's seed."));
  auto* reuse = new QToolButton;
  reuse->setObjectName(QStringLiteral("reuseSeedButton"));
  reuse->setText(QStringLiteral("♻"));
  reuse->setToolTip(tr("Use the current image's seed"));
  auto* seedRow = new QHBoxLayout;
  seedRow->addWidget(m_seed, 1);
  seedRow->addWidget(m_randomSeed);
  seedRow->addWidget(reuse);
  form->addRow(tr("Seed"), seedRow);
  connect(m_randomSeed, &QCheckBox::toggled, m_seed, &QWidget::setDisabled);
  connect(reuse, &QToolButton::clicked, this, &ParametersPanel::reuseSeedRequested);
  // A1111's "Batch count": that many images, one after another, seeds seed, seed+1, ... (with a random
  // seed, one random base and +1 each). Each is a node of its own in the history.
  m_batchCount = spin(1, kMaxBatchCount, 1, 1, QStringLiteral("batchCountSpin"));
  m_batchCount->setToolTip(tr("How many images one Generate makes, one after another, with the seeds seed, seed+1, "
                              "... Each becomes a node of the history. Edits make one image, or with \"Edit all in "
                              "batch\" one per image of the batch."));
  form->addRow(tr("Batch count"), m_batchCount);
  connect(m_batchCount, &QSpinBox::valueChanged, this, &ParametersPanel::changed);

  // 20, as AUTOMATIC1111 starts with: enough for DPM++ 2M and DDIM on SD, and what the built-in
  // toy-world model was trained and benchmarked with.
  m_steps = spin(1, 150, 20, 1, QStringLiteral("stepsSpin"));
  form->addRow(tr("Steps"), m_steps);
  m_cfg = new QDoubleSpinBox;
  m_cfg->setObjectName(QStringLiteral("cfgSpin"));
  m_cfg->setRange(0, 30);
  m_cfg->setSingleStep(0.5);
  m_cfg->setDecimals(1);
  m_cfg->setValue(7.5);
  m_cfg->setToolTip(tr("Classifier-free guidance: how strongly the prompt steers (1 or less: prompt alone)"));
  form->addRow(tr("CFG scale"), m_cfg);

  m_scheduler = new QComboBox;
  m_scheduler->setObjectName(QStringLiteral("schedulerCombo"));
  for (const auto& name : scheduler_names())
    m_scheduler->addItem(QString::fromStdString(a1111_sampler_name(name)), QString::fromStdString(name));
  form->addRow(tr("Sampler"), m_scheduler);

  m_sizePreset = new QComboBox;
  m_sizePreset->setObjectName(QStringLiteral("sizePreset"));
  m_sizePreset->setToolTip(tr("The model's own size first: it was trained at it, and strays far from it "
                              "repeat or crop the subject"));
  form->addRow(tr("Size"), m_sizePreset);
  m_width = spin(64, 2048, 512, 8, QStringLiteral("widthSpin"));
  m_height = spin(64, 2048, 512, 8, QStringLiteral("heightSpin"));
  m_width->setSuffix(QStringLiteral(" px"));
  m_height->setSuffix(QStringLiteral(" px"));
  auto* swap = new QToolButton;
  swap->setObjectName(QStringLiteral("swapSizeButton"));
  swap->setText(QStringLiteral("⇄"));
  swap->setToolTip(tr("Swap width and height (portrait ↔ landscape)"));
  auto* sizeRow = new QHBoxLayout;
  sizeRow->addWidget(m_width, 1);
  sizeRow->addWidget(new QLabel(QStringLiteral("×")));
  sizeRow->addWidget(m_height, 1);
  sizeRow->addWidget(swap);
  form->addRow(QString(), sizeRow);
  fillSizePresets();
  connect(m_sizePreset, &QComboBox::currentIndexChanged, this, &ParametersPanel::applyPreset);
  connect(swap, &QToolButton::clicked, this, [this] { setSize(m_height->value(), m_width->value()); });
  // A size typed by hand names its preset, or "Custom": the combo never claims a size that is not set.
  for (auto* side : {m_width, m_height})
    connect(side, &QSpinBox::valueChanged, this, [this] { selectPresetFor(m_width->value(), m_height->value()); });

  m_device = new QComboBox;
  m_device->setObjectName(QStringLiteral("deviceCombo"));
  m_device->addItem(tr("Auto (GPU if present)"), QVariant::fromValue(DeviceChoice::automatic));
  m_device->addItem(tr("CPU"), QVariant::fromValue(DeviceChoice::cpu));
  m_device->addItem(tr("CUDA"), QVariant::fromValue(DeviceChoice::cuda));
  m_device->setToolTip(tr("Changing the device starts a new history: the cached activations live on the old one."));
  form->addRow(tr("Device"), m_device);
  connect(m_device, &QComboBox::currentIndexChanged, this, [this] { emit deviceChanged(device()); });

  for (auto* s : {m_seed, m_steps, m_width, m_height})
    connect(s, &QSpinBox::valueChanged, this, &ParametersPanel::changed);
  connect(m_cfg, &QDoubleSpinBox::valueChanged, this, &ParametersPanel::changed);
  connect(m_scheduler, &QComboBox::currentIndexChanged, this, &ParametersPanel::changed);
  connect(m_randomSeed, &QCheckBox::toggled, this, &ParametersPanel::changed);
  applyPreset(0);
  return box;
}

QWidget* ParametersPanel::createEditBox() {
  auto* box = new QGroupBox(tr("Edit"));
  auto* form = new QFormLayout(box);
  m_maskMode = new QComboBox;
  m_maskMode->setObjectName(QStringLiteral("maskModeCombo"));
  m_maskMode->addItem(tr("automatic"), QVariant::fromValue(int(MaskMode::automatic)));
  m_maskMode->addItem(tr("painted"), QVariant::fromValue(int(MaskMode::painted)));
  m_maskMode->addItem(tr("both (intersect)"), QVariant::fromValue(int(MaskMode::intersect)));
  m_maskMode->setItemData(0, tr("Where the first steps with the new prompt show the image moving"), Qt::ToolTipRole);
  m_maskMode->setItemData(1, tr("Only the painted region, no detection steps"), Qt::ToolTipRole);
  m_maskMode->setItemData(2, tr("Where the image moves, but only inside the painted region"), Qt::ToolTipRole);
  m_maskMode->setToolTip(tr("Where an edit re-renders. Painting a mask on the image (Brush, B) enables "
                            "\"painted\" and \"both\"."));
  form->addRow(tr("Region"), m_maskMode);
  setPaintedMaskAvailable(false);
  connect(m_maskMode, &QComboBox::currentIndexChanged, this, &ParametersPanel::updateEditBox);
  connect(m_maskMode, &QComboBox::currentIndexChanged, this, &ParametersPanel::changed);
  m_margin = spin(0, 16, kDefaultMaskMargin, 1, QStringLiteral("marginSpin"));
  m_margin->setToolTip(tr("Widens the region by this many latent pixels (8 image pixels each)"));
  form->addRow(tr("Margin"), m_margin);
  m_detectSteps = spin(0, 150, 0, 1, QStringLiteral("detectStepsSpin"));
  m_detectSteps->setSpecialValueText(tr("1 per 20 steps"));
  m_detectSteps->setToolTip(tr("Steps run in full with the new prompt to find the region"));
  form->addRow(tr("Detection"), m_detectSteps);
  m_attentionControl = new QCheckBox(tr("attention control"));
  m_attentionControl->setObjectName(QStringLiteral("attentionControlCheck"));
  m_attentionControl->setToolTip(
      tr("During the detection steps, the words the new prompt keeps take their cross-attention from the "
         "previous image, so the region concentrates where the new words act. Off for a painted region, "
         "which runs no detection steps."));
  form->addRow(QString(), m_attentionControl);
  connect(m_attentionControl, &QCheckBox::toggled, this, &ParametersPanel::changed);
  m_wholeImageIfGlobal = new QCheckBox(tr("whole image for global changes"));
  m_wholeImageIfGlobal->setObjectName(QStringLiteral("wholeImageIfGlobalCheck"));
  m_wholeImageIfGlobal->setChecked(kDefaultWholeImageIfGlobal);
  m_wholeImageIfGlobal->setToolTip(
      tr("When the new words move the whole image (another background, another style), re-render all of it "
         "instead of the patches that moved most. Off: always a region."));
  form->addRow(QString(), m_wholeImageIfGlobal);
  connect(m_wholeImageIfGlobal, &QCheckBox::toggled, this, &ParametersPanel::changed);
  updateEditBox();
  return box;
}

void ParametersPanel::fillSizePresets() {
  const QSignalBlocker block(m_sizePreset);
  m_sizePreset->clear();
  const QSize native(m_modelSize, m_modelSize);
  const auto fits = [this](QSize s) {
    return s.width() % 8 == 0 && s.height() % 8 == 0 && s.width() >= m_width->minimum() &&
           s.width() <= m_width->maximum() && s.height() >= m_height->minimum() && s.height() <= m_height->maximum();
  };
  if (fits(native)) m_sizePreset->addItem(tr("%1×%2 (native)").arg(native.width()).arg(native.height()), native);
  for (const QSize& s : kPresets)
    if (s != native && fits(s)) m_sizePreset->addItem(QStringLiteral("%1×%2").arg(s.width()).arg(s.height()), s);
  m_sizePreset->addItem(tr("Custom"));
}

QList<QSize> ParametersPanel::sizePresets() const {
  QList<QSize> sizes;
  for (int i = 0; i < m_sizePreset->count(); ++i)
    if (m_sizePreset->itemData(i).isValid()) sizes << m_sizePreset->itemData(i).toSize();
  return sizes;
}

void ParametersPanel::applyPreset(int index) {
  if (!m_sizePreset->itemData(index).isValid()) return;  // "Custom": the size stays, for the user to type
  const QSize s = m_sizePreset->itemData(index).toSize();
  const QSignalBlocker blockWidth(m_width), blockHeight(m_height);
  m_width->setValue(s.width());
  m_height->setValue(s.height());
  emit changed();
}

void ParametersPanel::selectPresetFor(int width, int height) {
  int index = m_sizePreset->findData(QSize(width, height));
  if (index < 0) index = m_sizePreset->count() - 1;
  const QSignalBlocker block(m_sizePreset);
  m_sizePreset->setCurrentIndex(index);
}

void ParametersPanel::setSize(int width, int height) {
  selectPresetFor(width, height);
  m_width->setValue(width);
  m_height->setValue(height);
}

void ParametersPanel::setModelSize(int size) {
  m_modelSize = size;
  // The model's size first, marked, even where it is one of SD's common sizes or none of them (the
  // built-in toy-world model: 256): the size to start from is the one at the top.
  fillSizePresets();
  setSize(size, size);
}

void ParametersPanel::setSteps(int steps) { m_steps->setValue(steps); }

void ParametersPanel::selectScheduler(const QString& name) {
  const int index = m_scheduler->findData(name);
  if (index >= 0) m_scheduler->setCurrentIndex(index);
}

void ParametersPanel::setDevice(DeviceChoice choice) {
  m_device->setCurrentIndex(m_device->findData(QVariant::fromValue(choice)));
}

int ParametersPanel::batchCount() const { return m_batchCount->value(); }
void ParametersPanel::setBatchCount(int count) { m_batchCount->setValue(count); }

std::uint64_t ParametersPanel::seed() const { return static_cast<std::uint64_t>(m_seed->value()); }
bool ParametersPanel::randomSeed() const { return m_randomSeed->isChecked(); }
DeviceChoice ParametersPanel::device() const { return m_device->currentData().value<DeviceChoice>(); }

GenerationRequest ParametersPanel::request(std::uint64_t seed) const {
  GenerationRequest r;
  r.seed = seed;
  r.steps = m_steps->value();
  r.cfg_scale = static_cast<float>(m_cfg->value());
  r.scheduler = m_scheduler->currentData().toString().toStdString();
  r.width = m_width->value();
  r.height = m_height->value();
  if (m_startImage) {  // image to image
    r.init_image = m_startImage;
    r.init_image_name = m_startImageName.toStdString();
    r.strength = static_cast<float>(strength());
  }
  return r;
}

void ParametersPanel::showRequest(const GenerationRequest& r) {
  const QSignalBlocker block(this);  // one changed() at the end, not one per field
  if (!randomSeed()) m_seed->setValue(static_cast<int>(std::min<std::uint64_t>(r.seed, kMaxSeed)));
  m_steps->setValue(r.steps);
  m_cfg->setValue(r.cfg_scale);
  selectScheduler(QString::fromStdString(r.scheduler));
  setSize(r.width, r.height);
  // An image-to-image node shows its start image (as the engine ran it, fitted to the size), so that
  // changing only the prompt edits it; a text-to-image node clears it.
  if (r.init_image) {
    setStartImage(*r.init_image, QString::fromStdString(r.init_image_name));
    setStrength(r.strength);
  } else {
    clearStartImage();
  }
  emit changed();
}

MaskMode ParametersPanel::maskMode() const { return static_cast<MaskMode>(m_maskMode->currentData().toInt()); }

void ParametersPanel::setMaskMode(MaskMode mode) {
  m_maskMode->setCurrentIndex(m_maskMode->findData(QVariant::fromValue(int(mode))));
}

void ParametersPanel::setPaintedMaskAvailable(bool available) {
  auto* items = qobject_cast<QStandardItemModel*>(m_maskMode->model());
  for (int row : {1, 2}) items->item(row)->setEnabled(available);
  if (!available) setMaskMode(MaskMode::automatic);
}

void ParametersPanel::updateEditBox() {
  // A painted region needs no detection: the setting would have no effect.
  m_detectSteps->setEnabled(maskMode() != MaskMode::painted);
  m_attentionControl->setEnabled(maskMode() != MaskMode::painted);
  m_wholeImageIfGlobal->setEnabled(maskMode() != MaskMode::painted);
}

void ParametersPanel::setAttentionControl(bool on) { m_attentionControl->setChecked(on); }

QStringList ParametersPanel::applyImageParameters(const ImageParameters& p) {
  const QSignalBlocker block(this);  // one changed() at the end
  QStringList notes;
  if (p.seed && *p.seed <= static_cast<std::uint64_t>(kMaxSeed)) {
    m_randomSeed->setChecked(false);
    m_seed->setValue(static_cast<int>(*p.seed));
  } else if (p.seed) {
    notes << tr("seed %1 is beyond the seed box (up to %2): kept %3").arg(*p.seed).arg(kMaxSeed).arg(m_seed->value());
  }
  if (p.steps) m_steps->setValue(*p.steps);
  if (p.cfg_scale) m_cfg->setValue(*p.cfg_scale);
  if (p.scheduler) {
    selectScheduler(QString::fromStdString(*p.scheduler));
  } else if (!p.unknown_sampler.empty()) {
    notes << tr("sampler \"%1\" is not one of fisedit's: kept %2")
                 .arg(QString::fromStdString(p.unknown_sampler), m_scheduler->currentText());
  }
  if (p.width && p.height && *p.width >= 8 && *p.height >= 8) setSize(*p.width / 8 * 8, *p.height / 8 * 8);
  // An image-to-image result: its strength is taken; its start image is not in the text.
  if (p.denoising_strength && *p.denoising_strength > 0.0f && *p.denoising_strength <= 1.0f) {
    setStrength(*p.denoising_strength);
    if (!hasStartImage())
      notes << tr("made by image to image (strength %1): open its start image with File > Open Image as Start...")
                   .arg(*p.denoising_strength, 0, 'f', 2);
  }
  emit changed();
  return notes;
}

void ParametersPanel::saveChoices(QSettings& settings) const {
  settings.setValue(QStringLiteral("parameters/steps"), m_steps->value());
  settings.setValue(QStringLiteral("parameters/cfg"), m_cfg->value());
  settings.setValue(QStringLiteral("parameters/sampler"), m_scheduler->currentData().toString());
  settings.setValue(QStringLiteral("parameters/randomSeed"), m_randomSeed->isChecked());
  settings.setValue(QStringLiteral("parameters/batchCount"), m_batchCount->value());
  settings.setValue(QStringLiteral("edit/margin"), m_margin->value());
  settings.setValue(QStringLiteral("edit/detectSteps"), m_detectSteps->value());
  settings.setValue(QStringLiteral("edit/attentionControl"), m_attentionControl->isChecked());
}

void ParametersPanel::restoreChoices(const QSettings& settings) {
  const QSignalBlocker block(this);  // one changed() at the end
  const auto restoreInt = [&](QSpinBox* box, const char* key) {
    bool ok = false;
    const int value = settings.value(QLatin1String(key)).toInt(&ok);
    if (ok) box->setValue(value);  // clamped to the box's range
  };
  restoreInt(m_steps, "parameters/steps");
  restoreInt(m_batchCount, "parameters/batchCount");
  restoreInt(m_margin, "edit/margin");
  restoreInt(m_detectSteps, "edit/detectSteps");
  bool ok = false;
  const double cfg = settings.value(QStringLiteral("parameters/cfg")).toDouble(&ok);
  if (ok) m_cfg->setValue(cfg);
  selectScheduler(settings.value(QStringLiteral("parameters/sampler")).toString());
  if (settings.contains(QStringLiteral("parameters/randomSeed")))
    m_randomSeed->setChecked(settings.value(QStringLiteral("parameters/randomSeed")).toBool());
  if (settings.contains(QStringLiteral("edit/attentionControl")))
    m_attentionControl->setChecked(settings.value(QStringLiteral("edit/attentionControl")).toBool());
  emit changed();
}

EditRequest ParametersPanel::editOptions() const {
  EditRequest e;
  e.mask_mode = maskMode();
  e.margin = m_margin->value();
  e.whole_image_if_global = m_wholeImageIfGlobal->isChecked() && e.mask_mode != MaskMode::painted;
  e.detect_steps = m_detectSteps->value() == 0 ? -1 : m_detectSteps->value();
  e.attention_control = m_attentionControl->isChecked() && e.mask_mode != MaskMode::painted;
  return e;
}

// Image to image: File > Open Image as Start... (or a picture dropped on the window) sets the start
// image; Generate then encodes it and denoises the last `strength` of the schedule.
QWidget* ParametersPanel::createStartImageBox() {
  auto* box = new QGroupBox(tr("Start image"));
  box->setObjectName(QStringLiteral("startImageBox"));
  auto* form = new QFormLayout(box);
  m_startThumbnail = new QLabel;
  m_startThumbnail->setObjectName(QStringLiteral("startImageThumbnail"));
  m_startThumbnail->setFixedSize(72, 72);
  m_startThumbnail->setAlignment(Qt::AlignCenter);
  m_startThumbnail->setFrameShape(QFrame::StyledPanel);
  m_startName = new QLabel;
  m_startName->setObjectName(QStringLiteral("startImageName"));
  m_startName->setWordWrap(true);
  m_clearStart = new QToolButton;
  m_clearStart->setObjectName(QStringLiteral("clearStartImageButton"));
  m_clearStart->setText(QStringLiteral("✕"));
  m_clearStart->setToolTip(tr("Clear the start image: Generate makes an image from the prompt alone"));
  auto* row = new QHBoxLayout;
  row->addWidget(m_startThumbnail);
  row->addWidget(m_startName, 1);
  row->addWidget(m_clearStart);
  form->addRow(row);
  m_strength = new QSlider(Qt::Horizontal);
  m_strength->setObjectName(QStringLiteral("strengthSlider"));
  m_strength->setRange(5, 100);  // 0.05 .. 1.00
  m_strength->setValue(75);
  m_strength->setToolTip(tr("How much of the schedule re-renders the start image: low keeps it, 1 starts from "
                            "noise (Denoising strength)"));
  m_strengthValue = new QLabel;
  auto* strengthRow = new QHBoxLayout;
  strengthRow->addWidget(m_strength, 1);
  strengthRow->addWidget(m_strengthValue);
  form->addRow(tr("Strength"), strengthRow);
  connect(m_strength, &QSlider::valueChanged, this, [this](int v) {
    m_strengthValue->setText(QString::number(v / 100.0, 'f', 2));
    emit changed();
  });
  connect(m_clearStart, &QToolButton::clicked, this, &ParametersPanel::clearStartImage);
  m_strengthValue->setText(QStringLiteral("0.75"));
  clearStartImage();
  return box;
}

void ParametersPanel::setStartImage(const Image8& image, const QString& name) {
  m_startImage = image;
  m_startImageName = name;
  m_startThumbnail->setPixmap(QPixmap::fromImage(toQImage(image)).scaled(m_startThumbnail->size(), Qt::KeepAspectRatio,
                                                                         Qt::SmoothTransformation));
  m_startName->setText(tr("%1\n%2×%3: Generate starts from it").arg(name.isEmpty() ? tr("Start image") : name)
                           .arg(image.width).arg(image.height));
  m_strength->setEnabled(true);
  m_clearStart->setEnabled(true);
  emit changed();
}

void ParametersPanel::clearStartImage() {
  m_startImage.reset();
  m_startImageName.clear();
  m_startThumbnail->clear();
  m_startName->setText(tr("None: File > Open Image as Start..., or drop a picture on the window"));
  m_strength->setEnabled(false);
  m_clearStart->setEnabled(false);
  emit changed();
}

double ParametersPanel::strength() const { return m_strength->value() / 100.0; }
void ParametersPanel::setStrength(double strength) { m_strength->setValue(static_cast<int>(std::lround(strength * 100))); }

}  // namespace fisedit::ui
