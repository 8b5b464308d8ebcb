#!/bin/bash
# Data-parallel training on one machine (or inside an allocation) with mpirun:
#   launch/scripts/mpirun-train.sh RANKS run.toml [key=value ...]
# Threads per rank default to cores / ranks; ranks are bound to disjoint cores so oneDNN's
# OpenMP threads do not fight over them. Rank 0 alone prints progress.
set -euo pipefail
ranks=${1:?usage: $0 RANKS CONFIG.toml [key=value ...]}
shift
here=$(cd "$(dirname "$0")/../.." && pwd)
CRACKSEG=${CRACKSEG:-$here/build/cpu/crackseg}
cores=$(nproc)
threads=${OMP_NUM_THREADS:-$(( cores / ranks > 0 ? cores / ranks : 1 ))}
bind=(--bind-to none)
if [ $(( ranks * threads )) -le "$cores" ]; then bind=(--map-by "slot:PE=$threads" --bind-to core); fi
root=()
if [ "$(id -u)" -eq 0 ]; then root=(--allow-run-as-root); fi
exec mpirun "${root[@]}" --oversubscribe "${bind[@]}" -np "$ranks" -x OMP_NUM_THREADS="$threads" \
  "$CRACKSEG" train "$@"
