#!/usr/bin/env python3
"""crackseg's plots (the only Python in the project; never on the training path).

  plot.py curves RUN/metrics.csv OUT.png     learning curves of one run

Exit code 3 when matplotlib is missing, so callers can say so and carry on.
"""
import csv
import sys


def _matplotlib():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        print("matplotlib is not installed", file=sys.stderr)
        sys.exit(3)


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    cols = {}
    for r in rows:
        for k, v in r.items():
            if v not in ("", None):
                cols.setdefault(k, []).append((float(r["epoch"]), float(v)))
    return cols


def curves(csv_path, png_path):
    plt = _matplotlib()
    cols = read_csv(csv_path)
    losses = [k for k in cols if k.endswith("loss") and k != "epoch"]
    wanted = ["val_f1", "val_iou", "val_precision", "val_recall", "val_map", "val_ods", "val_ois"]
    metrics = [k for k in wanted if k in cols]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for k in losses:
        xs, ys = zip(*cols[k])
        axes[0].plot([x + 1 for x in xs], ys, marker="o", label=k)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    for k in metrics:
        xs, ys = zip(*cols[k])
        axes[1].plot([x + 1 for x in xs], ys, marker="o", label=k)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("validation metric")
    axes[1].set_ylim(0, 1)
    if metrics:
        axes[1].legend(fontsize=8)
    axes[1].grid(alpha=0.3)
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(csv_path)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)


def main(argv):
    if len(argv) >= 4 and argv[1] == "curves":
        curves(argv[2], argv[3])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
