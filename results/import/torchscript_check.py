"""TorchScript deploy exports read by tailor (nothing in them run) against the files' own forward.

Usage: .venv/bin/python results/import/torchscript_check.py POLICY.pt [POLICY.pt ...] [--n 64]

For each file: what tailor reads (or its refusal, as ``tailor inspect`` prints it), and the largest
difference between tailor's deterministic action and the file's own forward on ``--n`` random
observations. A file that stores no std is read with ``std=0.2`` (the std does not enter the
deterministic action); one that stores it (a scripted actor-critic) is read without. The oracle is
``torch.jit.load`` of the same file, which does run its code: use this script only on files you
trust (here public exports, kept out of this repository).
"""

from __future__ import annotations

import argparse

import torch

from tailor.errors import TailorError
from tailor.priors import load_prior


def check(path: str, n: int) -> str:
    try:
        try:
            prior, std = load_prior(path), "stored"
        except TailorError as exc:
            if "--prior-std" not in str(exc):
                raise
            prior, std = load_prior(path, std=0.2), "given 0.2"
    except TailorError as exc:
        return f"{path}: refused: {exc}"
    scripted = torch.jit.load(path)
    obs = torch.randn(n, prior.obs_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (prior.act(obs, deterministic=True) - scripted(obs)).abs().max().item()
    arch = prior.meta.get("architecture", {})
    dist = prior.meta.get("distribution", {})
    return (
        f"{path}: obs {prior.obs_dim} -> action {prior.act_dim}, hidden {arch.get('hidden')}, "
        f"{arch.get('activation')}, std {std} [{dist.get('std_min'):.4g}, "
        f"{dist.get('std_max'):.4g}]; max |tailor - torch.jit forward| = {diff:.3g}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("policy", nargs="+")
    ap.add_argument("--n", type=int, default=64)
    args = ap.parse_args()
    for path in args.policy:
        print(check(path, args.n))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
