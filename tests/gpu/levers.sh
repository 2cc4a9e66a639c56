#!/usr/bin/env bash
# On the GPU machine (repo root, after `tests/gpu/device-run.sh pack` here and with `.device` and a
# tiny-sd2-only `.device-ref` carried): the GPU tests and benchmarks that decide the defaults of the
# issue-12 levers that are off until measured (docs/design-notes.md):
#   FISEDIT_DEVICE_SAMPLER  the sampler's step on the device from an edit's second sparse step
#   FISEDIT_QKV_GROUP       a sparse transformer block's Q, K and V as one strided-batched GEMM
#   FISEDIT_GEMM_TUNE       new GEMM problems time cuBLASLt's first candidates
#   FISEDIT_IM2COL_32       32-bit index arithmetic in the sparse convolution's gather
#   FISEDIT_GEMM_REDUCE_IN_PLACE  split-K GEMMs that reduce in their output, no second kernel
#   FISEDIT_PDL             our kernels launched with programmatic dependent launch (kernels/launch.cuh)
# Every result goes into $OUT/levers.tgz (one file: only a few files come back from the machine),
# saved after each part, so a call cut short still returns what ran.
#   tar cJf .device-ref/reference.tar.xz -C ../shared/reference tiny-sd2/model README.md
#   run: tests/gpu/levers.sh   (carry .device and .device-ref; about 6 minutes on an H100)
set -uo pipefail
cd "$(dirname "$0")/../.."
NAME=levers
. tests/gpu/bench-env.sh
all_on=(FISEDIT_DEVICE_SAMPLER=1 FISEDIT_QKV_GROUP=1 FISEDIT_IM2COL_32=1 FISEDIT_PDL=1)
# In order of what decides most, saved after each part (a call cut short still returns what ran).
bench() {  # bench NAME ARCH STAGES REPEAT [VAR=VALUE...]
  local name=$1 arch=$2 stages=$3 repeat=$4
  shift 4
  env "$@" "$bin/fisedit-bench" --arch "$arch" --device cuda --tokenizer "$tokenizer" --repeat "$repeat" \
    --generations 2 --stages "$stages" --json "$results/$name.json" >"$results/$name.log" 2>&1
  echo "$name ($*): exit $? ($((SECONDS - start)) s)"
  save
}
# 1. The tests with every lever on (test_cuda_sparse compares device- and host-sampled edits bit for
#    bit, and replayed edits with the op-by-op ones).
for t in test_cuda_sparse test_cuda_ops test_cuda_gemm test_cuda_cache; do
  env "${all_on[@]}" timeout 240 "$bin/$t" >"$results/$t.log" 2>&1
  echo "$t: exit $? ($((SECONDS - start)) s)"; grep -E '^(FAIL|Totals)|Loc:' "$results/$t.log" | head -8
  save
done
# 2. Whole SD2 edits with every lever on; edit_sizes times the host sampler beside it (other_sampling).
bench edit-sizes-sd2-768 sd2-768 generation,edit_sizes 3 "${all_on[@]}"
# 3. The recorded 5% step and the dense step, each lever alone against none.
for lever in none FISEDIT_PDL=1 FISEDIT_QKV_GROUP=1 FISEDIT_IM2COL_32=1 FISEDIT_GEMM_TUNE=1 \
             FISEDIT_GEMM_REDUCE_IN_PLACE=1; do
  name=${lever%%=*}
  bench "step-$name" sd2-768 unet,edit 5 ${lever/none/}
done
# 4. SD1.5 whole edits with every lever on; SD2 whole edits with none (the same machine's baseline);
#    the sparse tests with GEMM tuning too.
bench edit-sizes-sd15-512 sd15-512 generation,edit_sizes 3 "${all_on[@]}"
bench edit-sizes-sd2-768-none sd2-768 generation,edit_sizes 3
env "${all_on[@]}" FISEDIT_GEMM_TUNE=1 FISEDIT_GEMM_REDUCE_IN_PLACE=1 timeout 240 "$bin/test_cuda_sparse" \
  >"$results/tuned-test_cuda_sparse.log" 2>&1
echo "test_cuda_sparse with GEMM tuning and in-place reduction: exit $? ($((SECONDS - start)) s)"
save
