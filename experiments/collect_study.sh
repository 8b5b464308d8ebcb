#!/usr/bin/env bash
# Copies what a finished (or partly finished) reduced study produced into the repository:
#   experiments/collect_study.sh SWEEP_DIR DEST METRIC [CONFIG.toml ...]
# SWEEP_DIR is runs/sweeps/<study>_reduced; DEST experiments/results/<study>/. Runs
# `crackseg sweep report` (with plots when matplotlib is importable by /usr/bin/python3) and
# copies the report (md, csv, tex, plots), the planned sweep (sweep.json, manifest.jsonl,
# sweep.toml), every task's per-image test CSV (per_image/task-NNNN.csv), a tasks.csv of
# wall times and the commit each task's binary was built from, and the given config files.
# No checkpoints or datasets: the folder stays small. CRACKSEG: the binary (default: the one
# on PATH).
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,10p' "$0"; exit 2; }
src=$1 dest=$2 metric=$3
shift 3
bin=${CRACKSEG:-crackseg}
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$dest/per_image"
PATH=/usr/bin:$PATH CRACKSEG_PLOT_SCRIPT="$root/scripts/plot.py" "$bin" sweep report "$src" --metric "$metric" >/dev/null
for f in results.md results.csv results_summary.csv results.tex sweep.json manifest.jsonl sweep.toml; do
  [ -f "$src/$f" ] && cp "$src/$f" "$dest/"
done
[ -d "$src/plots" ] && { rm -rf "$dest/plots"; cp -r "$src/plots" "$dest/plots"; }
for t in "$src"/task-*; do
  [ -f "$t/test_per_image.csv" ] && cp "$t/test_per_image.csv" "$dest/per_image/$(basename "$t").csv"
done
/usr/bin/python3 - "$src" > "$dest/tasks.csv" <<'PY'
import glob, json, os, sys
print("task,seed,status,train_loop_s,total_s,samples_per_s,git_commit,cpu_model")
for t in sorted(glob.glob(os.path.join(sys.argv[1], "task-*"))):
    p = os.path.join(t, "result.json")
    if not os.path.exists(p):
        print(f"{os.path.basename(t)},,no result,,,,,"); continue
    r = json.load(open(p)); tm = r.get("timings", {})
    print(",".join(str(x) for x in [os.path.basename(t), r.get("seed"), r.get("status"), tm.get("train_loop_s", ""),
          tm.get("total_s", ""), tm.get("samples_per_s", ""), r["versions"]["git_commit"][:12],
          '"' + r.get("host", {}).get("cpu_model", "") + '"']))
PY
for c in "$@"; do cp "$c" "$dest/"; done
echo "collected $src -> $dest ($(ls "$dest/per_image" | wc -l) per-image CSVs)"
