"""rsl-rl 1-3 training checkpoints (``model_*.pt``) read by tailor, against rsl-rl's own actor.

Usage: .venv/bin/python results/import/rsl_rl_check.py MODEL.pt [MODEL.pt ...] --activation elu

rsl-rl 1-3's ``ActorCritic`` (the one legged_gym and Isaac Lab 1.x trained with) is
``actor = Sequential(Linear, act, ..., Linear)`` and ``Normal(actor(obs), std)``; this script
rebuilds exactly that from the checkpoint's ``model_state_dict`` in plain torch (rsl-rl 5 no longer
ships the class) and prints the largest difference in the mean action and in
``log_prob(action).sum(-1)`` against tailor's prior on random observations.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from tailor.priors import load_prior


def rsl_actor(state: dict[str, torch.Tensor], activation: str) -> nn.Sequential:
    act = {"elu": nn.ELU, "relu": nn.ReLU, "tanh": nn.Tanh, "selu": nn.SELU}[activation]
    idx = sorted({int(k.split(".")[1]) for k in state if k.startswith("actor.")})
    mods: list[nn.Module] = []
    for n, i in enumerate(idx):
        w = state[f"actor.{i}.weight"]
        lin = nn.Linear(w.shape[1], w.shape[0])
        lin.load_state_dict({"weight": w, "bias": state[f"actor.{i}.bias"]})
        mods += [lin] if n == len(idx) - 1 else [lin, act()]
    return nn.Sequential(*mods)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--activation", default="elu")
    ap.add_argument("--n", type=int, default=64)
    args = ap.parse_args()
    for path in args.models:
        state = torch.load(path, map_location="cpu", weights_only=True)["model_state_dict"]
        actor = rsl_actor(state, args.activation)
        prior = load_prior(path, activation=args.activation)
        gen = torch.Generator().manual_seed(0)
        obs = torch.randn(args.n, prior.obs_dim, generator=gen)
        with torch.no_grad():
            mean = actor(obs)
            dist = torch.distributions.Normal(mean, state["std"].expand_as(mean))
            action = mean + 0.05 * torch.randn(mean.shape, generator=gen)
            d_mean = (prior.act(obs, deterministic=True) - mean).abs().max().item()
            d_logp = (prior.log_prob(obs, action) - dist.log_prob(action).sum(-1)).abs().max()
        print(
            f"{path}: obs {prior.obs_dim} -> action {prior.act_dim}, "
            f"hidden {prior.meta['architecture']['hidden']}, std "
            f"[{state['std'].min():.4g}, {state['std'].max():.4g}]; max |mean diff| = "
            f"{d_mean:.3g}, max |log-prob diff| = {float(d_logp):.3g}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
