#!/usr/bin/env python3
"""Study 1's comparison table from `crackseg sweep report`'s results.csv: per network and
number of training images, mean ± sample std over seeds of the mean per-image F1 on the 3
notebook-protocol test images (test_f1), on the 17 held-out images (val_f1) and on all 20
(pooled: (17 val_f1 + 3 test_f1) / 20, exact because F1 is averaged per image), beside the
notebook's figure. Usage: pooled.py results.csv > pooled.md"""
import csv, statistics, sys
from collections import defaultdict

NOTEBOOK = {10: 0.569, 20: 0.640, 30: 0.646, 40: 0.668}
rows = defaultdict(list)
for r in csv.DictReader(open(sys.argv[1])):
    if not r.get("test_f1") or not r.get("val_f1"):
        continue
    key = (r["model.padding"], int(r["data.max_train"]))
    t, v = float(r["test_f1"]), float(r["val_f1"])
    rows[key].append((t, v, (17 * v + 3 * t) / 20, float(r.get("val_ods") or "nan"), float(r.get("val_map") or "nan")))

def ms(xs):
    m = statistics.mean(xs)
    if len(xs) < 2:
        return "%.3f" % m
    return "%.3f ± %.3f" % (m, statistics.stdev(xs))

print("| network | train images | seeds | F1, 3 test images | F1, 17 held-out images | F1, all 20 | ODS F1, 17 held-out | AP, 17 held-out | notebook (3 images, 1 run) |")
print("|---|---|---|---|---|---|---|---|---|")
for (pad, n) in sorted(rows, key=lambda k: (k[0] != "same", k[1])):
    xs = rows[(pad, n)]
    cols = [ms([x[i] for x in xs]) for i in range(5)]
    print("| %s | %d | %d | %s | %s | %s | %s | %s | %s |" % (pad, n, len(xs), *cols, "%.3f" % NOTEBOOK[n] if pad == "same" else "-"))
