#!/usr/bin/env python3
"""crackseg's plots (the only Python in the project; never on the training path).

  plot.py curves RUN/metrics.csv OUT.png [TRAIN_LOSS]   learning curves of one run (`crackseg train`)
  plot.py sweep DIR/plots/plot_input.json    sweep report plots (`crackseg sweep report`)

The sweep input JSON (written by the report command) names results.csv, the sorting metric,
the swept axes, the output folder and, for the best configurations, each seed's
metrics.csv; it writes <out>/metric_vs_<axis>.png per axis (every task as a faint dot; the
mean per value with a sample-std error bar, joined by a line only on a numeric axis:
categorical values are points) and <out>/curves_best.png (learning curves of the best
configurations, legend = their swept values). Epochs are 1-based everywhere: metrics.csv
rows carry the 1-based epoch (files from before that change start at 0 and are shifted).

Exit code 3 when matplotlib is missing, so callers can say so and carry on.
"""
import csv
import json
import math
import os
import sys

plt = None


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
    shift = epoch_offset(rows, "epoch")
    cols = {}
    for r in rows:
        for k, v in r.items():
            if v not in ("", None):
                cols.setdefault(k, []).append((float(r["epoch"]) + shift, float(v)))
    return cols


def loss_label(column, train_loss):
    """Legend text saying which loss a metrics.csv column is: the training loss is the
    configured one, the validation loss is always the per-pixel BCE of the probabilities."""
    if column == "train_loss":
        return "train loss (%s)" % train_loss if train_loss else "train loss"
    if column == "val_loss":
        return "validation loss (BCE of probabilities)"
    return column


def curves(csv_path, png_path, train_loss=""):
    global plt
    plt = _matplotlib()
    cols = read_csv(csv_path)
    losses = [k for k in cols if k.endswith("loss") and k != "epoch"]
    wanted = ["val_f1", "val_iou", "val_precision", "val_recall", "val_map", "val_ods", "val_ois"]
    metrics = [k for k in wanted if k in cols]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for k in losses:  # metrics.csv epochs are 1-based
        xs, ys = zip(*cols[k])
        axes[0].plot(xs, ys, marker="o", label=loss_label(k, train_loss))
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    for k in metrics:
        xs, ys = zip(*cols[k])
        axes[1].plot(xs, ys, marker="o", label=k)
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


def as_number(text):
    try:
        v = float(text)
        return v if math.isfinite(v) else None
    except (TypeError, ValueError):
        return None


def safe_name(text):
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)


def mean_std(ys):
    m = sum(ys) / len(ys)
    sd = math.sqrt(sum((y - m) ** 2 for y in ys) / (len(ys) - 1)) if len(ys) > 1 else 0.0
    return m, sd


def plot_axis(rows, axis, metric, out):
    pts = [(r[axis], as_number(r.get(metric))) for r in rows if r.get(axis, "") != ""]
    pts = [(x, y) for x, y in pts if y is not None]
    if not pts:
        return None
    numeric = all(as_number(x) is not None for x, _ in pts)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    if numeric:
        xs = sorted({as_number(x) for x, _ in pts})
        stats = [mean_std([y for x, y in pts if as_number(x) == v]) for v in xs]
        ax.scatter([as_number(x) for x, _ in pts], [y for _, y in pts], s=12, alpha=0.35, color="C0", label="seeds")
        ax.errorbar(xs, [m for m, _ in stats], yerr=[sd for _, sd in stats], fmt="o-", color="C1", capsize=3,
                    label="mean ± std")
        positive = all(v > 0 for v in xs)
        if positive and len(xs) > 1 and max(xs) / min(xs) >= 100:
            ax.set_xscale("log")
    else:
        # Categorical axis (loss names, models): points with error bars, no line between
        # categories that have no order.
        cats = sorted({x for x, _ in pts})
        pos = {c: i for i, c in enumerate(cats)}
        stats = [mean_std([y for x, y in pts if x == c]) for c in cats]
        ax.scatter([pos[x] for x, _ in pts], [y for _, y in pts], s=12, alpha=0.35, color="C0", label="seeds")
        ax.errorbar(range(len(cats)), [m for m, _ in stats], yerr=[sd for _, sd in stats], fmt="o", color="C1",
                    capsize=4, label="mean ± std")
        ax.set_xticks(range(len(cats)))
        ax.set_xticklabels([c.strip('"') for c in cats], rotation=20)
        ax.set_xlim(-0.5, len(cats) - 0.5)
    ax.set_xlabel(axis)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(out, "metric_vs_%s.png" % safe_name(axis))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def epoch_offset(rows, xcol):
    """1 for a metrics.csv whose epochs start at 0 (written before epochs became 1-based)."""
    if xcol != "epoch" or not rows:
        return 0
    first = as_number(rows[0].get("epoch"))
    return 1 if first == 0 else 0


def read_curve(path, metric):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    cols = rows[0].keys()
    xcol = next((c for c in ("epoch", "step") if c in cols), None)
    short = metric.split(".")[-1]
    ycol = next((c for c in (metric, short) if c in cols), None)
    if ycol is None:
        ycol = next((c for c in cols if c not in ("epoch", "step") and as_number(rows[0][c]) is not None), None)
    if ycol is None:
        return None
    xs, ys = [], []
    shift = epoch_offset(rows, xcol)
    for i, r in enumerate(rows):
        y = as_number(r.get(ycol))
        if y is None:
            continue
        xs.append(as_number(r[xcol]) + shift if xcol else i + 1)
        ys.append(y)
    return xs, ys, xcol or "row", ycol


def plot_curves(curves, metric, out):
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn, xlabel, ylabel = 0, "epoch", metric
    for i, c in enumerate(curves):
        for j, path in enumerate(c.get("files", [])):
            got = read_curve(path, metric)
            if got is None:
                continue
            xs, ys, xlabel, ylabel = got
            ax.plot(xs, ys, color="C%d" % i, alpha=0.8, label=c["label"] if j == 0 else None)
            drawn += 1
    if drawn == 0:
        plt.close(fig)
        return None
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title("learning curves of the best configurations (one line per seed)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(out, "curves_best.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sweep(spec_path):
    """Sweep report plots: metric against each swept axis, curves of the best configurations."""
    global plt
    plt = _matplotlib()
    with open(spec_path) as f:
        spec = json.load(f)
    with open(spec["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    os.makedirs(spec["out"], exist_ok=True)
    written = [plot_axis(rows, a, spec["metric"], spec["out"]) for a in spec["axes"]]
    written.append(plot_curves(spec.get("curves", []), spec["metric"], spec["out"]))
    for p in written:
        if p:
            print("wrote", p)

def main(argv):
    if len(argv) >= 4 and argv[1] == "curves":
        curves(argv[2], argv[3], argv[4] if len(argv) >= 5 else "")
        return 0
    if len(argv) == 3 and argv[1] == "sweep":
        sweep(argv[2])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
