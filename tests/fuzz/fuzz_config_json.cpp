// libFuzzer target: a config.json read as each component's config (U-Net, VAE, text encoder, scheduler).
#include "core/error.h"
#include "io/json_file.h"
#include "io/model_config.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = fisedit::fuzz::write_input("config.json", data, size);
  try {
    const auto json = fisedit::read_json_file(path);
    const auto tolerant = [&](auto read) {
      try {
        read();
      } catch (const fisedit::Error&) {
      }
    };
    tolerant([&] { fisedit::UNetConfig::from_json(json, path); });
    tolerant([&] { fisedit::VaeConfig::from_json(json, path); });
    tolerant([&] { fisedit::TextEncoderConfig::from_json(json, path); });
    tolerant([&] { fisedit::SchedulerConfig::from_json(json, path); });
  } catch (const fisedit::Error&) {
  }
  return 0;
}
