// safetensors: round trips, and every kind of malformed file refused with an error naming the file
// and the tensor.
#include "core/error.h"
#include "io/safetensors.h"
#include "test_support.h"

#include <QtTest>

#include <cstdint>
#include <fstream>

using namespace fisedit;

namespace {

// Writes a file from a header string and a data area, with an optional lie about the header length.
void write_raw(const std::filesystem::path& path, const std::string& header, std::size_t data_bytes,
               std::optional<std::uint64_t> header_len = std::nullopt) {
  std::ofstream out(path, std::ios::binary);
  const std::uint64_t len = header_len.value_or(header.size());
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((len >> (8 * i)) & 0xff));
  out << header;
  out << std::string(data_bytes, '\x01');
}

}  // namespace

class TestSafetensors : public QObject {
  Q_OBJECT

private slots:
  void round_trip_every_dtype() {
    test::TempDir dir;
    const std::vector<float> f = {1.5f, -2.0f, 0.0f, 3.25f, 1e-3f, 7.0f};
    const std::vector<std::int64_t> ids = {49406, 320, 49407};
    NamedTensors tensors = {
        {"b.f32", Tensor::from_f32({2, 3}, f)},
        {"a.i64", Tensor::from_i64({3}, ids)},
        {"c.f16", Tensor::zeros(DType::f16, {4, 1})},
        {"d.bf16", Tensor::zeros(DType::bf16, {0, 5})},  // an empty tensor is valid
        {"e.scalar", Tensor::from_f32({}, std::vector<float>{42.0f})},
    };
    write_safetensors(dir / "t.safetensors", tensors, {{"format", "pt"}});
    const auto file = SafetensorsFile::open(dir / "t.safetensors");
    QCOMPARE(file.tensors().size(), std::size_t{5});
    QCOMPARE(file.tensors().front().name, std::string("a.i64"));  // sorted by name
    QCOMPARE(file.metadata().at("format"), std::string("pt"));
    QCOMPARE(file.tensor("b.f32").to_f32(), f);
    QCOMPARE(file.tensor("a.i64").to_i64(), ids);
    QCOMPARE(file.tensor("c.f16").shape(), (Shape{4, 1}));
    QCOMPARE(file.tensor("d.bf16").numel(), std::int64_t{0});
    QCOMPARE(file.tensor("e.scalar").to_f32(), std::vector<float>{42.0f});
    // Atomic writing leaves no temporary file behind.
    QCOMPARE(std::distance(std::filesystem::directory_iterator(dir.path()), std::filesystem::directory_iterator{}), 1);
  }

  void missing_tensor_and_file() {
    test::TempDir dir;
    write_safetensors(dir / "t.safetensors", {{"x", Tensor::from_f32({1}, std::vector<float>{1.0f})}});
    const auto file = SafetensorsFile::open(dir / "t.safetensors");
    QVERIFY(file.find("y") == nullptr);
    try {
      file.tensor("y");
      QFAIL("expected an error");
    } catch (const Error& e) {
      QCOMPARE(e.code(), ErrorCode::not_found);
      QVERIFY(std::string(e.what()).find("'y'") != std::string::npos);
    }
    try {
      SafetensorsFile::open(dir / "absent.safetensors");
      QFAIL("expected an error");
    } catch (const Error& e) {
      QCOMPARE(e.code(), ErrorCode::not_found);
      QVERIFY(std::string(e.what()).find("absent.safetensors") != std::string::npos);
    }
  }

  void malformed_data() {
    QTest::addColumn<QString>("header");
    QTest::addColumn<int>("data_bytes");
    QTest::addColumn<qint64>("header_len");  // -1: the true length
    QTest::addColumn<QString>("expected");    // a part of the error message
    QTest::addColumn<QString>("tensor");      // the tensor the message must name ("" for none)

    QTest::newRow("truncated before the header length") << "" << 0 << qint64(-2) << "shorter than the 8-byte" << "";
    QTest::newRow("huge header length") << "{}" << 0 << qint64(1) << "exceeds the 100 MB limit" << "";
    QTest::newRow("header past end of file") << "{}" << 0 << qint64(4096) << "runs past the end" << "";
    QTest::newRow("header not JSON") << "{\"a\": [1, 2" << 0 << qint64(-1) << "not valid JSON" << "";
    QTest::newRow("header not an object") << "[1, 2]" << 0 << qint64(-1) << "not a JSON object" << "";
    QTest::newRow("unknown dtype")
        << R"({"w": {"dtype": "F7", "shape": [2], "data_offsets": [0, 8]}})" << 8 << qint64(-1) << "unknown dtype \"F7\"" << "w";
    QTest::newRow("shape does not match bytes")
        << R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})" << 8 << qint64(-1) << "needs 12 bytes but data_offsets span 8" << "w";
    QTest::newRow("offsets past the data area")
        << R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})" << 8 << qint64(-1) << "extend past the end of the data area" << "w";
    QTest::newRow("offsets reversed")
        << R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}})" << 8 << qint64(-1) << "end before they begin" << "w";
    QTest::newRow("negative offset")
        << R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})" << 8 << qint64(-1) << "non-negative" << "w";
    QTest::newRow("negative dimension")
        << R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})" << 8 << qint64(-1) << "non-negative" << "w";
    QTest::newRow("overflowing shape")
        << R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}})" << 8 << qint64(-1) << "more than 2^64" << "w";
    QTest::newRow("missing field") << R"({"w": {"dtype": "F32", "shape": [1]}})" << 8 << qint64(-1) << "needs \"dtype\"" << "w";
    QTest::newRow("entry not an object") << R"({"w": 3})" << 8 << qint64(-1) << "not a JSON object" << "w";
    QTest::newRow("overlapping tensors")
        << R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})"
        << 12 << qint64(-1) << "overlap" << "b";
    QTest::newRow("metadata not strings")
        << R"({"__metadata__": {"format": 3}})" << 0 << qint64(-1) << "__metadata__ value of 'format'" << "";
    // Issue 15: the tensors must tile the data area, or they are read from the wrong bytes.
    const std::string padded = R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}   )";
    QTest::newRow("header length a few bytes short")
        << QString::fromStdString(padded) << 8 << qint64(padded.size() - 3) << "cover 8 bytes of the 11-byte data area" << "";
    QTest::newRow("bytes after the last tensor")
        << R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})" << 12 << qint64(-1) << "cover 8 bytes of the 12-byte" << "";
    QTest::newRow("gap between tensors")
        << R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})"
        << 12 << qint64(-1) << "starts at byte 8" << "b";
    QTest::newRow("gap before the first tensor")
        << R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})" << 8 << qint64(-1) << "starts at byte 4" << "a";
    QTest::newRow("header nested 150000 deep")
        << QString(150000, '[') + QString(150000, ']') << 0 << qint64(-1) << "nested deeper than" << "";
    QTest::newRow("truncated data area")
        << R"({"a": {"dtype": "F16", "shape": [64], "data_offsets": [0, 128]}})" << 100 << qint64(-1) << "is the file truncated?" << "a";
  }

  void malformed() {
    QFETCH(QString, header);
    QFETCH(int, data_bytes);
    QFETCH(qint64, header_len);
    QFETCH(QString, expected);
    QFETCH(QString, tensor);
    test::TempDir dir;
    const auto path = dir / "bad.safetensors";
    if (header_len == -2) {
      std::ofstream(path, std::ios::binary) << "abcd";
    } else if (header_len == 1) {  // a length of 2^40
      write_raw(path, header.toStdString(), static_cast<std::size_t>(data_bytes), std::uint64_t{1} << 40);
    } else {
      write_raw(path, header.toStdString(), static_cast<std::size_t>(data_bytes),
                header_len >= 0 ? std::optional<std::uint64_t>(static_cast<std::uint64_t>(header_len)) : std::nullopt);
    }
    try {
      SafetensorsFile::open(path);
      QFAIL("a malformed file was accepted");
    } catch (const Error& e) {
      const std::string message = e.what();
      QCOMPARE(e.code(), ErrorCode::corrupt_file);
      QVERIFY2(message.find(expected.toStdString()) != std::string::npos, message.c_str());
      QVERIFY2(message.find("bad.safetensors") != std::string::npos, message.c_str());
      if (!tensor.isEmpty())
        QVERIFY2(message.find("'" + tensor.toStdString() + "'") != std::string::npos, message.c_str());
    }
  }
};

QTEST_GUILESS_MAIN(TestSafetensors)
#include "test_safetensors.moc"
