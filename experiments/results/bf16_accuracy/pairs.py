#!/usr/bin/env python3
"""bf16 against fp32 (or Winograd against direct convolutions) per seed (the same seed gives
the same initial weights, data order, crops and dropout masks): F1 at 0.5, mAP and ODS F1 on
the 3 test and 17 val CrackForest images, from results.csv; mean over seeds and the mean
paired difference. The compared key is the sweep's grid key: train.precision (fp32, bf16)
or train.conv_algorithm (direct, winograd).
Usage: pairs.py > pairs.md                                   (this folder: BCE)
       pairs.py ../bf16_accuracy_pf1 > ../bf16_accuracy_pf1/pairs.md   (pseudo-F1)
       pairs.py ../winograd_accuracy > ../winograd_accuracy/pairs.md"""
import csv, os, statistics, sys

here = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
rows = list(csv.DictReader(open(os.path.join(here, "results.csv"))))
keys = [("test_f1", "test F1"), ("test_map", "test mAP"), ("test_ods", "test ODS F1"),
        ("val_f1", "val F1"), ("val_map", "val mAP"), ("val_ods", "val ODS F1"), ("train_time_s", "train s")]
key, (a, b) = ("train.conv_algorithm", ("direct", "winograd")) if "train.conv_algorithm" in rows[0] else \
    ("train.precision", ("fp32", "bf16"))
by = {(r[key], r["seed"]): r for r in rows}
seeds = sorted({r["seed"] for r in rows})
print(f"| {key.split('.')[1]} | seed | " + " | ".join(k[1] for k in keys) + " |")
print("|---|---|" + "---|" * len(keys))
for p in (a, b):
    for s in seeds:
        if (p, s) in by:
            print(f"| {p} | {s} | " + " | ".join(f"{float(by[p, s][k]):.4f}" if k != "train_time_s" else f"{float(by[p, s][k]):.0f}" for k, _ in keys) + " |")
for p in (a, b):
    sel = [by[p, s] for s in seeds if (p, s) in by]
    print(f"| {p} | mean | " + " | ".join(f"{statistics.mean(float(r[k]) for r in sel):.4f}" for k, _ in keys) + " |")
both = [s for s in seeds if (a, s) in by and (b, s) in by]
print(f"| {b} - {a} | paired mean | " + " | ".join(
    f"{statistics.mean(float(by[b, s][k]) - float(by[a, s][k]) for s in both):+.4f}" for k, _ in keys) + " |")
