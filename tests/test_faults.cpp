// Faults that must lose nothing (issue 15): the app killed with SIGKILL while it saves a project or exports a history.
// A helper process (fault_writer) writes through the real ui/project_file code again and again and is
// killed at random moments, some of them while its temporary file or folder exists; after each kill the
// destination must be the previous complete file or the new complete one, and what a kill leaves
// behind must be named so that the app never takes it for a project or an export, and be removed by the
// next save or export.
#include "fault_content.h"

#include "io/atomic_file.h"
#include "io/json_file.h"
#include "test_support.h"
#include "ui/project_file.h"

#include <QElapsedTimer>
#include <QRandomGenerator>
#include <QtTest>

#include <csignal>
#include <fcntl.h>
#include <filesystem>
#include <spawn.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char** environ;

using namespace fisedit;
namespace fs = std::filesystem;

namespace {

pid_t spawn_writer(const char* mode, const fs::path& path, int generation) {
  const std::string gen = std::to_string(generation);
  const std::string exe = FISEDIT_FAULT_WRITER;
  std::vector<char*> argv{const_cast<char*>(exe.c_str()), const_cast<char*>(mode), const_cast<char*>(path.c_str()),
                          const_cast<char*>(gen.c_str()), nullptr};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, exe.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  return rc == 0 ? pid : -1;
}

// SIGKILL, then reap; true when the child was still running (it was killed, not finished).
bool kill_writer(pid_t pid) {
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

// Polls until `exists` holds or the child ends or `ms` pass; true when it held.
template <class F>
bool wait_for(F&& exists, pid_t pid, int ms) {
  QElapsedTimer t;
  t.start();
  while (t.elapsed() < ms) {
    if (exists()) return true;
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return false;
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

bool same_pixels(const QImage& a, const QImage& b) {
  return a.convertToFormat(QImage::Format_RGB888) == b.convertToFormat(QImage::Format_RGB888);
}

// The generation a complete project holds; -1 (and a failed check) otherwise.
int project_generation(const fs::path& path) {
  const auto read = ui::loadProject(QString::fromStdString(path.string()));
  if (!read.ok()) {
    qWarning("project unreadable: %s", qPrintable(read.error));
    return -1;
  }
  if (read.content.records.size() != test::kFaultNodes) return -1;
  int generation = -1;
  if (std::sscanf(read.content.records[0].request.prompt.c_str(), "generation %d", &generation) != 1) return -1;
  for (int i = 0; i < test::kFaultNodes; ++i) {
    const auto& r = read.content.records[i];
    if (r.request.prompt != "generation " + std::to_string(generation) + " node " + std::to_string(i)) return -1;
    if (!same_pixels(r.image, test::fault_image(generation, i))) return -1;
  }
  return generation;
}

// The generation a complete export folder holds; -1 otherwise.
int export_generation(const fs::path& folder) {
  nlohmann::json doc;
  try {
    doc = read_json_file(folder / "history.json");
  } catch (const std::exception& e) {
    qWarning("history.json unreadable: %s", e.what());
    return -1;
  }
  const auto& nodes = doc["nodes"];
  if (!nodes.is_array() || nodes.size() != test::kFaultNodes) return -1;
  int generation = -1;
  if (std::sscanf(nodes[0]["prompt"].get<std::string>().c_str(), "generation %d", &generation) != 1) return -1;
  for (int i = 0; i < test::kFaultNodes; ++i) {
    const auto& node = nodes[static_cast<std::size_t>(i)];
    if (node["prompt"] != "generation " + std::to_string(generation) + " node " + std::to_string(i)) return -1;
    const QImage image(QString::fromStdString((folder / node["image"].get<std::string>()).string()));
    if (image.isNull() || !same_pixels(image, test::fault_image(generation, i))) return -1;
  }
  return generation;
}

constexpr int kRounds = 12;

}  // namespace

class TestFaults : public QObject {
  Q_OBJECT

private slots:
  void project_save_survives_sigkill() {
    test::TempDir dir;
    const fs::path project = dir / "history.fisedit";
    const QString path = QString::fromStdString(project.string());
    QElapsedTimer timer;
    timer.start();
    QCOMPARE(ui::saveProject(path, test::fault_content(0)), QString());
    const int save_ms = std::max<int>(5, static_cast<int>(timer.elapsed()));
    auto* random = QRandomGenerator::global();
    int generation = 1, previous = 0, mid_write = 0;
    for (int round = 0; round < kRounds; ++round) {
      const pid_t pid = spawn_writer("save", project, generation);
      QVERIFY(pid > 0);
      const fs::path temp = project.string() + kAtomicTempInfix + std::to_string(pid);
      if (round % 2 == 0) {
        // While the temporary file exists: the kill lands inside a write.
        // (The data is written and synced within milliseconds of the file's creation.)
        if (wait_for([&] { return fs::exists(temp); }, pid, 20000))
          std::this_thread::sleep_for(std::chrono::microseconds(random->bounded(1000)));
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(random->bounded(3 * save_ms + 50)));
      }
      const bool temp_at_kill = fs::exists(temp);
      QVERIFY(kill_writer(pid));
      mid_write += temp_at_kill;
      // The previous file or a newer complete one, never a torn one.
      const int found = project_generation(project);
      QVERIFY2(found >= 0, qPrintable(QStringLiteral("round %1: the project is not a complete one").arg(round)));
      QVERIFY2(found == previous || found >= generation,
               qPrintable(QStringLiteral("round %1: generation %2 after %3").arg(round).arg(found).arg(previous)));
      // Beside it at most the killed writer's temporary file, which no .fisedit filter or reader takes.
      for (const auto& name : names_in(dir.path())) {
        if (name == "history.fisedit") continue;
        QVERIFY2(name.starts_with("history.fisedit.tmp-") && !name.ends_with(".fisedit"), name.c_str());
      }
      previous = found;
      generation = found + 1;
    }
    qInfo("%d of %d kills landed inside a write", mid_write, kRounds);
    QVERIFY2(mid_write >= kRounds / 4, qPrintable(QStringLiteral("only %1 kills landed inside a write").arg(mid_write)));
    // The next save removes what the killed writers left.
    QCOMPARE(ui::saveProject(path, test::fault_content(generation)), QString());
    QCOMPARE(names_in(dir.path()), std::vector<std::string>{"history.fisedit"});
    QCOMPARE(project_generation(project), generation);
  }

  void history_export_survives_sigkill() {
    test::TempDir dir;
    const fs::path folder = dir / "export";
    const QString path = QString::fromStdString(folder.string());
    QElapsedTimer timer;
    timer.start();
    QCOMPARE(ui::exportHistory(path, test::fault_content(0)), QString());
    const int export_ms = std::max<int>(5, static_cast<int>(timer.elapsed()));
    QCOMPARE(export_generation(folder), 0);
    fs::remove_all(folder);
    auto* random = QRandomGenerator::global();
    int mid_write = 0;
    for (int round = 0; round < kRounds; ++round) {
      const int generation = round + 1;
      const pid_t pid = spawn_writer("export", folder, generation);
      QVERIFY(pid > 0);
      const std::string staging = ".export.export-" + std::to_string(pid) + "-";
      const auto staging_exists = [&] {
        for (const auto& name : names_in(dir.path()))
          if (name.starts_with(staging)) return true;
        return false;
      };
      if (round % 2 == 0) {
        if (wait_for(staging_exists, pid, 20000))
          std::this_thread::sleep_for(std::chrono::milliseconds(random->bounded(export_ms / 2 + 1)));
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(random->bounded(3 * export_ms + 50)));
      }
      const bool staging_at_kill = staging_exists();
      const bool killed = kill_writer(pid);
      mid_write += killed && staging_at_kill;
      // No export yet (as before it started) or the whole new one.
      if (fs::exists(folder)) {
        QCOMPARE(export_generation(folder), generation);
        fs::remove_all(folder);
      }
      // Beside it only hidden staging folders, never a folder under the chosen name.
      for (const auto& name : names_in(dir.path())) QVERIFY2(name.starts_with(".export.export-"), name.c_str());
    }
    qInfo("%d of %d kills landed inside an export", mid_write, kRounds);
    QVERIFY2(mid_write >= kRounds / 4, qPrintable(QStringLiteral("only %1 kills landed inside an export").arg(mid_write)));
    // The next export to that name removes the staging folders the killed exports left.
    QCOMPARE(ui::exportHistory(path, test::fault_content(99)), QString());
    QCOMPARE(names_in(dir.path()), std::vector<std::string>{"export"});
    QCOMPARE(export_generation(folder), 99);
  }
};

QTEST_GUILESS_MAIN(TestFaults)
#include "test_faults.moc"
