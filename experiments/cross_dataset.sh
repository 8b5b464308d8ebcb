#!/bin/bash
# Study 5 (issue 16): cross-dataset evaluation. Each trained model (a sweep task folder with
# its final checkpoint.h5, e.g. the best configuration of each family in studies 1, 2 and 4,
# as ranked by `crackseg sweep report`) is evaluated on the test split of every dataset, so a
# model trained on one set is scored on the other two as well.
#
#   experiments/cross_dataset.sh CRACKSEG OUT_DIR TASK_DIR...        (from the repository root)
#
# Datasets (crackseg ingest; experiments/README.md "Data"), overridable with
# CROSS_DATASETS="name=path ...":
#   cfd      runs/data/cfd_study.h5   (test: the 3 fixed CrackForest images; val: 17 more)
#   masonry  runs/data/masonry255.h5  (224x224 upscaled to 255: Spiral-Net/hourglass tiles are 255)
#   ceramic  runs/data/ceramic.h5     (256x256)
# Writes OUT_DIR/<task>__<dataset>.json (crackseg eval --out) and OUT_DIR/cross_dataset.md,
# one row per (model, dataset). A failed evaluation is a row with its error, not an abort.
set -uo pipefail
[ $# -ge 3 ] || { echo "usage: $0 CRACKSEG OUT_DIR TASK_DIR..." >&2; exit 2; }
crackseg=$1
out=$2
shift 2
mkdir -p "$out"
datasets=${CROSS_DATASETS:-"cfd=runs/data/cfd_study.h5 masonry=runs/data/masonry255.h5 ceramic=runs/data/ceramic.h5"}
md=$out/cross_dataset.md
{
  echo "# Cross-dataset evaluation (test splits, threshold of each run)"
  echo
  echo "| model (task) | trained on | evaluated on | images | F1 | precision | recall | IoU | AP | ODS |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
} >"$md"
for task in "$@"; do
  ckpt=$task/checkpoint.h5
  name=$(basename "$(dirname "$task")")/$(basename "$task")
  trained=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["config"]["data"]["path"])' "$task/result.json" 2>/dev/null || echo "?")
  for d in $datasets; do
    dn=${d%%=*}
    dp=${d#*=}
    js=$out/$(basename "$task")__$dn.json
    if "$crackseg" eval --checkpoint "$ckpt" --data "$dp" --split test --out "$js" >"$js.log" 2>&1; then
      python3 - "$js" "$name" "$trained" "$dn" >>"$md" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
f = lambda k: "%.4f" % j[k] if isinstance(j.get(k), (int, float)) else "-"
print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (sys.argv[2], sys.argv[3], sys.argv[4], j.get("images", "-"),
      f("f1"), f("precision"), f("recall"), f("iou"), f("map"), f("ods")))
EOF
    else
      echo "| $name | $trained | $dn | failed: $(tail -1 "$js.log" | tr '|' '/') | | | | | | |" >>"$md"
    fi
  done
done
echo "wrote $md"
