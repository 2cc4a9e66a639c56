#pragma once
// The generation parameters (seed, steps, guidance, sampler, size), the device, and the options of an
// edit (mask mode, margin, detection steps, attention control). Builds engine requests; knows nothing
// of the history.
#include "backend/device.h"
#include "io/a1111_parameters.h"
#include "pipeline/generation.h"

#include <QWidget>

class QCheckBox;
class QComboBox;
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
  // Shows the parameters an image was made with, so that changing only the prompt edits it.
  void showRequest(const GenerationRequest& request);
  // The model's own size: the default preset ("512x512 (model)"), added first when no preset has it.
  void setModelSize(int size);
  // Prompts and painted mask left empty. Attention control is off in the painted mode, which runs no
  // detection steps for it to act on.
  EditRequest editOptions() const;
  MaskMode maskMode() const;
  void setMaskMode(MaskMode mode);
  // The painted and intersect modes need a painted mask; without one the mode returns to automatic.
  void setPaintedMaskAvailable(bool available);
  // The choices a user makes once and expects back next time (like A1111's UI defaults): steps, CFG
  // scale, sampler, random seed, and the edit options' margin, detection steps and attention control.
  // Not the seed, the size (it follows the model), the device or the region mode (it follows the
  // painting). Values out of range are clamped, unknown samplers ignored.
  void saveChoices(QSettings& settings) const;
  // Takes what an image's parameters text says (seed, with random seed off; steps; CFG; sampler; size,
  // rounded down to multiples of 8) and returns what could not be taken, for the user.
  QStringList applyImageParameters(const ImageParameters& parameters);
  void restoreChoices(const QSettings& settings);
  void setAttentionControl(bool on);
  DeviceChoice device() const;

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
  void applyPreset(int index);
  // The sampler of that engine name ("ddim", ...); an unknown name leaves the choice as it is.
  void selectScheduler(const QString& name);
  void selectPresetFor(int width, int height);
  void updateEditBox();

  QSpinBox* m_seed = nullptr;
  QCheckBox* m_randomSeed = nullptr;
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
  int m_modelSize = 512;
};

}  // namespace fisedit::ui
