// The requests' JSON (io/request_json.h): every field round-trips, wrong types and missing keys are
// refused with the key and the place named, and nodes of version-1 project files (camelCase keys) read.
#include "core/error.h"
#include "io/request_json.h"
#include "test_support.h"

#include <QtTest>

#include <cstdint>
#include <limits>
#include <set>

using namespace fisedit;
using Json = nlohmann::json;

namespace {

std::set<std::string> keys(const Json& object) {
  std::set<std::string> out;
  for (const auto& [key, value] : object.items()) out.insert(key);
  return out;
}

// The message of the Error `read` throws, empty when it throws none (or another kind).
template <class F>
QString errorOf(F read) {
  try {
    read();
  } catch (const Error& e) {
    if (e.code() != ErrorCode::invalid_argument) return QStringLiteral("wrong code: ") + e.what();
    return QString::fromUtf8(e.what());
  }
  return {};
}

Json node() {
  return Json::parse(R"({"prompt": "a cat", "negative_prompt": "blurry", "seed": 42, "steps": 20, "cfg_scale": 7.5,
                         "scheduler": "ddim", "width": 512, "height": 768, "id": 3, "device": "CPU"})");
}

}  // namespace

class TestRequestJson : public QObject {
  Q_OBJECT

private slots:
  void generationRoundTrip() {
    GenerationRequest r;
    r.prompt = "a (red:1.2) house\non a hill, \"quoted\" ünïcode";
    r.negative_prompt = "blurry";
    r.seed = std::numeric_limits<std::uint64_t>::max();  // beyond int64 and double: exact
    r.steps = 33;
    r.cfg_scale = 6.3f;
    r.scheduler = "dpmpp2m";
    r.width = 640;
    r.height = 448;
    r.initial_noise = Tensor::from_f32({1, 4, 2, 2}, std::vector<float>(16, 0.5f));
    const Json json = to_json(r);
    QCOMPARE(keys(json), (std::set<std::string>{"prompt", "negative_prompt", "seed", "steps", "cfg_scale", "scheduler",
                                                "width", "height"}));
    // Through text, as files carry it.
    const GenerationRequest back = generation_request_from_json(Json::parse(json.dump()), "test");
    QCOMPARE(back.prompt, r.prompt);
    QCOMPARE(back.negative_prompt, r.negative_prompt);
    QCOMPARE(back.seed, r.seed);
    QCOMPARE(back.steps, r.steps);
    QCOMPARE(back.cfg_scale, r.cfg_scale);
    QCOMPARE(back.scheduler, r.scheduler);
    QCOMPARE(back.width, r.width);
    QCOMPARE(back.height, r.height);
    QVERIFY(!back.initial_noise);  // a tensor: not stored
    // Every sampler's name is stored as is (projects and the fisedit PNG chunk).
    for (const auto& name : scheduler_names()) {
      r.scheduler = name;
      QCOMPARE(generation_request_from_json(Json::parse(to_json(r).dump()), "test").scheduler, name);
    }
    // Unknown keys beside the request's are the writer's own, and ignored.
    QCOMPARE(generation_request_from_json(node(), "node 3").prompt, std::string("a cat"));
    // A whole number where a float goes is that number.
    Json whole = node();
    whole["cfg_scale"] = 7;
    QCOMPARE(generation_request_from_json(whole, "w").cfg_scale, 7.0f);
  }

  void editSettingsRoundTrip_data() {
    QTest::addColumn<int>("mode");
    QTest::newRow("automatic") << int(MaskMode::automatic);
    QTest::newRow("painted") << int(MaskMode::painted);
    QTest::newRow("intersect") << int(MaskMode::intersect);
  }

  void editSettingsRoundTrip() {
    QFETCH(int, mode);
    EditRequest e;
    e.prompt = "not written";
    e.mask_mode = static_cast<MaskMode>(mode);
    e.painted_mask = Image8{2, 2, 1, std::vector<std::uint8_t>(4, 255)};
    e.margin = 3;
    e.detect_steps = 5;
    e.feather = 12;
    e.attention_control = true;
    e.whole_image_if_global = true;
    e.dense_reference = true;
    e.mask_override = LatentMask{1, 1, {1.0f}};
    const Json json = edit_settings_to_json(e);
    QCOMPARE(keys(json), (std::set<std::string>{"mask_mode", "mask_margin", "detect_steps", "feather", "attention_control",
                                                "whole_image_if_global"}));
    QCOMPARE(json["mask_mode"].get<std::string>(), std::string(mask_mode_name(e.mask_mode)));
    const EditRequest back = edit_settings_from_json(Json::parse(json.dump()), "test");
    QCOMPARE(back.mask_mode, e.mask_mode);
    QCOMPARE(back.margin, 3);
    QCOMPARE(back.detect_steps, 5);
    QCOMPARE(back.feather, 12);
    QVERIFY(back.attention_control);
    QVERIFY(back.whole_image_if_global);
    // What the settings are not: left at their defaults.
    QVERIFY(back.prompt.empty() && !back.painted_mask && !back.mask_override && !back.dense_reference);
    // Each switch off reads back off.
    e.attention_control = e.whole_image_if_global = false;
    const EditRequest off = edit_settings_from_json(edit_settings_to_json(e), "test");
    QVERIFY(!off.attention_control && !off.whole_image_if_global);
  }

  // Absent keys keep EditRequest's defaults: what edits ran with before the key was written.
  void editSettingsDefaults() {
    const EditRequest defaults;
    const EditRequest read = edit_settings_from_json(Json::object(), "test");
    QCOMPARE(read.mask_mode, defaults.mask_mode);
    QCOMPARE(read.margin, defaults.margin);
    QCOMPARE(read.detect_steps, defaults.detect_steps);
    QCOMPARE(read.feather, defaults.feather);
    QCOMPARE(read.attention_control, false);
    QCOMPARE(read.whole_image_if_global, false);
  }

  void wrongTypesNameTheKey_data() {
    QTest::addColumn<bool>("edit");
    QTest::addColumn<QString>("key");
    QTest::addColumn<QString>("value");  // JSON; empty: the key removed
    QTest::addColumn<QString>("message");
    QTest::newRow("prompt not a string") << false << "prompt" << "3" << "\"prompt\" must be a string, got number 3";
    QTest::newRow("negative prompt null") << false << "negative_prompt" << "null" << "\"negative_prompt\" must be a string, got null";
    QTest::newRow("seed a float") << false << "seed" << "1.5" << "\"seed\" must be an integer, got number 1.5";
    QTest::newRow("seed a string") << false << "seed" << "\"42\"" << "\"seed\" must be an integer, got string \"42\"";
    QTest::newRow("steps a string") << false << "steps" << "\"four\"" << "\"steps\" must be an integer, got string \"four\"";
    QTest::newRow("steps too big") << false << "steps" << "5000000000" << "\"steps\" is out of range: 5000000000";
    QTest::newRow("cfg scale a string") << false << "cfg_scale" << "\"high\"" << "\"cfg_scale\" must be a number, got string";
    QTest::newRow("scheduler an array") << false << "scheduler" << "[\"ddim\"]" << "\"scheduler\" must be a string, got array";
    QTest::newRow("width a bool") << false << "width" << "true" << "\"width\" must be an integer, got boolean true";
    QTest::newRow("height missing") << false << "height" << "" << "\"height\" is missing";
    QTest::newRow("mask mode unknown") << true << "mask_mode" << "\"sometimes\""
                                       << "\"mask_mode\" must be automatic, painted or intersect, got \"sometimes\"";
    QTest::newRow("mask mode a number") << true << "mask_mode" << "1" << "\"mask_mode\" must be a string, got number 1";
    QTest::newRow("margin a string") << true << "mask_margin" << "\"2\"" << "\"mask_margin\" must be an integer, got string \"2\"";
    QTest::newRow("detect steps a float") << true << "detect_steps" << "2.5" << "\"detect_steps\" must be an integer";
    QTest::newRow("feather negative huge") << true << "feather" << "-9999999999" << "\"feather\" is out of range";
    QTest::newRow("attention control 1") << true << "attention_control" << "1" << "\"attention_control\" must be true or false, got number 1";
    QTest::newRow("whole image a string") << true << "whole_image_if_global" << "\"yes\""
                                          << "\"whole_image_if_global\" must be true or false, got string \"yes\"";
    // An old file's key is named as the file spells it.
    QTest::newRow("old cfgScale") << false << "cfgScale" << "\"7\"" << "\"cfgScale\" must be a number, got string \"7\"";
    QTest::newRow("old maskMode") << true << "maskMode" << "\"everywhere\"" << "\"maskMode\" must be automatic, painted or intersect";
  }

  void wrongTypesNameTheKey() {
    QFETCH(bool, edit);
    QFETCH(QString, key);
    QFETCH(QString, value);
    QFETCH(QString, message);
    Json json = edit ? Json::object() : node();
    const std::string name = key.toStdString();
    if (name == "cfgScale") json.erase("cfg_scale");
    if (value.isEmpty())
      json.erase(name);
    else
      json[name] = Json::parse(value.toStdString());
    const QString error = errorOf([&] {
      if (edit)
        edit_settings_from_json(json, "node 7's edit in cats.fisedit");
      else
        generation_request_from_json(json, "node 7 in cats.fisedit");
    });
    QVERIFY2(error.startsWith(edit ? "node 7's edit in cats.fisedit: " : "node 7 in cats.fisedit: "), qPrintable(error));
    QVERIFY2(error.contains(message), qPrintable(error));
  }

  void notAnObjectIsRefused() {
    const QString generation = errorOf([] { generation_request_from_json(Json::array({1, 2}), "node 1"); });
    QVERIFY2(generation.startsWith("node 1: expected a JSON object, got array"), qPrintable(generation));
    const QString edit = errorOf([] { edit_settings_from_json(Json("automatic"), "node 2's edit"); });
    QVERIFY2(edit.startsWith("node 2's edit: expected a JSON object, got string"), qPrintable(edit));
  }

  // A node as version 1 of the project file wrote it (Qt JSON, camelCase request keys, the seed
  // through a signed 64-bit integer), and an older one without the later edit switches.
  void oldCamelCaseProjectNodeReads() {
    const Json old = Json::parse(R"json({
      "id": 2, "parent": 1, "prompt": "a photo of a cat wearing a hat", "negativePrompt": "lowres",
      "seed": 1234, "steps": 4, "cfgScale": 7, "scheduler": "dpmpp2m", "width": 128, "height": 128,
      "device": "CPU (float32, 2 threads)",
      "timings": {"textEncoderMs": 1.5, "unetMs": 20, "vaeMs": 3, "totalMs": 25, "jobMs": 30},
      "edit": {"maskMode": "intersect", "margin": 3, "detectSteps": 2, "feather": 6,
               "attentionControl": true, "wholeImageIfGlobal": true},
      "editFraction": 0.25,
      "editStats": {"detectSteps": 2, "attentionControlSteps": 1, "detectMs": 1, "sparseMs": 2, "decodeMs": 3, "totalMs": 6}
    })json");
    const GenerationRequest r = generation_request_from_json(old, "node 2");
    QCOMPARE(r.prompt, std::string("a photo of a cat wearing a hat"));
    QCOMPARE(r.negative_prompt, std::string("lowres"));
    QCOMPARE(r.seed, std::uint64_t{1234});
    QCOMPARE(r.steps, 4);
    QCOMPARE(r.cfg_scale, 7.0f);
    QCOMPARE(r.scheduler, std::string("dpmpp2m"));
    QCOMPARE(r.width, 128);
    QCOMPARE(r.height, 128);
    const EditRequest e = edit_settings_from_json(old["edit"], "node 2's edit");
    QCOMPARE(e.mask_mode, MaskMode::intersect);
    QCOMPARE(e.margin, 3);
    QCOMPARE(e.detect_steps, 2);
    QCOMPARE(e.feather, 6);
    QVERIFY(e.attention_control);
    QVERIFY(e.whole_image_if_global);

    // Written before attention control and whole-image changes were kept: both off, as those edits ran.
    const EditRequest older = edit_settings_from_json(Json::parse(R"({"maskMode": "painted", "margin": 0,
                                                                      "detectSteps": -1, "feather": 8})"),
                                                      "node 2's edit");
    QCOMPARE(older.mask_mode, MaskMode::painted);
    QCOMPARE(older.margin, 0);
    QCOMPARE(older.detect_steps, -1);
    QVERIFY(!older.attention_control && !older.whole_image_if_global);

    // Version 1 stored seeds bit-cast through qint64: a negative one is the same 64-bit pattern.
    Json big = old;
    big["seed"] = -1;
    QCOMPARE(generation_request_from_json(big, "node 2").seed, std::numeric_limits<std::uint64_t>::max());

    // Where a file has both spellings, the current one counts.
    Json both = old;
    both["negative_prompt"] = "new";
    both["edit"]["mask_margin"] = 5;
    QCOMPARE(generation_request_from_json(both, "node 2").negative_prompt, std::string("new"));
    QCOMPARE(edit_settings_from_json(both["edit"], "node 2's edit").margin, 5);
  }

  void maskModeNames() {
    for (const MaskMode mode : {MaskMode::automatic, MaskMode::painted, MaskMode::intersect})
      QCOMPARE(mask_mode_from_name(mask_mode_name(mode)), std::optional<MaskMode>(mode));
    QVERIFY(!mask_mode_from_name("auto"));
    QVERIFY(!mask_mode_from_name(""));
  }
};

QTEST_GUILESS_MAIN(TestRequestJson)
#include "test_request_json.moc"
