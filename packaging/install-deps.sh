#!/usr/bin/env bash
# Installs every build and test dependency of fisedit from Debian packages.
# Idempotent: packages already present are left alone; safe to run again.
# Usage: packaging/install-deps.sh
# The CUDA toolkit (nvcc, cuDNN, cuBLAS) is not a Debian package: when /usr/local/cuda exists the
# build uses it, otherwise fisedit builds its CPU engine only.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  qt6-base-dev qt6-base-dev-tools libgl-dev
  libopencv-dev nlohmann-json3-dev libstb-dev libturbojpeg0-dev libopenblas-dev libicu-dev zlib1g-dev
  xvfb xauth
  dpkg-dev file
  clang libclang-rt-dev
)
# clang and its libFuzzer/sanitizer runtimes build the `fuzz` preset, which `packaging/dev.sh test` runs
# (tests/fuzz/run.sh); the app does not need them. `install-deps.sh fuzz` is accepted as before: the same list.

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root or install sudo" >&2; exit 1; }
  sudo="sudo"
fi
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
