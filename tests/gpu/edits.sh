#!/usr/bin/env bash
# On the GPU machine (repo root, after `tests/gpu/device-run.sh pack` here and with `.device` and a
# tiny-sd2-only `.device-ref` carried): the GPU tests the engine's memory and sparse paths touch, then
# whole edits (first and later ones, every size) on SD2 768 and SD1.5 512 with the defaults, then the
# recorded 5% step (with and without the time embeddings ready-made) and the dense step.
# Every result goes into $OUT/edits.tgz (one file: only a few files come back from the machine), saved
# after each part, so a call cut short still returns what ran.
#   tar cJf .device-ref/reference.tar.xz -C ../shared/reference tiny-sd2/model README.md
#   run: tests/gpu/edits.sh   (carry .device and .device-ref; about 4 minutes on an H100)
# Environment: EDITS_TESTS (default "test_cuda_ops test_cuda_cache test_cuda_sparse test_cuda_gemm"),
# EDITS_GENERATIONS (timed edits per size, default 4), EDITS_ENV (VAR=VALUE ... for every part),
# EDITS_ARCHS (default "sd2-768 sd15-512"), EDITS_VARIANTS (see below), EDITS_STEP=0 (no step stage).
set -uo pipefail
cd "$(dirname "$0")/../.."
NAME=edits
. tests/gpu/bench-env.sh
read -r -a extra <<<"${EDITS_ENV:-}"
for t in ${EDITS_TESTS:-test_cuda_ops test_cuda_cache test_cuda_sparse test_cuda_gemm}; do
  env "${extra[@]}" timeout 240 "$bin/$t" >"$results/$t.log" 2>&1
  echo "$t: exit $? ($((SECONDS - start)) s)"; grep -E '^(FAIL|Totals)|Loc:' "$results/$t.log" | head -8
  save
done
bench() {  # bench NAME ARCH STAGES REPEAT [VAR=VALUE...]
  local name=$1 arch=$2 stages=$3 repeat=$4
  shift 4
  env "${extra[@]}" "$@" "$bin/fisedit-bench" --arch "$arch" --device cuda --tokenizer "$tokenizer" --repeat "$repeat" \
    --generations "${EDITS_GENERATIONS:-4}" --stages "$stages" --json "$results/$name.json" >"$results/$name.log" 2>&1
  echo "$name ($*): exit $? ($((SECONDS - start)) s)"
  grep -E "^ +[0-9.]+% |first:|blocks per edit|copies around|new mask|parts on the device|replayed_sparse|edit_replayed|generation \(" "$results/$name.log" | head -48
  save
}
# Whole edits with the defaults, then with each variant of EDITS_VARIANTS (space-separated VAR=VALUE,
# or VAR=VALUE,VAR=VALUE for several at once), on each architecture of EDITS_ARCHS.
for arch in ${EDITS_ARCHS:-sd2-768 sd15-512}; do
  bench "edit-sizes-$arch" "$arch" generation,edit_sizes 3
  for variant in ${EDITS_VARIANTS:-}; do
    bench "edit-sizes-$arch-${variant//[=,]/-}" "$arch" edit_sizes 3 ${variant//,/ }
  done
done
[ "${EDITS_STEP:-1}" = 1 ] && bench step-sd2-768 sd2-768 unet,edit 5
