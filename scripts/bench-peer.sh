#!/usr/bin/env bash
# crackseg against its strongest peer, side by side in one run (issue 15): the three
# `crackseg bench` cases and the same networks in PyTorch (bench/peer/), eager with
# channels_last and torch.compile, run ALTERNATELY (crackseg, peer, peer; the order flips
# every repetition), each case in its own process. Prints the machine (CPU model, ISA flags,
# threads, load), every run, and a markdown table of medians: samples/s, crackseg's ratio to
# the stronger PyTorch mode (and its range over the repetitions, each ratio taken between
# runs next to each other in time: how far a noisy host moved it), % of this machine's sgemm
# peak, peak RSS. With --precisions
# "fp32 bf16" crackseg also runs with --precision bf16 and PyTorch with bf16 autocast (mode
# bf16), and a second table compares those (needs AVX512-BF16 or AMX). With
# --conv-algorithms "direct winograd" crackseg's fp32 also runs with --conv-algorithm winograd
# (train.conv_algorithm) and a third table compares it with the strongest fp32 peer.
# --paired: instead of whole runs, every side of a case is one process alternated ONE STEP at
# a time (bench/peer/paired.py; --steps rounds, default 20; --reps and --conv-algorithms do
# not apply): each round's ratio compares steps seconds apart, which a noisy host cannot
# skew the way it skews runs a minute apart. The table gives the median of the per-step
# ratios and their middle half.
#
#   scripts/bench-peer.sh [--paired] [--reps 3] [--steps 10] [--warmup 3] [--threads N] [--case C]...
#                         [--modes "eager compile"] [--precisions "fp32 bf16"]
#                         [--conv-algorithms "direct winograd"] [--crackseg PATH] [--out results.jsonl]
#   scripts/bench-peer.sh --check-only     # parameter counts and multiply-adds only
#
# PyTorch is a benchmark dependency only: on first use the script creates a virtual
# environment ($CRACKSEG_PEER_VENV, default build/peer-venv) with `python3 -m venv` and
# installs torch from PyPI into it (several GB with its CUDA wheels; minutes). Nothing in the
# build, the tests or training needs it. Run on a quiet machine: check `uptime` first.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CRACKSEG_PEER_VENV:-$root/build/peer-venv}"
reps=3 steps="" warmup=3 threads="$(nproc)" modes="eager compile" precisions="fp32" convs="direct" bin="${CRACKSEG_BIN:-}" out="" check_only=0 paired=0
cases=()
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --case) cases+=("$2"); shift 2 ;;
    --modes) modes="$2"; shift 2 ;;
    --precisions) precisions="$2"; shift 2 ;;
    --conv-algorithms) convs="$2"; shift 2 ;;
    --crackseg) bin="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --check-only) check_only=1; shift ;;
    --paired) paired=1; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "bench-peer.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ ${#cases[@]} -gt 0 ] || cases=(unet spiral_net patch_cnn)

if [ -z "$bin" ]; then
  for c in "$root/build/cpu/crackseg" "$root/build/release/crackseg" "$root"/build/*/crackseg; do
    [ -x "$c" ] && { bin="$c"; break; }
  done
fi
[ -n "$bin" ] && [ -x "$bin" ] || { echo "bench-peer.sh: no crackseg binary; build it or pass --crackseg PATH" >&2; exit 2; }

py="$venv/bin/python"
if ! { [ -x "$py" ] && "$py" -c 'import torch' 2>/dev/null; }; then
  echo "bench-peer.sh: creating $venv with torch from PyPI (first use only; large download)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet torch numpy
fi

peer="$root/bench/peer/peer_bench.py"
case_args=()
for c in "${cases[@]}"; do case_args+=(--case "$c"); done
"$py" "$peer" check --crackseg "$bin" "${case_args[@]}"
[ "$check_only" = 1 ] && exit 0

[ -n "$steps" ] || { [ "$paired" = 1 ] && steps=20 || steps=10; }
export OMP_NUM_THREADS="$threads"
[ -n "$out" ] || out="$(mktemp /tmp/bench-peer-XXXXXX.jsonl)"
: > "$out"
flags="$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|avx512f|avx512bw|avx512_vnni|avx512_bf16|amx_tile|amx_bf16|amx_int8)$' | tr '\n' ' ')"
echo "# crackseg vs PyTorch, one run: $(date -u '+%Y-%m-%d %H:%M UTC')"
cpuinfo_field() { grep -m1 "^$1" /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'; }
echo "# CPU: $(cpuinfo_field 'model name') (family $(cpuinfo_field 'cpu family'), model $(cpuinfo_field 'model\s')), $(nproc) logical CPUs; ISA: ${flags:-none of avx2/avx512/amx}"
echo "# threads: $threads; $([ "$paired" = 1 ] && echo "paired: $steps rounds of one step per side" || echo "reps: $reps; steps: $steps") (+$warmup untimed); torch $("$py" -c 'import torch; print(torch.__version__)'); crackseg: $bin"
# What else used the CPU (a 1 s sample by top, >= 5% of a CPU, this script's own shell
# excluded): a background job at nice 19 still shares caches and memory bandwidth, so the
# record names it rather than leaving a reader to guess why a run was slow.
busy_processes() {
  top -b -n 2 -d 1 -w 200 2>/dev/null | awk -v self=$$ '
    /^top -/ { frame++ } frame == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 >= 5 && $1 != self {
      printf "%s%s (pid %s, nice %s, %s%% CPU)", sep, $12, $1, $4, $9; sep = "; " }
    END { if (sep == "") printf "none" }'
}
echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg); busy processes: $(busy_processes)"

if [ "$paired" = 1 ]; then
  "$py" "$peer" paired --crackseg "$bin" "${case_args[@]}" --modes "$modes" --precisions "$precisions" \
    --steps "$steps" --warmup "$warmup" --threads "$threads" --out "$out"
  echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg); busy processes: $(busy_processes); results: $out"
  exit 0
fi
case " $precisions " in *" bf16 "*) modes="$modes bf16" ;; esac

run_crackseg() {
  for p in $precisions; do
    for a in $convs; do
      # Winograd is an fp32 algorithm: bf16 runs direct
      [ "$p" = bf16 ] && [ "$a" != direct ] && continue
      run_crackseg_at "$1" "$2" "$p" "$a"
    done
  done
}
run_crackseg_at() {
  "$bin" bench --case "$1" --json --threads="$threads" --steps "$steps" --warmup "$warmup" --precision "$3" \
    --conv-algorithm "$4" |
    "$py" -c 'import json,sys
for l in sys.stdin:
    if l.startswith("{"):
        r = json.loads(l); r["side"] = "crackseg"; r["rep"] = int(sys.argv[1]); print(json.dumps(r))' "$2" |
    tee -a "$out"
}
run_peer() {
  "$py" "$peer" run --case "$1" --mode "$2" --threads "$threads" --steps "$steps" --warmup "$warmup" |
    "$py" -c 'import json,sys
for l in sys.stdin:
    if l.startswith("{"):
        r = json.loads(l); r["rep"] = int(sys.argv[1]); print(json.dumps(r))' "$3" |
    tee -a "$out"
}

for ((rep = 1; rep <= reps; ++rep)); do
  for c in "${cases[@]}"; do
    if ((rep % 2)); then
      run_crackseg "$c" "$rep"
      for m in $modes; do run_peer "$c" "$m" "$rep"; done
    else
      for m in $modes; do run_peer "$c" "$m" "$rep"; done
      run_crackseg "$c" "$rep"
    fi
  done
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg); busy processes: $(busy_processes); results: $out"
echo
"$py" "$peer" table "$out"
