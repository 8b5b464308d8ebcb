#!/usr/bin/env python3
"""PyTorch peer of `crackseg bench` (issue 15). Driven by scripts/bench-peer.sh.

  peer_bench.py check --crackseg BIN [--case C ...] [--perturb N]
      build each peer model and compare its parameter count and forward multiply-adds with
      `crackseg models NAME k=v --json`; exit 1 on any mismatch (--perturb: build the peer
      with N channels fewer in one layer, which must fail; used by the test).
  peer_bench.py run --case C --mode eager|compile|bf16 [--steps S] [--warmup W] [--threads T]
      one JSON line: the same training step as `crackseg bench` (forward, BCE-with-logits,
      backward, Adam lr 1e-4), channels_last, median step time over S steps after W untimed
      ones, peak RSS the way crackseg measures it (VmHWM after /proc/self/clear_refs at case
      start). bf16 = eager under torch.autocast("cpu", bfloat16), the peer of crackseg's
      precision = bf16.
  peer_bench.py table RESULTS.jsonl
      the side-by-side table from the JSON lines the script collected (no torch needed).
  peer_bench.py paired --crackseg BIN --out RESULTS.jsonl [--case C ...] [--steps S] ...
      every side of a case as one long-lived process (`crackseg bench --paced`, `run --paced`),
      alternated one training step at a time; per-step ratios (paired.py).
  peer_bench.py paired-table RESULTS.jsonl
      the table of a paired run (no torch needed).
"""
import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import paired  # noqa: E402  (step-by-step alternation; no torch needed to import)


def crackseg_model_info(binary, section, side):
    args = [binary, "models", section["name"]] + [f"{k}={v}" for k, v in section.items() if k != "name"] + \
        ["--size", str(side), "--json"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    rows = json.loads(out)
    return rows[0]


def cmd_check(a):
    sys.path.insert(0, HERE)
    import models  # noqa: E402  (torch is imported here, not at module load)

    bad = 0
    for name in a.case or list(models.CASES):
        section, build, side, _batch, _out = models.CASES[name]
        info = crackseg_model_info(a.crackseg, section, side)
        m = build(a.perturb)
        p = models.num_params(m)
        macs = models.forward_macs_per_sample(m, side)
        c_macs = info["forward_gmacs_per_sample"] * 1e9
        ok_p = p == info["params"]
        ok_m = abs(macs - c_macs) <= 1e-6 * max(c_macs, 1.0)
        status = "ok" if ok_p and ok_m else "MISMATCH"
        print(f"{name:11s} params crackseg {info['params']:>10,} peer {p:>10,}   forward MACs/sample crackseg "
              f"{c_macs / 1e9:.4f} G peer {macs / 1e9:.4f} G   {status}")
        bad += not (ok_p and ok_m)
    if bad:
        print(f"peer_bench check: {bad} model(s) differ from crackseg's; the peer would not be the same network",
              file=sys.stderr)
        return 1
    return 0


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def status_mb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def peak_rss_mb():
    return status_mb("VmHWM")


def current_rss_mb():
    return status_mb("VmRSS")


def cmd_run(a):
    import torch

    sys.path.insert(0, HERE)
    import models

    torch.set_num_threads(a.threads)
    torch.manual_seed(126)
    section, build, side, batch, out_shape = models.CASES[a.case]
    reset_peak_rss()
    base_rss = current_rss_mb()  # the interpreter and torch's libraries, before the model exists
    model = build(0).train()
    x = torch.rand(batch, 3, side, side)
    target = (torch.rand(batch, *out_shape) < 0.1).float()
    if x.dim() == 4:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    try:
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
        adam = "fused"
    except (RuntimeError, TypeError, ValueError):
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, foreach=True)
        adam = "foreach"
    loss_fn = torch.nn.BCEWithLogitsLoss()
    fwd = torch.compile(model) if a.mode == "compile" else model
    # "bf16": PyTorch's own mixed precision on the CPU (eager, autocast to bfloat16: convolutions
    # and matmuls in bf16, fp32 master weights and loss), the peer of crackseg's precision = bf16.
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if a.mode == "bf16" else contextlib.nullcontext()

    times = []
    first_s = None
    cpu_timed = 0.0
    for s in range(a.warmup + a.steps):
        if a.paced and s >= a.warmup:  # the protocol of `crackseg bench --paced` (see cmd_paired)
            if s == a.warmup:
                print(json.dumps({"paced": "ready", "case": a.case, "mode": a.mode}), flush=True)
            if not sys.stdin.readline():
                print(f"peer_bench.py run --paced: stdin closed before timed step {s - a.warmup + 1}", file=sys.stderr)
                return 2
        t0 = time.perf_counter()
        c0 = time.process_time()
        opt.zero_grad(set_to_none=True)
        with autocast:
            y = fwd(x)
        loss = loss_fn(y.float(), target)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        if a.paced and s >= a.warmup:
            print(json.dumps({"paced": "step", "ms": dt * 1e3}), flush=True)
        if s == 0:
            first_s = dt
        if s >= a.warmup:
            times.append(dt)
            cpu_timed += time.process_time() - c0
    step = statistics.median(times)
    print(json.dumps({
        "side": "peer", "case": a.case, "mode": a.mode, "samples_per_s": batch / step, "step_ms": step * 1e3,
        "cpu_s_per_step": cpu_timed / a.steps,
        "first_step_s": first_s, "peak_rss_mb": peak_rss_mb(), "base_rss_mb": base_rss, "params": models.num_params(model),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "adam": adam, "batch": batch,
        "steps": a.steps, "loss_last": float(loss.detach()),
    }))
    return 0


def fmt_rate(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:.2f}"


def cmd_table(a):
    rows = [json.loads(l) for l in open(a.results) if l.strip().startswith("{")]
    cases = [c for c in ("unet", "spiral_net", "patch_cnn") if any(r["case"] == c for r in rows)]
    modes = [m for m in ("eager", "compile") if any(r.get("mode") == m for r in rows)]
    bf16_rows = [r for r in rows if r["side"] == "crackseg" and r.get("precision") == "bf16"]
    wino_rows = [r for r in rows if r["side"] == "crackseg" and r.get("conv_algorithm", "direct") == "winograd"]
    rows_all = rows
    rows = [r for r in rows if r.get("precision", "fp32") == "fp32" and r.get("mode") != "bf16" and
            r.get("conv_algorithm", "direct") == "direct"]
    unit = {"unet": "img/s", "spiral_net": "img/s", "patch_cnn": "patches/s"}
    label = {"unet": "unet base=16 @400, batch 4", "spiral_net": "spiral_net width 0.25 @255, batch 4",
             "patch_cnn": "patch_cnn 27x27, batch 128"}
    for c in cases:  # both sides must have timed the same network
        counts = {(r["side"], r.get("mode", "")): r["params"] for r in rows if r["case"] == c}
        if len(set(counts.values())) > 1:
            print(f"peer_bench table: {c}: parameter counts differ between runs: {counts}", file=sys.stderr)
            return 1
    peaks = [r["sgemm_peak_gflops"] for r in rows if r["side"] == "crackseg"]
    peak = statistics.median(peaks) if peaks else 0.0
    head = "| case | crackseg | " + " | ".join(f"PyTorch {m}" for m in modes) + \
        " | vs strongest peer | per repetition (min-max) | same per CPU-second | % of sgemm peak (crackseg / " + " / ".join(modes) + ") | peak RSS MB (crackseg / " + \
        " / ".join(modes) + ") |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    detail = []
    for c in cases:
        def sel(side, mode=None):
            return [r for r in rows if r["case"] == c and r["side"] == side and (mode is None or r.get("mode") == mode)]
        cs = sel("crackseg")
        if not cs:
            continue
        c_rate = statistics.median(r["samples_per_s"] for r in cs)
        c_rss = statistics.median(r["peak_rss_mb"] for r in cs)
        gflop = cs[0]["gflop_per_sample_step"]
        rates, pcts, rss = [], [f"{100 * gflop * c_rate / peak:.0f}%" if peak else "-"], [f"{c_rss:,.0f}"]
        best = 0.0
        for m in modes:
            ps = sel("peer", m)
            if not ps:
                rates.append("-"), pcts.append("-"), rss.append("-")
                continue
            v = statistics.median(r["samples_per_s"] for r in ps)
            best = max(best, v)
            rates.append(fmt_rate(v))
            pcts.append(f"{100 * gflop * v / peak:.0f}%" if peak else "-")
            rss.append(f"{statistics.median(r['peak_rss_mb'] for r in ps):,.0f}")
            detail.append(f"  {c} PyTorch {m}: " + ", ".join(fmt_rate(r["samples_per_s"]) for r in ps) +
                          f" (RSS before the model: {statistics.median(r.get('base_rss_mb', 0) for r in ps):,.0f} MB"
                          f"; first step {statistics.median(r.get('first_step_s', 0) for r in ps):.1f} s)")
        detail.append(f"  {c} crackseg: " + ", ".join(fmt_rate(r["samples_per_s"]) for r in cs))
        ratio = f"**{c_rate / best:.2f}x**" if best else "-"
        spread = rep_ratio_range(cs, runs_of(rows, c, is_fp32_peer))
        # Load-robust companion: samples per CPU-second (all threads), crackseg over the better peer.
        def per_cpu(rs):
            v = [r["batch"] / r["cpu_s_per_step"] for r in rs if r.get("cpu_s_per_step")]
            return statistics.median(v) if v else 0.0
        best_cpu = max([per_cpu(sel("peer", m)) for m in modes] + [0.0])
        ratio_cpu = f"{per_cpu(cs) / best_cpu:.2f}x" if best_cpu and per_cpu(cs) else "-"
        print(f"| {label[c]} | {fmt_rate(c_rate)} {unit[c]} | " + " | ".join(rates) + f" | {ratio} | {spread} | {ratio_cpu} | " +
              " / ".join(pcts) + " | " + " / ".join(rss) + " |")
    print()
    print(f"Medians over repetitions; sgemm peak (crackseg's dnnl_sgemm 2048^3, median): {peak:.1f} GFLOP/s. "
          "Every run (samples/s):")
    print("\n".join(detail))
    if bf16_rows:
        print_bf16_table(rows_all, cases, label, unit)
    if wino_rows:
        print_winograd_table(rows_all, cases, label, unit, peak)
    return 0


def rep_ratio_range(ours, peers):
    """crackseg over the strongest peer within each repetition (runs next to each other in
    time), as "min-max" over the repetitions both sides ran: how far a noisy host moved the
    ratio that the medians summarise."""
    ratios = []
    for k in sorted({r.get("rep") for r in ours if r.get("rep") is not None}):
        mine = [r["samples_per_s"] for r in ours if r.get("rep") == k]
        theirs = [r["samples_per_s"] for r in peers if r.get("rep") == k]
        if mine and theirs and max(theirs) > 0:
            ratios.append(statistics.median(mine) / max(theirs))
    return f"{min(ratios):.2f}-{max(ratios):.2f}x" if ratios else "-"


def runs_of(rows, case, pred):
    """The rows of one case that satisfy pred."""
    return [r for r in rows if r["case"] == case and pred(r)]


def median_of(rs, key="samples_per_s"):
    return statistics.median(r[key] for r in rs) if rs else 0.0


def is_fp32_direct(r):
    """A crackseg run with the defaults: fp32, direct convolutions."""
    return r["side"] == "crackseg" and r.get("precision", "fp32") == "fp32" and r.get("conv_algorithm", "direct") == "direct"


def is_fp32_peer(r):
    """A PyTorch fp32 run (eager or compiled)."""
    return r["side"] == "peer" and r.get("mode") in ("eager", "compile")


def strongest_fp32_peer(rows, case):
    """Median samples/s of the faster PyTorch fp32 mode (eager or compile) for one case."""
    return max(median_of(runs_of(rows, case, lambda r, m=m: is_fp32_peer(r) and r.get("mode") == m))
               for m in ("eager", "compile"))


def print_winograd_table(rows, cases, label, unit, peak):
    """crackseg fp32 with train.conv_algorithm = winograd against the strongest fp32 peer."""
    print()
    print("| case | crackseg fp32 Winograd | crackseg fp32 direct | strongest PyTorch fp32 | Winograd vs strongest peer | "
          "direct-convolution GFLOP/s as % of sgemm peak | peak RSS MB (Winograd / direct) |")
    print("|---|---|---|---|---|---|---|")
    detail = []
    for c in cases:
        w = runs_of(rows, c, lambda r: r["side"] == "crackseg" and r.get("conv_algorithm") == "winograd")
        d = runs_of(rows, c, is_fp32_direct)
        if not w:
            continue
        pf = strongest_fp32_peer(rows, c)
        cw, cd = median_of(w), median_of(d)
        pct = f"{100 * w[0]['gflop_per_sample_step'] * cw / peak:.0f}%" if peak else "-"
        ratio = f"**{cw / pf:.2f}x**" if pf else "-"
        print(f"| {label[c]} | {fmt_rate(cw)} {unit[c]} | {fmt_rate(cd) if cd else '-'} | {fmt_rate(pf) if pf else '-'} | "
              f"{ratio} | {pct} | {median_of(w, 'peak_rss_mb'):,.0f} / {median_of(d, 'peak_rss_mb') if d else 0:,.0f} |")
        detail.append(f"  {c} crackseg Winograd: " + ", ".join(fmt_rate(r["samples_per_s"]) for r in w) +
                      f" ({w[0].get('arithmetic', '')})")
    print()
    print("Winograd runs (samples/s):")
    print("\n".join(detail))


def print_bf16_table(rows, cases, label, unit):
    """crackseg precision = bf16 against PyTorch's bf16 autocast and the strongest fp32 peer."""
    print()
    print("| case | crackseg bf16 | crackseg fp32 | PyTorch bf16 autocast | strongest PyTorch fp32 | bf16 vs PyTorch bf16 | "
          "bf16 vs strongest fp32 peer | per repetition (min-max) | peak RSS MB (crackseg bf16 / PyTorch bf16) |")
    print("|---|---|---|---|---|---|---|---|---|")
    detail = []
    for c in cases:
        b = runs_of(rows, c, lambda r: r["side"] == "crackseg" and r.get("precision") == "bf16")
        p = runs_of(rows, c, lambda r: r["side"] == "peer" and r.get("mode") == "bf16")
        if not b:
            continue
        cb, cf, pb, pf = median_of(b), median_of(runs_of(rows, c, is_fp32_direct)), median_of(p), strongest_fp32_peer(rows, c)
        ratio = lambda x, y: f"**{x / y:.2f}x**" if x and y else "-"
        rss_p = f"{median_of(p, 'peak_rss_mb'):,.0f}" if p else "-"
        print(f"| {label[c]} | {fmt_rate(cb)} {unit[c]} | {fmt_rate(cf) if cf else '-'} | {fmt_rate(pb) if pb else '-'} | "
              f"{fmt_rate(pf) if pf else '-'} | {ratio(cb, pb)} | {ratio(cb, pf)} | "
              f"{rep_ratio_range(b, runs_of(rows, c, is_fp32_peer))} | "
              f"{median_of(b, 'peak_rss_mb'):,.0f} / {rss_p} |")
        detail.append(f"  {c} crackseg bf16: " + ", ".join(fmt_rate(r["samples_per_s"]) for r in b))
        if p:
            detail.append(f"  {c} PyTorch bf16 autocast: " + ", ".join(fmt_rate(r["samples_per_s"]) for r in p))
    print()
    print("bf16 runs (samples/s):")
    print("\n".join(detail))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("--crackseg", required=True)
    c.add_argument("--case", action="append", choices=["patch_cnn", "unet", "spiral_net"])
    c.add_argument("--perturb", type=int, default=0)
    r = sub.add_parser("run")
    r.add_argument("--case", required=True, choices=["patch_cnn", "unet", "spiral_net"])
    r.add_argument("--mode", default="eager", choices=["eager", "compile", "bf16"])
    r.add_argument("--steps", type=int, default=10)
    r.add_argument("--warmup", type=int, default=3)
    r.add_argument("--threads", type=int, default=os.cpu_count())
    r.add_argument("--paced", action="store_true", help="one timed step per line on stdin (see paired)")
    pr = sub.add_parser("paired")
    pr.add_argument("--crackseg", required=True)
    pr.add_argument("--case", action="append", choices=["patch_cnn", "unet", "spiral_net"])
    pr.add_argument("--modes", default="eager compile")
    pr.add_argument("--precisions", default="fp32")
    pr.add_argument("--steps", type=int, default=20)
    pr.add_argument("--warmup", type=int, default=3)
    pr.add_argument("--threads", type=int, default=os.cpu_count())
    pr.add_argument("--out", required=True)
    pr.add_argument("--settle-ms", type=float, default=50.0, help="pause before each step (idle spinners sleep)")
    pt = sub.add_parser("paired-table")
    pt.add_argument("results")
    t = sub.add_parser("table")
    t.add_argument("results")
    a = p.parse_args()
    return {"check": cmd_check, "run": cmd_run, "table": cmd_table, "paired": paired.cmd_paired,
            "paired-table": paired.cmd_paired_table}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
