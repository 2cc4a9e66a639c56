// GenerationRequest and EditRequest settings to and from JSON, strictly typed (request_json.h).
#include "io/request_json.h"

#include "core/error.h"
#include "io/json_file.h"

#include <cmath>
#include <cstdint>
#include <limits>

namespace fisedit {
namespace {

using Json = nlohmann::json;

// Reads the keys of one object, each under its current name or the camelCase one older project files
// used, and reports a bad one as "<where>: "key" ...".
class Reader {
public:
  Reader(const Json& json, const std::string& where) : json_(json), where_(where) {
    if (!json.is_object()) fail("expected a JSON object, got " + describe(json));
  }

  // The value under `key` (or, when that is absent, under `legacy`); null when neither is there.
  const Json* find(const char* key, const char* legacy = nullptr) {
    key_ = key;
    if (auto it = json_.find(key); it != json_.end()) return &*it;
    if (legacy) {
      if (auto it = json_.find(legacy); it != json_.end()) {
        key_ = legacy;
        return &*it;
      }
    }
    return nullptr;
  }
  const Json& require(const char* key, const char* legacy = nullptr) {
    if (const Json* v = find(key, legacy)) return *v;
    key_ = key;
    fail("is missing");
  }

  std::string string(const Json& v) {
    if (!v.is_string()) wrong_type(v, "a string");
    return v.get<std::string>();
  }
  bool boolean(const Json& v) {
    if (!v.is_boolean()) wrong_type(v, "true or false");
    return v.get<bool>();
  }
  int integer(const Json& v) {
    int out = 0;
    const JsonFit fit = json_to_int(v, out);
    if (fit == JsonFit::wrong_type) wrong_type(v, "an integer");
    if (fit == JsonFit::out_of_range) fail("is out of range: " + v.dump());
    return out;
  }
  std::uint64_t seed(const Json& v) {
    if (!v.is_number_integer()) wrong_type(v, "an integer");
    if (v.is_number_unsigned()) return v.get<std::uint64_t>();
    return static_cast<std::uint64_t>(v.get<std::int64_t>());  // the bit pattern of older files' signed seeds
  }
  float number(const Json& v) {
    float out = 0;
    const JsonFit fit = json_to_float(v, out);
    if (fit == JsonFit::wrong_type) wrong_type(v, "a number");
    // nlohmann reads 1e999 as infinity (and writes it back as null): refused like a wrong type, not
    // carried into a request as a CFG scale of inf.
    if (fit == JsonFit::out_of_range)
      fail("must be a finite number within float's range, got " + (std::isfinite(v.get<double>()) ? v.dump() : std::string("infinity")));
    return out;
  }

  [[noreturn]] void fail(const std::string& what) const {
    const std::string subject = key_.empty() ? what : "\"" + key_ + "\" " + what;
    throw Error(ErrorCode::invalid_argument, where_.empty() ? subject : where_ + ": " + subject);
  }

private:
  static std::string describe(const Json& v) {
    std::string text = v.dump(-1, ' ', false, Json::error_handler_t::replace);
    if (text.size() > 40) text = text.substr(0, 37) + "...";
    return std::string(v.type_name()) + (v.is_object() || v.is_array() || v.is_null() ? "" : " " + text);
  }
  [[noreturn]] void wrong_type(const Json& v, const char* expected) const {
    fail("must be " + std::string(expected) + ", got " + describe(v));
  }

  const Json& json_;
  const std::string& where_;
  std::string key_;
};

}  // namespace

const char* mask_mode_name(MaskMode mode) {
  switch (mode) {
    case MaskMode::painted: return "painted";
    case MaskMode::intersect: return "intersect";
    case MaskMode::automatic: break;
  }
  return "automatic";
}

std::optional<MaskMode> mask_mode_from_name(std::string_view name) {
  for (const MaskMode mode : {MaskMode::automatic, MaskMode::painted, MaskMode::intersect})
    if (name == mask_mode_name(mode)) return mode;
  return std::nullopt;
}

Json to_json(const GenerationRequest& r) {
  Json json = {{"prompt", r.prompt},
               {"negative_prompt", r.negative_prompt},
               {"seed", r.seed},
               {"steps", r.steps},
               {"cfg_scale", static_cast<double>(r.cfg_scale)},
               {"scheduler", r.scheduler},
               {"width", r.width},
               {"height", r.height}};
  if (r.init_image || !r.init_image_name.empty()) {
    json["init_image"] = r.init_image_name;
    json["strength"] = static_cast<double>(r.strength);
  }
  return json;
}

GenerationRequest generation_request_from_json(const Json& json, const std::string& where) {
  Reader in(json, where);
  GenerationRequest r;
  r.prompt = in.string(in.require("prompt"));
  r.negative_prompt = in.string(in.require("negative_prompt", "negativePrompt"));
  r.seed = in.seed(in.require("seed"));
  r.steps = in.integer(in.require("steps"));
  r.cfg_scale = in.number(in.require("cfg_scale", "cfgScale"));
  r.scheduler = in.string(in.require("scheduler"));
  r.width = in.integer(in.require("width"));
  r.height = in.integer(in.require("height"));
  // Image to image: the starting image's name and the strength; the pixels are the reader's to load.
  if (const Json* v = in.find("init_image")) {
    r.init_image_name = in.string(*v);
    r.strength = in.number(in.require("strength"));
  }
  return r;
}

Json edit_settings_to_json(const EditRequest& e) {
  return {{"mask_mode", mask_mode_name(e.mask_mode)},
          {"mask_margin", e.margin},
          {"detect_steps", e.detect_steps},
          {"feather", e.feather},
          {"attention_control", e.attention_control},
          {"whole_image_if_global", e.whole_image_if_global}};
}

EditRequest edit_settings_from_json(const Json& json, const std::string& where) {
  Reader in(json, where);
  EditRequest e;
  if (const Json* v = in.find("mask_mode", "maskMode")) {
    const auto mode = mask_mode_from_name(in.string(*v));
    if (!mode) in.fail("must be automatic, painted or intersect, got \"" + v->get<std::string>() + "\"");
    e.mask_mode = *mode;
  }
  if (const Json* v = in.find("mask_margin", "margin")) e.margin = in.integer(*v);
  if (const Json* v = in.find("detect_steps", "detectSteps")) e.detect_steps = in.integer(*v);
  if (const Json* v = in.find("feather")) e.feather = in.integer(*v);
  if (const Json* v = in.find("attention_control", "attentionControl")) e.attention_control = in.boolean(*v);
  if (const Json* v = in.find("whole_image_if_global", "wholeImageIfGlobal")) e.whole_image_if_global = in.boolean(*v);
  return e;
}

}  // namespace fisedit
