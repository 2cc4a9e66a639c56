#!/usr/bin/env bash
# One training call on the GPU machine (run from the repository root there; see README.md here).
# Carried: .carry/diffusers.tar.xz (diffusers' source, not committed) and .carry/fisedit-toyworld-data (the
# static world generator). The first call also runs every stage for a few seconds on a throw-away
# folder; later calls resume runs/toyworld. Results in $OUT: train.log, history.json, preview.png,
# vae-reconstructions.png (first call) and toyworld-model.tar (the exported diffusers folder).
set -euo pipefail
out=${OUT:-/tmp/toyworld-out}
mkdir -p "$out" /tmp/site
chmod +x .carry/fisedit-toyworld-data
[ -d /tmp/site/diffusers ] || tar xJf .carry/diffusers.tar.xz -C /tmp/site
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
python3 -c "import diffusers, transformers, torch; print('diffusers', diffusers.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if [ ! -f runs/toyworld/checkpoint.pt ]; then
  python3 training/toyworld/train.py --run /tmp/toyworld-smoke --smoke --out /tmp/toyworld-smoke-out
fi
python3 training/toyworld/train.py --run runs/toyworld --minutes "${MINUTES:-9}" "$@" 2>&1 | tee -a "$out/train.log"
