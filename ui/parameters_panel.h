#pragma once
// The generation parameters (seed, steps, guidance, sampler, size), the device, and the options of an
// edit (mask mode, margin, detection steps, attention control). Builds engine requests; knows nothing
// of the history.
#include "backend/device.h"
#include "io/a1111_parameters.h"
#include "pipeline/generation.h"
#include "ui/history_record.h"  // kMaxBatchCount

#include <QWidget>

#include <optional>

class QCheckBox;
class QComboBox;
class QLabel;
class QSlider;
class QToolButton;
class QDoubleSpinBox;
class QSettings;
class QSpinBox;

namespace fisedit::ui {

class ParametersPanel : public QWidget {
  Q_OBJECT

public:
  explicit ParametersPanel(QWidget* parent = nullptr);

  // The parameters of the next image, prompts left empty. `seed` replaces the spin box's value (the
  // window draws a random one when randomSeed() is set).
  GenerationRequest request(std::uint64_t seed) const;
  std::uint64_t seed() const;
  bool randomSeed() const;
  // How many images a Generate makes (1..kMaxBatchCount): seeds seed(), seed() + 1, ...
  int batchCount() const;
  void setBatchCount(int count);
  // Shows the parameters an image was made with, so that changing only the prompt edits it.
  void showRequest(const GenerationRequest& request);
  // The model's own size: the first preset ("768×768 (native)"), then the common sizes that fit the
  // size limits, then "Custom"; the size is set to it.
  void setModelSize(int size);
  // The sizes the preset combo offers, in its order (without "Custom").
  QList<QSize> sizePresets() const;
  // Prompts and painted mask left empty. Attention control is off in the painted mode, which runs no
  // detection steps for it to act on.
  EditRequest editOptions() const;
  MaskMode maskMode() const;
  void setMaskMode(MaskMode mode);
  // The painted and intersect modes need a painted mask; without one the mode returns to automatic.
  void setPaintedMaskAvailable(bool available);
  // The choices a user makes once and expects back next time (like A1111's UI defaults): steps, CFG
  // scale, sampler, random seed, batch count, and the edit options' margin, detection steps and attention control.
  // Not the seed, the size (it follows the model), the device or the region mode (it follows the
  // painting). Values out of range are clamped, unknown samplers ignored.
  void saveChoices(QSettings& settings) const;
  // Takes what an image's parameters text says (seed, with random seed off; steps; CFG; sampler; size,
  // rounded down to multiples of 8) and returns what could not be taken, for the user.
  QStringList applyImageParameters(const ImageParameters& parameters);
  void restoreChoices(const QSettings& settings);
  void setAttentionControl(bool on);
  DeviceChoice device() const;

  // Image to image: the start image (any size; the engine fits it to the size) and its strength, which
  // request() hands on; cleared, Generate makes text to image again. The box shows a thumbnail.
  void setStartImage(const Image8& image, const QString& name);
  void clearStartImage();
  bool hasStartImage() const { return m_startImage.has_value(); }
  double strength() const;
  void setStrength(double strength);

  void setSteps(int steps);
  void setSize(int width, int height);
  void setDevice(DeviceChoice choice);

signals:
  void changed();
  void deviceChanged(fisedit::DeviceChoice choice);
  void reuseSeedRequested();

private:
  QWidget* createGenerationBox();
  QWidget* createEditBox();
  QWidget* createStartImageBox();
  void applyPreset(int index);
  void fillSizePresets();
  // The sampler of that engine name ("ddim", ...); an unknown name leaves the choice as it is.
  void selectScheduler(const QString& name);
  void selectPresetFor(int width, int height);
  void updateEditBox();

  QSpinBox* m_seed = nullptr;
  QCheckBox* m_randomSeed = nullptr;
  QSpinBox* m_batchCount = nullptr;
  QSpinBox* m_steps = nullptr;
  QDoubleSpinBox* m_cfg = nullptr;
  QComboBox* m_scheduler = nullptr;
  QComboBox* m_sizePreset = nullptr;
  QSpinBox* m_width = nullptr;
  QSpinBox* m_height = nullptr;
  QComboBox* m_device = nullptr;
  QComboBox* m_maskMode = nullptr;
  QSpinBox* m_margin = nullptr;
  QSpinBox* m_detectSteps = nullptr;
  QCheckBox* m_attentionControl = nullptr;
  QCheckBox* m_wholeImageIfGlobal = nullptr;
  int m_modelSize = 0;  // none loaded yet: no preset is marked native
  // Image to image (createStartImageBox).
  std::optional<Image8> m_startImage;
  QString m_startImageName;
  QLabel* m_startThumbnail = nullptr;
  QLabel* m_startName = nullptr;
  QSlider* m_strength = nullptr;
  QLabel* m_strengthValue = nullptr;
  QToolButton* m_clearStart = nullptr;
};

}  // namespace fisedit::ui
