"""One markdown row per evaluation JSON: total, basic, add-on (mean +- std over episodes), stat.

.venv/bin/python results/customization/table.py results/customization/probe2/*.json
.venv/bin/python results/customization/table.py results/sweeps/paper/*/*/result.json  (a sweep job's
    result.json: its last-checkpoint evaluation, named by the job)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    print("| run | total | basic | add-on | mean statistic | episodes |")
    print("|---|---|---|---|---|---|")
    for arg in sys.argv[1:]:
        ev = json.loads(Path(arg).read_text())
        job = Path(arg).parent
        name = f"{job.parent.name}/{job.name}" if "eval" in ev else Path(arg).stem
        ev = ev.get("eval", ev)
        cells = [f"{ev[k]['mean']:.1f} ± {ev[k]['std']:.1f}" for k in ("total", "basic", "addon")]
        print(
            f"| `{name}` | "
            + " | ".join(cells)
            + f" | {ev['statistic']['mean']:.3f} | {ev['episodes']} |"
        )


if __name__ == "__main__":
    main()
