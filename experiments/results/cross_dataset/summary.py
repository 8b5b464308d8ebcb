#!/usr/bin/env python3
"""Study 5's summary: every `cross_dataset.md` under this folder (one per evaluation batch,
written by experiments/cross_dataset.sh), grouped by model family and training set, mean
over the seeds (the tasks) of F1 at the run's threshold and AP, per evaluation set.
The family and the loss come from each task's result.json in runs/sweeps when it is there
(the repository root is two folders up), else from the task's sweep name.
Usage: summary.py > summary.md"""
import glob, json, os, statistics

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.abspath(os.path.join(here, "..", "..", ".."))
rows = []
for md in sorted(glob.glob(os.path.join(here, "**", "cross_dataset.md"), recursive=True)):
    for line in open(md):
        c = [x.strip() for x in line.strip().strip("|").split("|")]
        if len(c) != 10 or not c[4].replace(".", "").isdigit():
            continue
        task, trained, on = c[0], os.path.basename(c[1]).replace(".h5", ""), c[2]
        fam, loss = task.split("/")[0], ""
        rj = os.path.join(root, "runs", "sweeps", task, "result.json")
        if os.path.exists(rj):
            cfg = json.load(open(rj))["config"]
            fam, loss = cfg["model"]["name"], cfg["loss"]["name"]
            if cfg["model"]["name"] == "patch_cnn":
                fam = "patch_cnn " + cfg["model"].get("padding", "")
        rows.append(dict(sweep=task.split("/")[0].replace("_reduced", ""), family=fam, loss=loss, trained=trained,
                         on=on, f1=float(c[4]), ap=c[8]))
sets = ["cfd", "masonry", "ceramic"]
names = {"cfd_study": "CrackForest", "masonry": "masonry", "masonry255": "masonry", "masonry256": "masonry",
         "ceramic": "ceramic", "cfd": "CrackForest"}
groups = {}
for r in rows:
    groups.setdefault((names.get(r["trained"], r["trained"]), r["family"], r["loss"], r["sweep"]), []).append(r)
print("| trained on | model | loss | sweep (budget) | tasks | " + " | ".join(f"F1 / AP on {names[s]}" for s in sets) + " |")
print("|---|---|---|---|---|" + "---|" * len(sets))
for (tr, fam, loss, sweep), rs in sorted(groups.items()):
    cells = []
    for s in sets:
        sel = [r for r in rs if r["on"] == s]
        if not sel:
            cells.append("-")
            continue
        f1 = statistics.mean(r["f1"] for r in sel)
        aps = [float(r["ap"]) for r in sel if r["ap"] not in ("-", "")]
        cells.append(f"{f1:.2f} / {statistics.mean(aps):.2f}" if aps else f"{f1:.2f} / -")
    n = max(sum(1 for r in rs if r["on"] == s) for s in sets)
    print(f"| {tr} | {fam} | {loss or '-'} | {sweep} | {n} | " + " | ".join(cells) + " |")
