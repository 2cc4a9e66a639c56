#!/usr/bin/env bash
# The two commands a newcomer needs:
#   packaging/dev.sh app [MODEL]   install dependencies, build, start the app
#   packaging/dev.sh test          install dependencies, build, run the tests
# FISEDIT_PRESET picks another CMake preset (default: "default"; "cpu" builds without CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-}
case $what in
  app | test) shift ;;
  *) echo "usage: packaging/dev.sh app [MODEL] | test" >&2; exit 2 ;;
esac

./packaging/install-deps.sh
preset=${FISEDIT_PRESET:-default}
cmake --preset "$preset"
cmake --build --preset "$preset"

if [ "$what" = test ]; then
  exec ctest --preset "$preset"
fi
exec "build/$preset/bin/fisedit" "$@"
