#!/usr/bin/env python3
"""Study 3's combined table: Spiral-Net depth order (folder) x skip (model.skip) from the three
folders' results.csv, mean ± sample std over seeds; val = the 17 held-out CrackForest images,
test = the 3 test images.
Usage: table23.py > table23.md                      (study 3: this folder)
       table23.py ../spiral_table23_long > ../spiral_table23_long/table23_long.md   (study 3b)
Study 3b's increasing/concat cell is study 2b's Spiral-Net + pseudo-F1 row (same network,
loss, budget and seeds), read from ../spiral_table4/spiral_table4_long/results.csv when the
folder has none of its own."""
import csv, os, statistics, sys

here = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
study2b = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "spiral_table4", "spiral_table4_long", "results.csv")
def cell(vals):
    v = [float(x) for x in vals if x not in ("", None)]
    if not v:
        return "-"
    return f"{statistics.mean(v):.3f} ± {statistics.stdev(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"
cols = [("val_map", "mAP"), ("val_f1", "F1"), ("val_precision", "P"), ("val_recall", "R"), ("val_iou", "IoU"),
        ("val_ods", "ODS F1"), ("test_map", "test mAP"), ("test_f1", "test F1")]
orders = {"increasing": "1-2-3-4-5-6-7", "decreasing": "7-6-5-4-3-2-1", "uniform": "4-4-4-4-4-4-4"}
print("| depth order | skip | params | seeds | " + " | ".join(c[1] for c in cols) + " |")
print("|---|---|---|---|" + "---|" * len(cols))
for o, depths in orders.items():
    p = os.path.join(here, o, "results.csv")
    if not os.path.exists(p):
        continue
    rows = list(csv.DictReader(open(p)))
    for skip in ("concat", "sum"):
        sel = [r for r in rows if r.get("model.skip") == skip]
        if not sel and o == "increasing" and skip == "concat" and len(sys.argv) > 1 and os.path.exists(study2b):
            sel = [r for r in csv.DictReader(open(study2b))
                   if r["model.name"] == "spiral_net" and r["loss.name"] == "pseudo_f1"]  # study 2b, default skip concat
        if sel:
            print(f"| {o} ({depths}) | {skip} | {int(float(sel[0]['params'])):,} | {len(sel)} | " + " | ".join(cell(r.get(k) for r in sel) for k, _ in cols) + " |")
