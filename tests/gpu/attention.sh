#!/usr/bin/env bash
# On the GPU machine (repo root, after `tests/gpu/device-run.sh pack` here, with `.device` and a
# tiny-sd2-only `.device-ref` carried): cuDNN's fused flash attention (FISEDIT_ATTENTION_CUDNN) against
# kernels/attention. The GPU tests that run attention (test_cuda_gemm with each plan logged, then it and
# test_cuda_sparse with the automatic route), the attention op alone on the U-Net's shapes by each
# route, the dense step and a generation by each, and whole edits by each. Everything goes into
# $OUT/NAME.tgz, saved after each part, so a call cut short still returns what ran.
#   run: tests/gpu/attention.sh   (carry .device and .device-ref; about 10 minutes on an H100: split it
#   with ATTENTION_PARTS over two calls of one warm machine)
# Environment: ATTENTION_ARCHS (default "sd2-768 sd15-512"), ATTENTION_GENERATIONS (timed edits per
# size, default 3), ATTENTION_PARTS (default "tests op dense edits"), ATTENTION_NAME (the archive's name).
set -uo pipefail
cd "$(dirname "$0")/../.."
NAME=${ATTENTION_NAME:-attention}  # the archive: $OUT/NAME.tgz
. tests/gpu/bench-env.sh
parts=" ${ATTENTION_PARTS:-tests op dense edits} "
archs=${ATTENTION_ARCHS:-sd2-768 sd15-512}
run_test() {  # run_test LOG TEST [VAR=VALUE...]
  local name=$1 test=$2
  shift 2
  env "$@" timeout 300 "$bin/$test" >"$results/$name.log" 2>&1
  echo "$name ($*): exit $? ($((SECONDS - start)) s)"
  grep -E '^(FAIL|Totals)|Loc:|cuDNN attention' "$results/$name.log" | head -40
  save
}
bench() {  # bench NAME ARCH STAGES REPEAT [VAR=VALUE...]
  local name=$1 arch=$2 stages=$3 repeat=$4
  shift 4
  env "$@" timeout 240 "$bin/fisedit-bench" --arch "$arch" --device cuda --tokenizer "$tokenizer" --repeat "$repeat" \
    --generations "${ATTENTION_GENERATIONS:-3}" --stages "$stages" --json "$results/$name.json" >"$results/$name.log" 2>&1
  echo "$name ($*): exit $? ($((SECONDS - start)) s)"
  grep -E "^ +[0-9.]+% |^  sd|^U-Net step|^generation|of which|attention op|first:|editing prepared|new mask" "$results/$name.log" | head -40
  save
}
if [[ $parts == *" tests "* ]]; then
  run_test test_cuda_gemm test_cuda_gemm FISEDIT_ATTENTION_CUDNN_LOG=1
  # Every attention case of the suite with the automatic route (cuDNN where the tiles fill the GPU),
  # and the sparse suite's replayed-against-op-by-op edits with it.
  run_test test_cuda_gemm-auto test_cuda_gemm FISEDIT_ATTENTION_CUDNN=auto
  run_test test_cuda_sparse-auto test_cuda_sparse FISEDIT_ATTENTION_CUDNN=auto
fi
if [[ $parts == *" op "* ]]; then
  for route in off on; do bench "op-$route" sd2-768 attention 5 FISEDIT_ATTENTION_CUDNN=$route; done
fi
if [[ $parts == *" dense "* ]]; then
  for arch in $archs; do
    for route in off auto; do bench "dense-$arch-$route" "$arch" unet,generation 5 FISEDIT_ATTENTION_CUDNN=$route; done
  done
fi
if [[ $parts == *" edits "* ]]; then
  for arch in $archs; do
    routes="off auto"
    [ "$arch" = sd2-768 ] && routes="off auto on"  # on: a sparse step's few queries through cuDNN too
    for route in $routes; do bench "edits-$arch-$route" "$arch" generation,edit_sizes 3 FISEDIT_ATTENTION_CUDNN=$route; done
  done
fi
echo "done in $((SECONDS - start)) s"
