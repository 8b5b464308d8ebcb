#!/usr/bin/env bash
# The test command: install dependencies, build the cpu preset, run every ctest label.
# CRACKSEG_WERROR=ON (as .ci/run sets it) turns compiler warnings into errors.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake --preset cpu -G Ninja -DCRACKSEG_WERROR="${CRACKSEG_WERROR:-OFF}" >/dev/null
cmake --build --preset cpu -j"$(nproc)"
ctest --preset cpu -j"$(nproc)" "$@"
