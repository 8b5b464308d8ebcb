#!/usr/bin/env bash
# Issue 5's data-parallel benchmark on one machine: the U-Net bench case (base 16, depth 4,
# 400x400, batch 4 per rank) at 1 rank x 2 threads and 2 ranks x 1 thread, fast and bitwise
# mode; prints steps/s, samples/s and the fraction of the step spent waiting on the gradient
# sync (result.json: timings.grad_sync_wait_s / timings.step_compute_s).
#   scripts/bench-dist.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-4}
BIN=${CRACKSEG:-build/cpu/crackseg}
work=$(mktemp -d /tmp/crackseg-bench-dist-XXXXXX)
trap 'rm -rf "$work"' EXIT
"$BIN" synth --out "$work/d.h5" --count 48 --size 400 --seed 1 >/dev/null 2>&1
cat > "$work/run.toml" <<TOML
[data]
path = "$work/d.h5"
crop = 0
val_split = ""
test_split = ""
[model]
name = "unet"
base = 16
depth = 4
[train]
micro_batch = 4
determinism = "fast"
log_every = 1000
TOML
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
run() {  # ranks threads mode
  local r=$1 t=$2 mode=$3 out="$work/r$1t$2$3"
  # One warm-up step is inside `steps`; the first step (primitive creation) is excluded by
  # running steps+1 and subtracting a 1-step run would double the cost, so report all steps.
  mpirun --oversubscribe --bind-to none -np "$r" -x OMP_NUM_THREADS="$t" "$BIN" train "$work/run.toml" \
    train.batch=$((4 * r)) train.steps="$steps" train.determinism="\"$mode\"" train.out="\"$out\"" --quiet --no-resume
  python3 - "$out/result.json" "$r" "$t" "$mode" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["timings"]
steps = json.load(open(sys.argv[1]))["steps"]
print(f"{sys.argv[2]} rank(s) x {sys.argv[3]} thread(s) {sys.argv[4]:8s}: {steps / j['step_compute_s']:.3f} steps/s, "
      f"{j['samples_per_s']:.2f} samples/s, sync wait {j['grad_sync_wait_s'] / j['step_compute_s'] * 100:.1f}% of step time")
PY
}
run 1 2 fast
run 2 1 fast
run 2 1 bitwise
