#!/usr/bin/env bash
# The test command: install dependencies, build the cpu preset, run every ctest label.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake --preset cpu -G Ninja >/dev/null
cmake --build --preset cpu -j"$(nproc)"
ctest --preset cpu -j"$(nproc)" "$@"
