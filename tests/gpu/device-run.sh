#!/usr/bin/env bash
# The GPU test suite (CTest label `gpu`) and the benchmarks on a machine with an NVIDIA GPU that lacks
# Qt, OpenCV and the reference data.
#   tests/gpu/device-run.sh pack [BUILD_DIR]    here: bundle the gpu-labelled tests, fisedit-bench and
#                                               fisedit-cli (stripped) with the libraries they need into
#                                               .device/gpu-tests.tar.xz, and the reference data the GPU
#                                               tests read into .device-ref/reference.tar.xz
#   tests/gpu/device-run.sh stage               there: unpack whatever of the two was carried (into
#                                               /tmp/fisedit-gpu and /tmp/fisedit-ref) and stop
#   tests/gpu/device-run.sh run [tests] [bench] [torch] [sanitize]
#                                               there (repo root): unpack what was carried, then the
#                                               parts named (tests and bench when none is): the GPU
#                                               tests; fisedit-bench; the PyTorch reference
#                                               (app/bench/bench_torch.py, diffusers carried as
#                                               .device-torch/diffusers.tar.xz); the GPU tests under
#                                               compute-sanitizer (memcheck, racecheck, synccheck).
#                                               Results in $OUT (or ./gpu-results): device.txt,
#                                               gpu-tests.log, bench.log, one bench-ARCH.json per
#                                               architecture, torch.json, sanitizer.log
# The tree that travels may hold 64 MiB with the tracked files. When both archives do not fit in one
# call, carry `.device-ref` to a `stage` call, then `.device` to a `run` call on the still-warm machine:
# what `stage` unpacked in /tmp stays there.
# Environment for `run`: BENCH_ARCHS (default "sd2-768 sd15-512 sd2-512"), BENCH_ARGS (extra
# fisedit-bench options, e.g. "--repeat 5 --generations 2"), TORCH_ARGS (extra bench_torch.py options),
# SANITIZE_TESTS (default: every GPU test), SANITIZE_TOOLS (default "memcheck racecheck synccheck"),
# SANITIZE_PAIRS ("test:tool ..." instead of both), SANITIZE_MEMCHECK_ARGS,
# SANITIZE_TIMEOUT (seconds per test and tool, default 300).
# Exit status: non-zero when any test failed (or was skipped for want of a GPU) or a benchmark failed.
set -euo pipefail
cd "$(dirname "$0")/../.."

# What the GPU tests read (test_cuda_models): the diffusers folders and goldens, not the single-file
# checkpoints (26 MB that only the CPU loader tests use).
reference_files=(tiny-sd2/model tiny-sd2/golden.safetensors tiny-sd2/golden.json
                 tiny-sd15/model tiny-sd15/golden.safetensors tiny-sd15/golden.json
                 seeded/golden.safetensors seeded/golden.json README.md)

# Unpacks the carried archives (either or both) where `run` finds them.
unpack() {
  if [ -f .device/gpu-tests.tar.xz ]; then
    rm -rf /tmp/fisedit-gpu && mkdir -p /tmp/fisedit-gpu
    tar xJf .device/gpu-tests.tar.xz -C /tmp/fisedit-gpu
    echo "unpacked the binaries into /tmp/fisedit-gpu"
  fi
  if [ -f .device-ref/reference.tar.xz ]; then
    rm -rf /tmp/fisedit-ref && mkdir -p /tmp/fisedit-ref
    tar xJf .device-ref/reference.tar.xz -C /tmp/fisedit-ref
    echo "unpacked the reference data into /tmp/fisedit-ref"
  fi
}

case ${1:-} in
  pack)
    build=${2:-build/default}
    mapfile -t tests < <(ctest --test-dir "$build" -L gpu -N | sed -n 's/^ *Test *#[0-9]*: *//p')
    [ ${#tests[@]} -gt 0 ] || { echo "no gpu-labelled tests in $build (was it built with CUDA?)" >&2; exit 1; }
    binaries=("${tests[@]/#/$build/tests/}" "$build/bin/fisedit-bench" "$build/bin/fisedit-cli")
    # Debug info would triple the bundle, and the carried tree is limited to 64 MiB.
    stripped=$(mktemp -d)
    trap 'rm -rf "$stripped"' EXIT
    for b in "${binaries[@]}"; do
      [ -x "$b" ] || { echo "$b is missing: build it first (cmake --build $build)" >&2; exit 1; }
      strip --strip-debug -o "$stripped/$(basename "$b")" "$b"
    done
    mkdir -p .device .device-ref
    ../shared/tools/device-bundle.sh .device/gpu-tests.tar.xz "$stripped"/*
    # Packed too: the tokenizers' JSON and text files shrink to a fifth, and the carried tree (this
    # and every tracked file) may hold 64 MiB in all.
    rm -rf .device/reference .device/reference.tar.xz .device-ref/reference.tar.xz
    tar cJf .device-ref/reference.tar.xz -C ../shared/reference "${reference_files[@]}"
    tracked=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
    bins=$(du -sb .device | cut -f1) ref=$(du -sb .device-ref | cut -f1)
    echo ".device $((bins >> 20)) MiB, .device-ref $((ref >> 20)) MiB, tracked files $((tracked >> 20)) MiB:" \
         "together $(( (bins + ref + tracked) >> 20 )) MiB of the 64 MiB that may travel in one call"
    if (( (bins + ref + tracked) >> 20 >= 64 )); then
      echo "too much for one call: carry .device-ref to a 'stage' call, then .device to 'run' (see the top of this file)"
    fi
    ;;
  stage)
    unpack
    ;;
  run)
    shift
    want_tests=1 want_bench=1 want_torch=0 want_sanitize=0
    if [ $# -gt 0 ]; then
      want_tests=0 want_bench=0
      for w in "$@"; do
        case $w in
          tests) want_tests=1 ;; bench) want_bench=1 ;; torch) want_torch=1 ;; sanitize) want_sanitize=1 ;;
          *) echo "run: unknown part '$w'" >&2; exit 2 ;;
        esac
      done
    fi
    out=${OUT:-gpu-results}
    mkdir -p "$out"
    unpack
    [ -x /tmp/fisedit-gpu/bin/fisedit-bench ] || { echo "no binaries: carry .device (pack makes it)" >&2; exit 1; }
    [ -d /tmp/fisedit-ref/tiny-sd2 ] || { echo "no reference data: carry .device-ref (here or to a 'stage' call)" >&2; exit 1; }
    export LD_LIBRARY_PATH=/tmp/fisedit-gpu/lib QT_QPA_PLATFORM=offscreen
    export FISEDIT_REFERENCE_DIR=/tmp/fisedit-ref
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/device.txt"
    failed=0
    # Only a few files come back from the device machine: one log for all tests, one for all benchmarks.
    if [ $want_tests = 1 ]; then
      : >"$out/gpu-tests.log"
      for t in /tmp/fisedit-gpu/bin/test_*; do
        name=$(basename "$t")
        start=$SECONDS
        echo "==== $name" >>"$out/gpu-tests.log"
        if "$t" >"/tmp/fisedit-gpu/$name.log" 2>&1; then
          echo "PASS $name ($((SECONDS - start)) s)"
        else
          status=$?
          echo "FAIL $name (exit $status, $((SECONDS - start)) s)"; failed=1
          grep -E '^(FAIL|SKIPPED|QWARN|QFATAL)|Loc:' "/tmp/fisedit-gpu/$name.log" | head -20 || true
        fi
        cat "/tmp/fisedit-gpu/$name.log" >>"$out/gpu-tests.log"
      done
    fi
    if [ $want_bench = 1 ]; then
      : >"$out/bench.log"
      tokenizer=/tmp/fisedit-ref/tiny-sd2/model/tokenizer  # the real CLIP vocabulary
      for arch in ${BENCH_ARCHS:-sd2-768 sd15-512 sd2-512}; do
        start=$SECONDS
        # shellcheck disable=SC2086  # BENCH_ARGS is a list of options
        if /tmp/fisedit-gpu/bin/fisedit-bench --arch "$arch" --device cuda --tokenizer "$tokenizer" \
             --json "$out/bench-$arch.json" ${BENCH_ARGS:-} >>"$out/bench.log" 2>&1; then
          echo "BENCH $arch done ($((SECONDS - start)) s)"
        else
          echo "BENCH $arch FAILED ($((SECONDS - start)) s)"; failed=1
        fi
      done
      # The CLI on the GPU too: the path users take.
      if /tmp/fisedit-gpu/bin/fisedit-cli generate --model /tmp/fisedit-ref/tiny-sd2/model --prompt "a photo of a cat" \
           --seed 7 --steps 10 --device cuda --out /tmp/fisedit-gpu/cli.png >>"$out/bench.log" 2>&1; then
        echo "CLI generate --device cuda done"
      else
        echo "CLI generate --device cuda FAILED"; failed=1
      fi
      cat "$out/bench.log"
    fi
    if [ $want_torch = 1 ]; then
      # diffusers is used as a library: carried as source, unpacked in /tmp, never committed.
      [ -f .device-torch/diffusers.tar.xz ] || { echo "no diffusers: carry .device-torch" >&2; exit 1; }
      rm -rf /tmp/fisedit-torch && mkdir -p /tmp/fisedit-torch
      tar xJf .device-torch/diffusers.tar.xz -C /tmp/fisedit-torch
      start=$SECONDS
      # shellcheck disable=SC2086  # TORCH_ARGS is a list of options
      if PYTHONPATH=/tmp/fisedit-torch/src python3 app/bench/bench_torch.py --out "$out/torch.json" ${TORCH_ARGS:-} \
           >"$out/torch.log" 2>&1; then
        echo "TORCH reference done ($((SECONDS - start)) s)"
      else
        echo "TORCH reference FAILED ($((SECONDS - start)) s)"; tail -20 "$out/torch.log"; failed=1
      fi
    fi
    if [ $want_sanitize = 1 ]; then
      sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
      : >"$out/sanitizer.log"
      # Every (test, tool) pair runs at once: the tools are bound by the host CPU (16 cores there),
      # so the whole table fits in one call. SANITIZE_PAIRS ("test:tool ...") picks pairs instead.
      pairs=${SANITIZE_PAIRS:-}
      if [ -z "$pairs" ]; then
        for t in ${SANITIZE_TESTS:-$(cd /tmp/fisedit-gpu/bin && ls test_*)}; do
          for tool in ${SANITIZE_TOOLS:-memcheck racecheck synccheck}; do pairs="$pairs $t:$tool"; done
        done
      fi
      sanitize_one() {  # test tool: writes its log and its exit status
        local t=$1 tool=$2 extra=() status=0 start=$SECONDS
        # The out-of-memory tests fail a cudaMalloc on purpose: SANITIZE_MEMCHECK_ARGS="--report-api-errors no".
        [ "$tool" = memcheck ] && extra=(${SANITIZE_MEMCHECK_ARGS:-})
        # Errors make the tool exit non-zero (--error-exitcode); a timeout (124) is reported as such.
        timeout "${SANITIZE_TIMEOUT:-300}" "$sanitizer" --tool "$tool" "${extra[@]}" --error-exitcode 99 \
          "/tmp/fisedit-gpu/bin/$t" >"/tmp/fisedit-gpu/$t.$tool.log" 2>&1 || status=$?
        echo "$status $((SECONDS - start))" >"/tmp/fisedit-gpu/$t.$tool.status"
      }
      for p in $pairs; do sanitize_one "${p%%:*}" "${p##*:}" & done
      wait
      for p in $pairs; do
        t=${p%%:*} tool=${p##*:}
        read -r status secs <"/tmp/fisedit-gpu/$t.$tool.status"
        echo "==== $t under $tool" >>"$out/sanitizer.log"
        tail -40 "/tmp/fisedit-gpu/$t.$tool.log" >>"$out/sanitizer.log"
        case $status in
          0) echo "SANITIZE $t $tool: clean ($secs s)" ;;
          124) echo "SANITIZE $t $tool: timed out after $secs s" ;;
          *) echo "SANITIZE $t $tool: FAILED (exit $status, $secs s)"; failed=1
             grep -E "ERROR SUMMARY|Invalid|Race|Barrier|FAIL|terminate" "/tmp/fisedit-gpu/$t.$tool.log" | head -10 || true ;;
        esac
      done
    fi
    exit $failed
    ;;
  *) echo "usage: tests/gpu/device-run.sh pack [BUILD_DIR] | stage | run [tests] [bench]" >&2; exit 2 ;;
esac
