#!/usr/bin/env python3
"""Study 4's grid as one table: lr x batch x dropout x loss, val (24 masonry images) F1 at
0.5, mAP and ODS F1, test F1, one seed; from results.csv (partial sweeps list only the tasks
that finished). Usage: grid.py > grid.md"""
import csv, os

here = os.path.dirname(os.path.abspath(__file__))
rows = list(csv.DictReader(open(os.path.join(here, "results.csv"))))
key = lambda r: (r["loss.name"], -float(r["optim.lr"]), float(r["model.dropout"]), int(float(r["train.batch"])))
f = lambda r, k: f"{float(r[k]):.3f}" if r.get(k) not in (None, "") else "-"
print("| loss | lr | dropout | batch | val F1 | val mAP | val ODS F1 | test F1 | train s |")
print("|---|---|---|---|---|---|---|---|---|")
for r in sorted(rows, key=key):
    print(f"| {r['loss.name']} | {float(r['optim.lr']):g} | {float(r['model.dropout']):g} | {int(float(r['train.batch']))} | "
          f"{f(r, 'val_f1')} | {f(r, 'val_map')} | {f(r, 'val_ods')} | {f(r, 'test_f1')} | {float(r['train_time_s']):.0f} |")
