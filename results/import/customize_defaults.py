"""Customize the RL Zoo's released agents with tailor's defaults (no coefficient flags) and check
that the prior's skill is kept: basic return >= 90% of the prior's, add-on return above the
prior's, per seed. Every number comes from `tailor customize` / `tailor evaluate` as a user
would type them (the commands are printed with the table).

Usage (a clone of DLR-RM/rl-trained-agents, kept out of this repository):
    .venv/bin/python results/import/customize_defaults.py ZOO_DIR --out DIR [--seeds 0 1 2]
        [--steps 200000] [--episodes 10] [--table results/import/customize_defaults.md]
Resumable: a run whose evaluation JSON exists is not run again.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

STD = ["--prior-std", "0.1"]  # a deterministic prior (ARS) needs the user's std, nothing else
AGENTS = [  # (label, zip inside the zoo, task, the flags the prior needs)
    ("PPO HalfCheetah", "ppo/HalfCheetah-v3_1/HalfCheetah-v3.zip", "halfcheetah-hindleg", []),
    ("PPO Hopper", "ppo/Hopper-v3_1/Hopper-v3.zip", "hopper-jump", []),
    ("SAC HalfCheetah", "sac/HalfCheetah-v3_1/HalfCheetah-v3.zip", "halfcheetah-hindleg", []),
    ("TQC Hopper", "tqc/Hopper-v3_1/Hopper-v3.zip", "hopper-jump", []),
    ("ARS HalfCheetah", "ars/HalfCheetah-v3_1/HalfCheetah-v3.zip", "halfcheetah-hindleg", STD),
    ("ARS Hopper", "ars/Hopper-v3_1/Hopper-v3.zip", "hopper-jump", STD),
]
TAILOR = str(Path(sys.executable).with_name("tailor"))


def sh(argv: list[str], log: Path) -> None:
    with log.open("a") as f:
        f.write("$ " + " ".join(argv) + "\n")
        f.flush()
        subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, check=True)


def evaluation(
    policy: str, task: str, episodes: int, out: Path, log: Path, flags: list[str]
) -> dict:
    if not out.is_file():
        sh([TAILOR, "evaluate", "--policy", policy, "--task", task, "--episodes", str(episodes),
            "--json", str(out), *flags], log)  # fmt: skip
    return json.loads(out.read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--table", type=Path)
    ap.add_argument(
        "--agents", nargs="+", help="only these agents' zips (e.g. ppo/Hopper-v3_1/Hopper-v3.zip)"
    )
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "commands.log"
    lines = [
        "| agent | task | seed | basic (prior) | basic | kept | add-on (prior) | add-on | gained "
        "| pass |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, rel, task, flags in AGENTS:
        if args.agents and rel not in args.agents:
            continue
        prior = str(args.zoo / rel)
        name = rel.split("/")[0] + "-" + task
        p = evaluation(prior, task, args.episodes, args.out / f"{name}-prior.json", log, flags)
        pb, pa = p["basic"]["mean"], p["addon"]["mean"]
        for seed in args.seeds:
            run = args.out / f"{name}-seed{seed}"
            ev_path = args.out / f"{name}-seed{seed}.json"
            if not ev_path.is_file():
                if run.exists():  # a killed attempt: start it over
                    subprocess.run(["rm", "-rf", str(run)], check=True)
                sh([TAILOR, "customize", "--task", task, "--prior", prior, "--steps",
                    str(args.steps), "--seed", str(seed), "--out", str(run), "--no-progress",
                    *flags], log)  # fmt: skip
            e = evaluation(str(run), task, args.episodes, ev_path, log, [])
            b, a = e["basic"]["mean"], e["addon"]["mean"]
            ok = b >= 0.9 * pb and a > pa
            lines.append(
                f"| {label} | {task} | {seed} | {pb:.1f} | {b:.1f} ± {e['basic']['std']:.1f} | "
                f"{b / pb:.1%} | {pa:.1f} | {a:.1f} ± {e['addon']['std']:.1f} | {a - pa:+.1f} | "
                f"{'yes' if ok else 'NO'} |"
            )
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n\nCommands: " + str(log) + "\n"
    if args.table:
        args.table.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
