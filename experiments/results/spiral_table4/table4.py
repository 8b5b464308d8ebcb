#!/usr/bin/env python3
"""Study 2's combined table: networks x losses from the four sweep folders' results.csv
(mean ± sample std over seeds), the paper's metrics (per-image mAP, F1, precision, recall at
threshold 0.5, averaged over images) plus IoU and the threshold-free ODS, on the 17 held-out
CrackForest images (val) and the 3 test images. Usage: table4.py [DIR ...] > table4.md
(default: the 300-step spiral_table4* folders next to this script)."""
import csv, glob, os, statistics, sys

here = os.path.dirname(os.path.abspath(__file__))
# default: the four 300-step folders (spiral_table4_long/, study 2b, has its own budget:
# `table4.py spiral_table4_long/ > table4_long.md`)
dirs = sys.argv[1:] or sorted(d for d in glob.glob(os.path.join(here, "spiral_table4*/")) if "_long" not in d)
rows = []
for d in dirs:
    for r in csv.DictReader(open(os.path.join(d, "results.csv"))):
        r.setdefault("model.name", "unet")
        if not r.get("model.name"):
            r["model.name"] = "unet"
        if not r.get("loss.name"):
            r["loss.name"] = "focal"
        rows.append(r)

def cell(vals):
    v = [float(x) for x in vals if x not in ("", None)]
    if not v:
        return "-"
    return f"{statistics.mean(v):.3f} ± {statistics.stdev(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"

nets = ["unet", "hourglass_unet", "spiral_net"]
losses = ["bce", "balanced_bce", "focal", "f1", "pseudo_f1"]
cols = [("val_map", "mAP"), ("val_f1", "F1"), ("val_precision", "P"), ("val_recall", "R"), ("val_iou", "IoU"),
        ("val_ods", "ODS F1"), ("test_map", "test mAP"), ("test_f1", "test F1")]
print("| network | loss | seeds | " + " | ".join(c[1] for c in cols) + " |")
print("|---|---|---|" + "---|" * len(cols))
for n in nets:
    for l in losses:
        sel = [r for r in rows if r["model.name"] == n and r["loss.name"] == l]
        if not sel:
            continue
        print(f"| {n} | {l} | {len(sel)} | " + " | ".join(cell(r.get(k) for r in sel) for k, _ in cols) + " |")
