#!/usr/bin/env bash
# The two commands a newcomer needs:
#   packaging/dev.sh app [MODEL]   install dependencies, build, start the app
#   packaging/dev.sh test          install dependencies, build, run the tests: three stages, as CI runs them
# FISEDIT_PRESET picks another CMake preset for the app and the main test stage (default: "default";
# "cpu" builds without CUDA).
# FISEDIT_TEST_STAGES picks the test stages (default: "main asan fuzz"; "main" alone for a quick local run):
#   main   the whole suite in FISEDIT_PRESET's build (GPU tests report Skipped without a GPU)
#   asan   the CPU suite (label cpu) built with AddressSanitizer + UBSan (preset asan, build/asan)
#   fuzz   each libFuzzer target for FISEDIT_FUZZ_SECONDS (default 45) seconds (tests/fuzz/run.sh)
# docs/reliability.md has what each stage checks and how long it takes.
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-}
case $what in
  app | test) shift ;;
  *) echo "usage: packaging/dev.sh app [MODEL] | test" >&2; exit 2 ;;
esac

./packaging/install-deps.sh
preset=${FISEDIT_PRESET:-default}

if [ "$what" = app ]; then
  cmake --preset "$preset"
  cmake --build --preset "$preset"
  exec "build/$preset/bin/fisedit" "$@"
fi

stages=${FISEDIT_TEST_STAGES:-main asan fuzz}
for stage in $stages; do
  case $stage in main | asan | fuzz) ;; *) echo "dev.sh: unknown test stage '$stage' (main, asan, fuzz)" >&2; exit 2 ;; esac
done

# Every stage runs, even after one failed, so one run reports all of them; the exit status is 1 if any failed.
summary=()
failed=0
run_stage() {  # run_stage NAME COMMAND...
  local name=$1 start=$SECONDS rc=0
  shift
  echo "=== dev.sh test: stage $name"
  "$@" || rc=$?
  local took=$((SECONDS - start))
  summary+=("$(printf '%-5s %s  %dm%02ds' "$name" "$([ $rc -eq 0 ] && echo passed || echo "FAILED ($rc)")" $((took / 60)) $((took % 60)))")
  [ $rc -eq 0 ] || failed=1
}
# Each stage stops at its first failing step (&&: `set -e` does not apply inside `stage || rc=$?`).
main_stage() {
  cmake --preset "$preset" && cmake --build --preset "$preset" && ctest --preset "$preset"
}
asan_stage() {  # the CPU suite (label cpu); sanitizer options and suppressions: CMakePresets.json
  cmake --preset asan && cmake --build --preset asan && ctest --preset asan
}
fuzz_stage() {
  tests/fuzz/run.sh "${FISEDIT_FUZZ_SECONDS:-45}"
}
for stage in $stages; do
  run_stage "$stage" "${stage}_stage"
done

echo "=== dev.sh test: summary"
printf '  %s\n' "${summary[@]}"
exit $failed
