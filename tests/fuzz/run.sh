#!/usr/bin/env bash
# Builds the libFuzzer targets (the `fuzz` preset: clang, ASan + UBSan) and runs each for SECONDS
# (default 60) on corpora seeded from ../shared/reference and the project's own model files; fails on
# any crash, leak or timeout. Usage: tests/fuzz/run.sh [SECONDS]   (docs/reliability.md)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-60}"
# Inputs are written to a file per run: keep them in memory where possible.
[ -d /dev/shm ] && export TMPDIR="${TMPDIR:-/dev/shm}"
trap 'rm -rf "${TMPDIR:-/tmp}"/fisedit-fuzz-*' EXIT  # the targets' scratch folders (fuzz_support.h)
reference="${FISEDIT_REFERENCE_DIR:-$PWD/../shared/reference}"
packaging/install-deps.sh fuzz
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz
bin=build/fuzz/tests/fuzz
work=build/fuzz/corpus
mkdir -p "$work"/{safetensors,config_json,tokenizer,png,prompt}

# Seeds: every file of the right kind, whole up to 1 MB (larger weights are cut to their first 64 KB,
# which holds the header).
seed() {  # seed DIR FILE...
  local dir="$1"; shift
  for f in "$@"; do
    [ -f "$f" ] || continue
    local out="$dir/$(echo "$f" | md5sum | cut -c1-16)"
    if [ "$(stat -c %s "$f")" -le 1048576 ]; then cp "$f" "$out"; else head -c 65536 "$f" >"$out"; fi
  done
}
shopt -s nullglob globstar
seed "$work/safetensors" "$reference"/**/*.safetensors resources/models/**/*.safetensors
seed "$work/config_json" "$reference"/**/config.json "$reference"/**/scheduler_config.json resources/models/**/*config*.json
seed "$work/tokenizer" "$reference"/**/tokenizer.json resources/models/**/tokenizer.json
# PNGs: a 1x1 grey image and the project's small images (large ones make each run slow).
echo iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg== | base64 -d >"$work/png/1x1"
for f in "$reference"/**/*.png docs/images/*.png; do
  if [ "$(stat -c %s "$f")" -le 65536 ]; then seed "$work/png" "$f"; fi
done
printf 'a (red:1.3) cat, [blue] ((dog)) \\(x\\)\nNegative prompt: ugly\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512, Model: m' \
  >"$work/prompt/a1111"

status=0
for target in safetensors config_json tokenizer png prompt; do
  echo "fuzz_$target: ${seconds} s"
  # -rss_limit_mb: a small input must not take gigabytes; -timeout: nor seconds per input.
  if ! "$bin/fuzz_$target" "$work/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
       -max_len=1048576 -print_final_stats=1 -artifact_prefix="build/fuzz/crash-$target-" 2>"build/fuzz/$target.log"; then
    echo "fuzz_$target FAILED: see build/fuzz/$target.log and build/fuzz/crash-$target-*" >&2
    tail -40 "build/fuzz/$target.log" >&2
    status=1
  fi
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "build/fuzz/$target.log" || true
done
exit $status
