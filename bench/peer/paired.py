"""crackseg against its PyTorch peer, alternated one training step at a time (issue 15).

Why: on a shared host the speed of a 2-core VM moves by tens of percent within a minute (the
sixteenth and seventeenth sessions saw one binary's Spiral-Net step go 160 -> 240 ms between
runs a minute apart). Alternating whole 10-step runs (peer_bench.py run / bench-peer.sh) lets
such a swing fall on one side only; its per-repetition ratios spread 1.2-1.7x. Here every side
of a case is one long-lived process that has done its untimed steps and waits; round i sends
each of them one "go" in turn (the order rotates every round) and reads back that step's
time, so the steps compared in a round are seconds apart. Each round gives a ratio per peer
(its step time over crackseg's in the same round); the table reports the median of those
ratios and the middle half of them (quartiles) next to the ratio of the median rates.

Protocol (both `crackseg bench --paced --json` and `peer_bench.py run --paced`): after the
untimed steps a line {"paced": "ready", ...}; then for each line read on stdin one timed step
and a line {"paced": "step", "ms": ...}; after the last timed step the usual result object.

Sides are started one after another (each one's start-up, the sgemm peak and torch.compile,
runs alone) and all stay alive for the whole case: memory is the sum of the sides' peaks.
"""
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


class Side:
    """One benchmark process speaking the --paced protocol."""

    def __init__(self, side, label, argv):
        self.side, self.label, self.times = side, label, []
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def _next(self, want):
        for line in self.proc.stdout:
            if not line.startswith("{"):
                continue
            j = json.loads(line)
            if (want is None and "paced" not in j) or j.get("paced") == want:
                return j
        rc = self.proc.wait()
        raise RuntimeError(f"{self.label}: exited with {rc} before its {want or 'result'} line")

    def ready(self):
        self._next("ready")

    def step(self):
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        self.times.append(float(self._next("step")["ms"]))

    def finish(self):
        r = self._next(None)
        self.proc.stdin.close()
        rc = self.proc.wait()
        if rc != 0:
            raise RuntimeError(f"{self.label}: exited with {rc}")
        r.update({"side": self.side, "paired": True, "step_ms_list": self.times})
        return r

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def sides_of(a, case):
    precisions = a.precisions.split()
    common = ["--steps", str(a.steps), "--warmup", str(a.warmup)]
    out = []
    for p in precisions:
        out.append(("crackseg", f"crackseg {p}", [a.crackseg, "bench", "--case", case, "--json", "--paced",
                                                  f"--threads={a.threads}", "--precision", p] + common))
    modes = a.modes.split() + (["bf16"] if "bf16" in precisions else [])
    for m in modes:
        out.append(("peer", f"PyTorch {m}", [sys.executable, os.path.join(HERE, "peer_bench.py"), "run", "--case",
                                             case, "--mode", m, "--paced", "--threads", str(a.threads)] + common))
    return out


def cmd_paired(a):
    cases = a.case or ["unet", "spiral_net", "patch_cnn"]
    with open(a.out, "w") as out:
        for case in cases:
            sides = []
            try:
                for side, label, argv in sides_of(a, case):
                    sides.append(Side(side, label, argv))
                    sides[-1].ready()
                for i in range(a.steps):
                    for k in range(len(sides)):
                        # The side that just ran has OpenMP workers spinning for a few ms before
                        # they sleep (libgomp's default wait policy); let them settle first.
                        time.sleep(a.settle_ms / 1e3)
                        sides[(i + k) % len(sides)].step()
                for s in sides:
                    r = s.finish()
                    r["case"] = case
                    out.write(json.dumps(r) + "\n")
                    out.flush()
                    print(f"# {case} {s.label}: median step {statistics.median(s.times):.1f} ms", flush=True)
            finally:
                for s in sides:
                    s.kill()
    return cmd_paired_table(a, a.out)


# ---- the table (no torch needed) ----------------------------------------------------------

def per_step_ratios(peer_ms, ours_ms):
    """Each round's peer step time over ours: how many times faster crackseg was then."""
    if len(peer_ms) != len(ours_ms) or not ours_ms:
        raise ValueError(f"paired runs of different lengths: {len(peer_ms)} and {len(ours_ms)} steps")
    return [p / o for p, o in zip(peer_ms, ours_ms)]


def summary(ratios):
    """(median, first quartile, third quartile) of the per-step ratios."""
    if len(ratios) < 2:
        return ratios[0], ratios[0], ratios[0]
    q1, q2, q3 = statistics.quantiles(ratios, n=4)
    return statistics.median(ratios), q1, q3


def rate(r):
    return r["batch"] / (statistics.median(r["step_ms_list"]) / 1e3)


def fmt(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:.2f}"


def cmd_paired_table(a, path=None):
    rows = [json.loads(l) for l in open(path or a.results) if l.strip()]
    cases = list(dict.fromkeys(r["case"] for r in rows))

    def find(case, side, key, value):
        for r in rows:
            if r["case"] == case and r["side"] == side and r.get(key) == value:
                return r
        return None

    unit = {"patch_cnn": "patches/s"}
    print("| case | crackseg fp32 | PyTorch eager / compile | strongest peer | vs strongest: median of per-step "
          "ratios | per-step ratios, middle half | ratio of median rates | steps | peak RSS MB (crackseg / peer) |")
    print("|---|---|---|---|---|---|---|---|---|")
    bf16_lines = []
    for case in cases:
        ours = find(case, "crackseg", "precision", "fp32")
        peers = [r for r in rows if r["case"] == case and r["side"] == "peer" and r.get("mode") in ("eager", "compile")]
        if not ours or not peers:
            continue
        strongest = max(peers, key=rate)
        med, q1, q3 = summary(per_step_ratios(strongest["step_ms_list"], ours["step_ms_list"]))
        rates = " / ".join(fmt(rate(p)) for p in peers)
        print(f"| {case} | {fmt(rate(ours))} {unit.get(case, 'img/s')} | {rates} | {strongest['mode']} | **{med:.2f}x** "
              f"| {q1:.2f}-{q3:.2f}x | {rate(ours) / rate(strongest):.2f}x | {len(ours['step_ms_list'])} "
              f"| {ours['peak_rss_mb']:,.0f} / {strongest['peak_rss_mb']:,.0f} |")
        ours16 = find(case, "crackseg", "precision", "bf16")
        auto = find(case, "peer", "mode", "bf16")
        if ours16:
            m1, a1, b1 = summary(per_step_ratios(strongest["step_ms_list"], ours16["step_ms_list"]))
            cell = "-"
            if auto:
                m2, a2, b2 = summary(per_step_ratios(auto["step_ms_list"], ours16["step_ms_list"]))
                cell = f"**{m2:.2f}x** ({a2:.2f}-{b2:.2f}x)"
            bf16_lines.append(f"| {case} | {fmt(rate(ours16))} | {fmt(rate(auto)) if auto else '-'} | **{m1:.2f}x** "
                              f"({a1:.2f}-{b1:.2f}x) | {cell} |")
    if bf16_lines:
        print()
        print("| case | crackseg bf16 | PyTorch bf16 autocast | bf16 vs strongest fp32 peer: median per step "
              "(middle half) | bf16 vs PyTorch bf16: median per step (middle half) |")
        print("|---|---|---|---|---|")
        print("\n".join(bf16_lines))
    print()
    print("Rates: batch over each side's median step. Strongest peer: the PyTorch fp32 mode with the higher median "
          "rate. Ratios: per round (one step of every side, order rotating), that peer's step time over crackseg's.")
    return 0
