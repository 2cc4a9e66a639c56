#pragma once
// GenerationRequest and an EditRequest's settings as JSON: the one spelling (snake_case keys) of the
// project file's nodes, the export's history.json, the `fisedit` PNG chunk (app and fisedit-cli) and
// fisedit-cli's --stats-json.
//
// A request's keys sit in the object they are written to beside the writer's own (model, device,
// timings...); a reader ignores keys it does not know. Readers also take the camelCase keys project
// files were written with before this module ("negativePrompt", "cfgScale"; in "edit": "maskMode",
// "margin", "detectSteps", "attentionControl", "wholeImageIfGlobal"), so saved projects still open.
#include "io/request.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace fisedit {

// "automatic", "painted", "intersect"; nullopt for any other name.
const char* mask_mode_name(MaskMode mode);
std::optional<MaskMode> mask_mode_from_name(std::string_view name);

// {"prompt", "negative_prompt", "seed", "steps", "cfg_scale", "scheduler", "width", "height"}. The
// seed is an unsigned 64-bit integer, exact. initial_noise (a tensor) is not written. An image-to-image
// request (init_image, or an init_image_name) adds {"init_image": init_image_name, "strength"}: the
// starting image's name, not its pixels (a project file stores those beside the node).
nlohmann::json to_json(const GenerationRequest& request);

// Those keys from `json`, an object that may hold others. All are required. Throws
// Error(invalid_argument) "<where>: ..." naming the key that is missing or has the wrong type (a string
// for the prompts and scheduler, an integer for seed, steps, width and height, a number for cfg_scale).
// A negative seed is taken as the 64-bit pattern of an unsigned one (older project files stored seeds
// bit-cast through a signed integer). With "init_image" (a string) there, "strength" (a number) is
// required too and init_image_name is set; init_image itself stays empty: the caller loads the pixels
// (an image-to-image request without them is not the request that made the image).
GenerationRequest generation_request_from_json(const nlohmann::json& json, const std::string& where);

// The settings of an edit: {"mask_mode", "mask_margin", "detect_steps", "feather", "attention_control",
// "whole_image_if_global"}. Not its prompts (those of the edited image's GenerationRequest), the
// painted mask (an image: stored as a file), mask_override, dense_reference or dense_levels_up_to
// (engine knobs of the benchmark and tests).
nlohmann::json edit_settings_to_json(const EditRequest& request);

// An EditRequest with those settings from `json` and everything else default. A key that is absent
// keeps EditRequest's default, which is what edits ran with before the key was written
// (attention_control and whole_image_if_global off). Throws Error(invalid_argument) "<where>: ..."
// naming a key of the wrong type (integers for mask_margin, detect_steps and feather, booleans for the
// switches) or an unknown mask mode.
EditRequest edit_settings_from_json(const nlohmann::json& json, const std::string& where);

}  // namespace fisedit
