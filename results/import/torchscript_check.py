"""A TorchScript deploy export read by tailor (nothing in it run) against the file's own forward.

Usage: .venv/bin/python results/import/torchscript_check.py POLICY.pt [--n 64]

The oracle is ``torch.jit.load`` of the same file, which does run its code: use this script only
on a file you trust (here a public legged_gym export, kept out of this repository).
"""

from __future__ import annotations

import argparse

import torch

from tailor.priors import load_prior


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("policy")
    ap.add_argument("--n", type=int, default=64)
    args = ap.parse_args()
    prior = load_prior(args.policy, std=0.2)
    scripted = torch.jit.load(args.policy)
    obs = torch.randn(args.n, prior.obs_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (prior.act(obs, deterministic=True) - scripted(obs)).abs().max().item()
    arch = prior.meta.get("architecture", {})
    print(f"obs {prior.obs_dim} -> action {prior.act_dim}, hidden {arch.get('hidden')}, "
          f"{arch.get('activation')}; max |tailor - torch.jit forward| = {diff:.3g}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
