"""Aggregate the sweep of ``run_sweep.sh`` into ``tradeoff.md`` (table) and ``tradeoff.png``.

    .venv/bin/python results/lm/make_tradeoff.py

Reads ``results/lm/sweep/<reward>__<method>__<seed>.json`` (written by ``tailor lm evaluate``)
and ``walltimes_<reward>.txt``; prints the markdown table (mean ± std over seeds).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
SWEEP = HERE / "sweep"
METHODS = ("prior", "residual", "kl", "greedy", "dpo", "ce-dpo", "decoupled-dpo")
KEYS = ("success", "prior_logp_per_token", "kl_to_prior", "distinct")


def load() -> dict[str, dict[str, list[dict]]]:
    runs: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for f in sorted(SWEEP.glob("*.json")):
        tag, method, _seed = f.stem.split("__")
        runs[tag][method].append(json.loads(f.read_text()))
    return runs


def walltimes() -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for f in SWEEP.glob("walltimes_*.txt"):
        for line in f.read_text().splitlines():
            name, sec = line.rsplit(" ", 1)
            kind = name.split("-")[0]
            # Longest names first: "-dpo-" is also inside "-ce-dpo-" and "-decoupled-dpo-".
            method = next(
                (m for m in sorted(METHODS, key=len, reverse=True) if f"-{m}-" in name), "prior"
            )
            out[f"{kind} {method}"] += float(sec)
            out["total"] += float(sec)
    return dict(out)


def table(runs) -> str:
    lines = []
    for by_method in runs.values():
        reward = next(iter(by_method.values()))[0]["reward"]
        lines += [
            f"\n### add-on reward `{reward}`\n",
            "| method | seeds | success | prior log-lik / token | KL to prior (nats/seq) "
            "| distinct |",
            "|---|---|---|---|---|---|",
        ]
        for m in METHODS:
            rs = by_method.get(m)
            if not rs:
                continue
            cells = []
            for k in KEYS:
                v = np.array([r[k] for r in rs])
                cells.append(f"{v.mean():.3f} ± {v.std():.3f}" if len(v) > 1 else f"{v[0]:.3f}")
            lines.append(f"| {m} | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(runs, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(runs), figsize=(5.5 * len(runs), 8), squeeze=False)
    colors = dict(zip(METHODS, plt.cm.tab10.colors, strict=False))
    markers = {
        "prior": "*",
        "residual": "o",
        "kl": "s",
        "greedy": "^",
        "dpo": "D",
        "ce-dpo": "v",
        "decoupled-dpo": "P",
    }
    for col, (_tag, by_method) in enumerate(runs.items()):
        reward = next(iter(by_method.values()))[0]["reward"]
        for row, (xkey, xlabel) in enumerate(
            (
                ("prior_logp_per_token", "prior log-lik per token (naturalness)"),
                ("kl_to_prior", "KL to prior (nats / sequence)"),
            )
        ):
            ax = axes[row][col]
            for m in METHODS:
                rs = by_method.get(m, [])
                if not rs:
                    continue
                x = [r[xkey] for r in rs]
                y = [r["success"] for r in rs]
                ax.scatter(x, y, color=colors[m], marker=markers[m], s=60, label=m, alpha=0.8)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("add-on success rate")
            ax.set_title(f"{reward}")
            ax.grid(alpha=0.3)
            if row == 0 and col == 0:
                ax.legend(fontsize=8)
    fig.suptitle("Customizing the names GPT-2: add-on success vs naturalness / KL (3 seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    runs = load()
    print(table(runs))
    print()
    for k, v in sorted(walltimes().items()):
        print(f"{k}: {v:.0f}s")
    plot(runs, HERE / "tradeoff.png")


if __name__ == "__main__":
    main()
