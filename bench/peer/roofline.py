#!/usr/bin/env python3
"""Roofline reading of a Spiral-Net `crackseg bench-layers --json` profile (issue 15).

  crackseg bench-layers --model spiral_net width=0.25 --size 255 --batch 4 --json > prof.json
  python3 bench/peer/roofline.py prof.json [--bandwidth GBps] [--peak GFLOPs]

For every layer it computes, from the Spiral-Net's shapes (src/models/spiral_net.cpp), the
FLOPs of one training step (forward + backward) and the fewest bytes that step must move
(fp32, every tensor read or written once per pass: conv forward reads input + weights and
writes output, backward-data reads dout + weights and writes din, backward-weights reads
input + dout and writes dW; batchnorm reads its input twice forward (statistics, apply) and
its input and dout twice backward; ReLU and concat one read and one write per pass), then
prints the arithmetic intensity (FLOP per byte), the achieved GFLOP/s and GB/s from the
profile, and the time shares grouped by layer kind and by resolution. Needs no torch.
"""
import argparse
import collections
import json
import sys

WIDTHS = [64, 128, 256, 512, 512, 512, 512]


def spiral_layers(width=0.25, depths=(1, 2, 3, 4, 5, 6, 7), side=255, batch=4):
    """(name, kind, flops, bytes, resolution) per layer for one training step."""
    w = [1] + [max(1, int(c * width)) for c in WIDTHS]
    out = []
    f4 = 4  # bytes per float

    def conv(name, kind, cin, cout, hin, hout, k=3):
        wn = cin * cout * k * k + cout
        macs = (hout * hout * cout * cin * k * k) if kind == "conv2d" else (hin * hin * cin * cout * k * k)
        macs *= batch
        xin, xout = batch * cin * hin * hin, batch * cout * hout * hout
        fwd = xin + wn + xout
        bwd_data = xout + wn + xin
        bwd_w = xin + xout + wn
        out.append((name, kind, 2 * 3 * macs, f4 * (fwd + bwd_data + bwd_w), hout))

    def elt(name, kind, c, h, reads_fwd, reads_bwd, flops_per=1):
        n = batch * c * h * h
        out.append((name, kind, flops_per * n, f4 * n * (reads_fwd + 1 + reads_bwd + 1), h))

    sizes = [side]
    for _ in range(7):
        sizes.append((sizes[-1] - 3) // 2 + 1)
    for k, d in enumerate(depths):
        p = f"m{k + 1}"
        cin = 3 if k == 0 else (1 if k == 1 else k)
        if k > 1:
            elt(p + ".concat", "concat", k, side, 1, 1, 0)
        for j in range(1, d + 1):
            q = f"{p}.enc{j}"
            conv(q + ".conv", "conv2d", cin, w[j], sizes[j - 1], sizes[j])
            elt(q + ".bn", "batchnorm2d", w[j], sizes[j], 2, 3, 10)
            elt(q + ".relu", "relu", w[j], sizes[j], 1, 2)
            cin = w[j]
        for j in range(d, 0, -1):
            q = f"{p}.dec{j}"
            conv(q + ".convt", "conv_transpose2d", w[j], w[j - 1], sizes[j], sizes[j - 1])
            elt(q + ".bn", "batchnorm2d", w[j - 1], sizes[j - 1], 2, 3, 10)
            elt(q + ".relu", "relu", w[j - 1], sizes[j - 1], 1, 2)
    elt("head.concat", "concat", len(depths), side, 1, 1, 0)
    conv("head", "conv2d", len(depths), 1, side, side, k=1)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("profile", help="crackseg bench-layers --json output (spiral_net)")
    ap.add_argument("--bandwidth", type=float, default=0.0, help="memory bandwidth in GB/s, for the ridge point")
    ap.add_argument("--peak", type=float, default=0.0, help="GFLOP/s peak (default: the profile's sgemm peak)")
    a = ap.parse_args()
    prof = next(json.loads(l) for l in open(a.profile) if l.strip().startswith("{"))
    times = {t["name"]: (t["forward_ms"] + t["backward_ms"]) / 1e3 for t in prof["layers"]}
    kinds = {t["name"]: t["kind"] for t in prof["layers"]}
    peak = a.peak or prof.get("sgemm_peak_gflops", 0.0)
    layers = spiral_layers(side=prof["size"], batch=prof["batch"])
    total_t = sum(times.values())
    by_kind = collections.defaultdict(lambda: [0.0, 0.0, 0.0])
    by_res = collections.defaultdict(lambda: [0.0, 0.0, 0.0])
    rows = []
    for name, kind, flops, nbytes, res in layers:
        if name not in times:  # fused into its producer (e.g. bn+relu): no pass of its own
            continue
        t = times[name]
        k = kinds[name]
        rows.append((name, k, flops, nbytes, t))
        for agg, key in ((by_kind, k), (by_res, res)):
            agg[key][0] += t
            agg[key][1] += flops
            agg[key][2] += nbytes
    print(f"spiral_net {prof['size']}x{prof['size']} batch {prof['batch']}: layers {total_t * 1e3:.1f} ms per step "
          f"(step median {prof['step_s_median'] * 1e3:.1f} ms); sgemm peak {peak:.1f} GFLOP/s"
          + (f", bandwidth {a.bandwidth:.1f} GB/s, ridge {peak / a.bandwidth:.1f} FLOP/byte" if a.bandwidth else ""))
    print("\nby kind:")
    print(f"{'kind':24s} {'share':>6s} {'ms':>8s} {'GFLOP':>8s} {'MB':>8s} {'FLOP/B':>7s} {'GFLOP/s':>8s} {'GB/s':>7s}")
    for k, (t, fl, by) in sorted(by_kind.items(), key=lambda kv: -kv[1][0]):
        print(f"{k:24s} {100 * t / total_t:5.1f}% {t * 1e3:8.2f} {fl / 1e9:8.3f} {by / 1e6:8.1f} {fl / by:7.2f} "
              f"{fl / t / 1e9:8.1f} {by / t / 1e9:7.1f}")
    print("\nby resolution (output side):")
    print(f"{'side':>5s} {'share':>6s} {'ms':>8s} {'GFLOP':>8s} {'MB':>8s} {'FLOP/B':>7s} {'GFLOP/s':>8s} {'GB/s':>7s}")
    for r, (t, fl, by) in sorted(by_res.items(), key=lambda kv: -kv[0]):
        print(f"{r:5d} {100 * t / total_t:5.1f}% {t * 1e3:8.2f} {fl / 1e9:8.3f} {by / 1e6:8.1f} {fl / by:7.2f} "
              f"{fl / t / 1e9:8.1f} {by / t / 1e9:7.1f}")
    print("\nslowest layers:")
    print(f"{'layer':22s} {'kind':20s} {'share':>6s} {'ms':>7s} {'FLOP/B':>7s} {'GFLOP/s':>8s} {'GB/s':>7s}")
    for name, k, fl, by, t in sorted(rows, key=lambda r: -r[4])[:15]:
        print(f"{name:22s} {k:20s} {100 * t / total_t:5.1f}% {t * 1e3:7.2f} {fl / by:7.2f} {fl / t / 1e9:8.1f} "
              f"{by / t / 1e9:7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
