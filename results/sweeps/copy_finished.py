"""Copy finished sweep jobs from a background sweep directory into this one (never over a result).

    python3 results/sweeps/copy_finished.py /work/bg/results/sweeps

For ``paper`` (Table II, five jobs per task and seed: prior, Greedy, KL, Residual, full policy) a
seed's jobs are copied only once all five have finished, so no table row pools a method over more
seeds than another. The files ``.gitignore`` leaves out (TensorBoard logs, optimizer state, the
copied prior, locks) are not copied. The sweep logs and each sweep's
``sweeps.jsonl`` are copied as they are.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter
from pathlib import Path

DST = Path(__file__).resolve().parent
IGNORE = shutil.ignore_patterns("tb", "trainer.safetensors", "prior", ".lock")


def task_seed(job: Path) -> tuple[str, str]:
    return job.parent.name, re.search(r"seed(\d+)$", job.name).group(1)


def main(src: Path) -> None:
    for sweep in ("paper", "1m"):
        done = [r.parent for r in sorted((src / sweep).glob("*/*/result.json"))]
        per_seed = Counter(task_seed(job) for job in done)
        n = 0
        for job in done:
            dst = DST / sweep / job.relative_to(src / sweep)
            whole = sweep != "paper" or per_seed[task_seed(job)] == 5
            if (dst / "result.json").exists() or not whole:
                continue
            if dst.exists():  # an unfinished attempt copied by hand: replaced by the finished job
                shutil.rmtree(dst)
            shutil.copytree(job, dst, ignore=IGNORE)  # the pattern also skips the snapshots' state
            print("copied", dst)
            n += 1
        for log in src.glob(f"{sweep}*.log"):
            shutil.copy(log, DST / log.name)
        shutil.copy(src / sweep / "sweeps.jsonl", DST / sweep / "sweeps.jsonl")  # the sweep record
        print(sweep, n, "new")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
