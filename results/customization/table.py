"""One markdown row per evaluation JSON: total, basic, add-on (mean +- std over episodes), |theta|.

.venv/bin/python results/customization/table.py results/customization/probe2/*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    print("| run | total | basic | add-on | mean \\|θ\\| | episodes |")
    print("|---|---|---|---|---|---|")
    for arg in sys.argv[1:]:
        ev = json.loads(Path(arg).read_text())
        cells = [f"{ev[k]['mean']:.1f} ± {ev[k]['std']:.1f}" for k in ("total", "basic", "addon")]
        print(
            f"| `{Path(arg).stem}` | "
            + " | ".join(cells)
            + f" | {ev['statistic']['mean']:.3f} | {ev['episodes']} |"
        )


if __name__ == "__main__":
    main()
