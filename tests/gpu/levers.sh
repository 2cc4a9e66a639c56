#!/usr/bin/env bash
# On the GPU machine (repo root, after `tests/gpu/device-run.sh pack` here and with `.device` and a
# tiny-sd2-only `.device-ref` carried): the GPU tests and benchmarks that decide the defaults of the
# issue-12 levers that are off until measured (docs/design-notes.md):
#   FISEDIT_DEVICE_SAMPLER  the sampler's step on the device from an edit's second sparse step
#   FISEDIT_QKV_GROUP       a sparse transformer block's Q, K and V as one strided-batched GEMM
#   FISEDIT_GEMM_TUNE       new GEMM problems time cuBLASLt's first candidates
#   FISEDIT_IM2COL_32       32-bit index arithmetic in the sparse convolution's gather
#   FISEDIT_GEMM_REDUCE_IN_PLACE  split-K GEMMs that reduce in their output, no second kernel
#   FISEDIT_REPLAY_TIME_MEMO=0  (on by default) the recorded step computing its time embeddings again
#   FISEDIT_PDL             our kernels launched with programmatic dependent launch (kernels/launch.cuh)
# Every result goes into $OUT/levers.tgz (one file: only a few files come back from the machine),
# saved after each part, so a call cut short still returns what ran.
#   tar cJf .device-ref/reference.tar.xz -C ../shared/reference tiny-sd2/model README.md
#   run: tests/gpu/levers.sh   (carry .device and .device-ref; about 3 minutes on an H100)
set -uo pipefail
cd "$(dirname "$0")/../.."
tests/gpu/device-run.sh stage >/dev/null
export LD_LIBRARY_PATH=/tmp/fisedit-gpu/lib FISEDIT_REFERENCE_DIR=/tmp/fisedit-ref QT_QPA_PLATFORM=offscreen
results=/tmp/fisedit-levers
mkdir -p "$results" "${OUT:-gpu-results}"
save() { tar czf "${OUT:-gpu-results}/levers.tgz" -C "$results" .; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$results/device.txt"
tokenizer=/tmp/fisedit-ref/tiny-sd2/model/tokenizer
bin=/tmp/fisedit-gpu/bin
start=$SECONDS
all_on=(FISEDIT_DEVICE_SAMPLER=1 FISEDIT_QKV_GROUP=1 FISEDIT_IM2COL_32=1 FISEDIT_PDL=1)
# The tests with every lever on (test_cuda_sparse compares device- and host-sampled edits bit for bit),
# then with GEMM tuning too.
for t in test_cuda_ops test_cuda_gemm test_cuda_sparse test_cuda_cache; do
  env "${all_on[@]}" "$bin/$t" >"$results/$t.log" 2>&1
  echo "$t: exit $? ($((SECONDS - start)) s)"; grep -E '^(FAIL|Totals)|Loc:' "$results/$t.log" | head -8
done
env "${all_on[@]}" FISEDIT_GEMM_TUNE=1 "$bin/test_cuda_sparse" >"$results/tuned-test_cuda_sparse.log" 2>&1
echo "test_cuda_sparse with GEMM tuning: exit $? ($((SECONDS - start)) s)"
save
# Whole edits with every lever on; edit_sizes times the host sampler beside it (other_sampling).
for arch in sd2-768 sd15-512; do
  env "${all_on[@]}" "$bin/fisedit-bench" --arch "$arch" --device cuda --tokenizer "$tokenizer" --repeat 3 \
    --generations 2 --stages generation,edit_sizes --json "$results/edit-sizes-$arch.json" >"$results/edit-sizes-$arch.log" 2>&1
  echo "edit_sizes $arch: exit $? ($((SECONDS - start)) s)"
  save
done
# The recorded 5% step and the dense step, each lever alone against none.
for lever in none FISEDIT_REPLAY_TIME_MEMO=0 FISEDIT_PDL=1 FISEDIT_QKV_GROUP=1 FISEDIT_IM2COL_32=1 FISEDIT_GEMM_TUNE=1 FISEDIT_GEMM_REDUCE_IN_PLACE=1; do
  name=${lever%%=*}
  env ${lever/none/} "$bin/fisedit-bench" --arch sd2-768 --device cuda --tokenizer "$tokenizer" --repeat 5 \
    --stages unet,edit --json "$results/step-$name.json" >"$results/step-$name.log" 2>&1
  echo "unet,edit with $lever: exit $? ($((SECONDS - start)) s)"
  save
done
# Whole edits with no lever on, for the same machine's baseline.
"$bin/fisedit-bench" --arch sd2-768 --device cuda --tokenizer "$tokenizer" --repeat 3 --generations 2 \
  --stages generation,edit_sizes --json "$results/edit-sizes-sd2-768-none.json" >"$results/edit-sizes-sd2-768-none.log" 2>&1
echo "edit_sizes sd2-768 with no lever: exit $? ($((SECONDS - start)) s)"
save
