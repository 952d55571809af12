"""Copy finished sweep jobs from a background sweep directory into this one (never over a result).

    .venv/bin/python results/sweeps/copy_finished.py /work/bg/results/sweeps

For ``paper`` (Table II) a seed's jobs are copied only once every job the preset has for that task
and seed (prior, Greedy, KL, Residual, full policy: ``tailor.experiments.presets.expand``) has
finished, so no table row pools a method over more seeds than another. The files ``.gitignore``
leaves out (TensorBoard logs, optimizer state, the copied prior, locks) are not copied. The sweep
logs and each sweep's ``sweeps.jsonl`` are copied as they are.
"""

from __future__ import annotations

import shutil
import sys
from collections import defaultdict
from pathlib import Path

from tailor.experiments.presets import expand

DST = Path(__file__).resolve().parent
IGNORE = shutil.ignore_patterns("tb", "trainer.safetensors", "prior", ".lock")
# sweep directory -> the presets whose jobs it holds; a group is what must finish before copying
SWEEPS = {
    "paper": [("table2", "paper", True)],
    "1m": [("table1", "1m", False), ("table3", "1m", False)],
}


def main(src: Path) -> None:
    for sweep, presets in SWEEPS.items():
        groups: dict[tuple[str, int] | str, list[str]] = defaultdict(list)
        for preset, budget, whole_seeds in presets:
            for job in expand(preset, budget):
                groups[(job.task, job.seed) if whole_seeds else job.id].append(job.id)
        n = 0
        for ids in groups.values():
            if not all((src / sweep / i / "result.json").exists() for i in ids):
                continue
            for i in dict.fromkeys(ids):  # table3 shares its global-std jobs with table1
                dst = DST / sweep / i
                if (dst / "result.json").exists():
                    continue
                # an unfinished attempt copied by hand: the finished job replaces it
                if dst.exists():
                    shutil.rmtree(dst)
                shutil.copytree(src / sweep / i, dst, ignore=IGNORE)  # also skips snapshots' state
                print("copied", dst)
                n += 1
        for log in src.glob(f"{sweep}*.log"):
            shutil.copy(log, DST / log.name)
        shutil.copy(src / sweep / "sweeps.jsonl", DST / sweep / "sweeps.jsonl")  # the sweep record
        print(sweep, n, "new")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
