"""Which iterate to keep, judged on the reported episodes: the last one, the one with the
highest median add-on return on the selection episodes (among those with the prior's
successes), and tailor's rule (the latest with the prior's successes; checkpoints every 8
iterations, i.e. every other one of the study's).

Usage: python results/import/selection_study/analyze.py [DATA_DIR]
"""

import glob
import json
import statistics
import sys
from pathlib import Path

data = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "data")


def outcome(prior: dict, chosen: dict) -> tuple[int, float, float, bool]:
    pb, pa = statistics.mean(prior["test"]["basic"]), statistics.mean(prior["test"]["addon"])
    b, a = statistics.mean(chosen["test"]["basic"]), statistics.mean(chosen["test"]["addon"])
    return chosen["step"], b / pb, a - pa, b >= 0.9 * pb and a > pa


for name in ("last", "max median add-on", "tailor's rule"):
    rows = []
    for f in sorted(glob.glob(str(data / "*.ck.json"))):
        runs = json.loads(Path(f).read_text())
        prior, need = runs[0], sum(runs[0]["sel"]["success"])
        ok = [r for r in runs if sum(r["sel"]["success"]) >= need]
        if name == "last":
            chosen = runs[-1]
        elif name == "max median add-on":
            chosen = max(ok, key=lambda r: (statistics.median(r["sel"]["addon"]), r["step"]))
        else:  # every 8 iterations (32768 steps) and the last
            every8 = [r for r in ok if r["step"] % 32768 == 0 or r is runs[-1] or r is prior]
            chosen = every8[-1]
        rows.append((Path(f).name.removesuffix(".ck.json"), *outcome(prior, chosen)))
    print(f"## {name}: {sum(r[4] for r in rows)} of {len(rows)} pass")
    for run, step, kept, gained, passed in rows:
        print(f"  {run:24s} step {step:6d}  kept {kept:6.1%}  add-on {gained:+7.1f}  "
              f"{'yes' if passed else 'NO'}")
