# Sourced by the GPU machine's benchmark scripts (edits.sh, attention.sh) from the repo root, with NAME
# set: unpacks what was carried, sets the environment the binaries need, and defines $results (where
# each part writes), save() (everything so far into $OUT/NAME.tgz: only a few files come back from the
# machine, so one archive, saved after each part), $tokenizer, $bin and $start.
tests/gpu/device-run.sh stage >/dev/null
export LD_LIBRARY_PATH=/tmp/fisedit-gpu/lib FISEDIT_REFERENCE_DIR=/tmp/fisedit-ref QT_QPA_PLATFORM=offscreen
results=/tmp/fisedit-$NAME
rm -rf "$results"  # a warm machine may hold an earlier call's files: archive only this call's
mkdir -p "$results" "${OUT:-gpu-results}"
save() { tar czf "${OUT:-gpu-results}/$NAME.tgz" -C "$results" .; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$results/device.txt"
git log -1 --format='%H %s' >>"$results/device.txt" 2>/dev/null
tokenizer=/tmp/fisedit-ref/tiny-sd2/model/tokenizer
bin=/tmp/fisedit-gpu/bin
start=$SECONDS
