#!/usr/bin/env bash
# Builds the libFuzzer targets (the `fuzz` preset: clang, ASan + UBSan) and runs each for SECONDS
# (default 60) on corpora seeded from ../shared/reference and the project's own model files; fails on
# any crash, leak or timeout. Usage: [FISEDIT_FUZZ_TARGETS="png ..."] tests/fuzz/run.sh [SECONDS]   (docs/reliability.md)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-60}"
# Inputs are written to a file per run (fuzz_support.h): keep them in memory where possible, in a folder
# of this run's own (another run beside it keeps its files).
scratch_parent=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && scratch_parent=/dev/shm
export TMPDIR="$(mktemp -d "$scratch_parent/fisedit-fuzz-run.XXXXXX")"
trap 'rm -rf "$TMPDIR"' EXIT
reference="${FISEDIT_REFERENCE_DIR:-$PWD/../shared/reference}"
packaging/install-deps.sh
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz
bin=build/fuzz/tests/fuzz
work=build/fuzz/corpus
targets=(safetensors config_json tokenizer vocab png prompt project)
for t in "${targets[@]}"; do mkdir -p "$work/$t"; done
# FISEDIT_FUZZ_TARGETS="png prompt" runs those alone (all are seeded, as the seeds share files).
read -r -a targets <<<"${FISEDIT_FUZZ_TARGETS:-${targets[*]}}"

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
# vocab.json NUL merges.txt NUL tokenizer_config.json (fuzz_vocab.cpp), from each folder that has them.
for d in resources/models/*/tokenizer "$reference"/*/model/tokenizer; do
  [ -f "$d/vocab.json" ] && [ -f "$d/merges.txt" ] && [ "$(stat -c %s "$d/vocab.json")" -le 65536 ] || continue
  { cat "$d/vocab.json"; printf '\0'; cat "$d/merges.txt"; printf '\0'; cat "$d/tokenizer_config.json" 2>/dev/null || true; } \
    >"$work/vocab/$(echo "$d" | md5sum | cut -c1-16)"
done
# PNGs: a 1x1 grey image and the project's small images (large ones make each run slow).
echo iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg== | base64 -d >"$work/png/1x1"
for f in "$reference"/**/*.png docs/images/*.png; do
  if [ "$(stat -c %s "$f")" -le 65536 ]; then seed "$work/png" "$f"; fi
done
# A 4x4 colour JPEG (stb_image_write, quality 90) for read_image's JPEG path (fuzz_png.cpp).
echo /9j/4AAQSkZJRgABAQAAAQABAAD/2wCEAAMCAgMCAgMDAwMEAwMEBQgFBQQEBQoHBwYIDAoMDAsKCwsNDhIQDQ4RDgsLEBYQERMUFRUVDA8XGBYUGBIUFRQBAwQEBQQFCQUFCRQNCw0UFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFP/AABEIAAQABAMBIgACEQEDEQH/xAGiAAABBQEBAQEBAQAAAAAAAAAAAQIDBAUGBwgJCgsQAAIBAwMCBAMFBQQEAAABfQECAwAEEQUSITFBBhNRYQcicRQygZGhCCNCscEVUtHwJDNicoIJChYXGBkaJSYnKCkqNDU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6g4SFhoeIiYqSk5SVlpeYmZqio6Slpqeoqaqys7S1tre4ubrCw8TFxsfIycrS09TV1tfY2drh4uPk5ebn6Onq8fLz9PX29/j5+gEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoLEQACAQIEBAMEBwUEBAABAncAAQIDEQQFITEGEkFRB2FxEyIygQgUQpGhscEJIzNS8BVictEKFiQ04SXxFxgZGiYnKCkqNTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqCg4SFhoeIiYqSk5SVlpeYmZqio6Slpqeoqaqys7S1tre4ubrCw8TFxsfIycrS09TV1tfY2dri4+Tl5ufo6ery8/T19vf4+fr/2gAMAwEAAhEDEQA/APePBH7Enwm/4R63/wCKf/8AHl9v9mt7/hiT4Tf9C/8A+PL/APE1614I/wCRet/8+lb1dJzn/9k= | base64 -d >"$work/png/4x4.jpg"
# Projects: a generation and an edit of it (version 2, snake_case), and the same in version 1's camelCase.
png1=iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg==
project() {  # project VERSION NEGATIVE_KEY CFG_KEY MODE_KEY
  printf '{"format":"fisedit-project","version":%s,"model":{"path":"/m/toyworld","family":"SD1.x","fingerprint":"f1"},"nodes":[' "$1"
  printf '{"id":1,"parent":null,"prompt":"a red circle","%s":"","seed":18446744073709551615,"steps":20,"%s":7.5,"scheduler":"ddim","width":256,"height":256,"device":"CPU","timings":{"textEncoderMs":1,"unetMs":2,"vaeMs":3,"totalMs":6,"jobMs":7},"imagePng":"%s"},' "$2" "$3" "$png1"
  printf '{"id":2,"parent":1,"prompt":"a blue circle","%s":"ugly","seed":-1,"steps":20,"%s":7,"scheduler":"euler","width":256,"height":256,"edit":{"%s":"painted","mask_margin":2,"detect_steps":1,"feather":0,"attention_control":true,"whole_image_if_global":false},"editFraction":0.1,"editStats":{"detectSteps":1,"attentionControlSteps":2,"detectMs":1,"sparseMs":2,"decodeMs":3,"totalMs":6},"maskPng":"%s","paintedMaskPng":"%s","model":{"path":"/m/other","family":"SD2.x","fingerprint":"f2"}}]}' "$2" "$3" "$4" "$png1" "$png1"
}
project 2 negative_prompt cfg_scale mask_mode >"$work/project/v2"
project 1 negativePrompt cfgScale maskMode >"$work/project/v1"
# With a batch tag (one Generate's images; project_file.cpp reads it strictly).
sed 's/"id":1,"parent":null,/"id":1,"parent":null,"batch":{"id":77,"index":1,"size":2},/' "$work/project/v2" >"$work/project/v2-batch"
printf 'a (red:1.3) cat, [blue] ((dog)) \\(x\\)\nNegative prompt: ugly\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512, Model: m' \
  >"$work/prompt/a1111"

status=0
for target in "${targets[@]}"; do
  echo "fuzz_$target: ${seconds} s"
  # -rss_limit_mb: a small input must not take gigabytes; -timeout: nor seconds per input.
  # -seed: one fixed mutation sequence (FISEDIT_FUZZ_SEED, default 1), so that a CI run replays inputs a
  # run here already passed (a slower machine runs a prefix of them) and fails only where the code
  # changed; set FISEDIT_FUZZ_SEED=0 (libFuzzer: a new seed each run) for campaigns that explore.
  if ! "$bin/fuzz_$target" "$work/$target" -seed="${FISEDIT_FUZZ_SEED:-1}" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 \
       -max_len=1048576 -print_final_stats=1 -artifact_prefix="build/fuzz/crash-$target-" 2>"build/fuzz/$target.log"; then
    echo "fuzz_$target FAILED: see build/fuzz/$target.log and build/fuzz/crash-$target-*" >&2
    tail -40 "build/fuzz/$target.log" >&2
    status=1
  fi
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "build/fuzz/$target.log" || true
done
exit $status
