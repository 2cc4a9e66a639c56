#!/usr/bin/env bash
# The GPU test suite (CTest label `gpu`) on a machine with an NVIDIA GPU that lacks Qt and OpenCV.
#   tests/gpu/device-run.sh pack [BUILD_DIR]  here: bundle the gpu-labelled test binaries with the
#                                             libraries they need into .device/gpu-tests.tar.xz
#   tests/gpu/device-run.sh run               there (repo root, .device carried): run each test, print
#                                             a summary, keep logs in $OUT (or ./gpu-results)
# Exit status: non-zero when any test failed or was skipped for want of a GPU.
set -euo pipefail
cd "$(dirname "$0")/../.."

case ${1:-} in
  pack)
    build=${2:-build/default}
    mapfile -t tests < <(ctest --test-dir "$build" -L gpu -N | sed -n 's/^ *Test *#[0-9]*: *//p')
    [ ${#tests[@]} -gt 0 ] || { echo "no gpu-labelled tests in $build (was it built with CUDA?)" >&2; exit 1; }
    mkdir -p .device
    ../shared/tools/device-bundle.sh .device/gpu-tests.tar.xz "${tests[@]/#/$build/tests/}"
    ;;
  run)
    out=${OUT:-gpu-results}
    mkdir -p "$out" /tmp/fisedit-gpu
    tar xJf .device/gpu-tests.tar.xz -C /tmp/fisedit-gpu
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/device.txt"
    failed=0
    for t in /tmp/fisedit-gpu/bin/*; do
      name=$(basename "$t")
      if LD_LIBRARY_PATH=/tmp/fisedit-gpu/lib QT_QPA_PLATFORM=offscreen "$t" >"$out/$name.log" 2>&1; then
        echo "PASS $name"
      else
        echo "FAIL $name (exit $?)"; failed=1
        tail -20 "$out/$name.log"
      fi
    done
    exit $failed
    ;;
  *) echo "usage: tests/gpu/device-run.sh pack [BUILD_DIR] | run" >&2; exit 2 ;;
esac
