"""Evaluate the prior and every checkpoint of a run deterministically: selection seeds (1e6) and test seeds (0); per episode."""
import sys, json
from pathlib import Path
import torch
torch.set_num_threads(1)
from tailor.experiments.evaluation import evaluate
run = Path(sys.argv[1]); task = sys.argv[2]
out = Path(str(run) + ".ck.json")
rows = []
cands = [("0", run / "prior")] + [(ck.name.split("-")[1], ck) for ck in sorted(run.glob("checkpoints/step-*"), key=lambda p: int(p.name.split("-")[1]))]
for step, ck in cands:
    r = {"step": int(step)}
    for name, seed in (("sel", 1_000_000), ("test", 0)):
        e = evaluate(str(ck), task, 10, seed=seed)
        r[name] = {k: e["per_episode"][k] for k in ("addon", "basic", "success", "length")}
    rows.append(r)
out.write_text(json.dumps(rows))
print("wrote", out)
