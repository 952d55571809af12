"""Every RL-Zoo agent tailor reads, against Stable-Baselines3's own policy on the same inputs.

Usage (a clone of the public repository DLR-RM/rl-trained-agents, kept out of this one):
    .venv/bin/python results/import/zoo_exactness.py ZOO_DIR [--out results/import/zoo.md]

For each ``<algo>/<Env>_1/<Env>.zip``: tailor's ``load_prior`` (DQN with temperature 1, TD3/DDPG
with std 0.1: their priors need one), SB3's ``ALGO.load`` (spaces and schedules given as
``custom_objects``, so SB3 unpickles nothing either), then on 256 observations (standard normal,
through tailor's normalizer for both, so the comparison is of the networks and
distributions): the largest difference of the deterministic action and of ``log pi(a|s)`` of
actions SB3 samples (Gaussian, squashed, gSDE, categorical) or of the Q-values (DQN, QR-DQN).
Squashed (SAC/TQC) log-probs are compared where every |a| < 0.999 of the [-1, 1] range: tailor
inverts the tanh of the environment action, which float32 cannot do where |a| rounds to 1
(-1 in the table: no such sample among the 256).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from tailor.errors import TailorError
from tailor.priors import load_prior

ALGOS = {
    "a2c": "stable_baselines3:A2C",
    "ppo": "stable_baselines3:PPO",
    "sac": "stable_baselines3:SAC",
    "td3": "stable_baselines3:TD3",
    "ddpg": "stable_baselines3:DDPG",
    "dqn": "stable_baselines3:DQN",
    "tqc": "sb3_contrib:TQC",
    "trpo": "sb3_contrib:TRPO",
    "qrdqn": "sb3_contrib:QRDQN",
    "ars": "sb3_contrib:ARS",
}
OPTIONS = {"dqn": {"temperature": 1.0}, "qrdqn": {"temperature": 1.0}, "td3": {"std": 0.1},
           "ddpg": {"std": 0.1}, "ars": {"std": 0.1}}  # fmt: skip
DISCRETE_ARS = {"temperature": 1.0}  # ARS on Discrete actions: softmax(logits)


def ars_model(path: Path, prior) -> object:
    """sb3-contrib's own ARS policy class holding the file's weights. ``ARS.load`` cannot take
    the zoo's linear files: sb3-contrib < 1.7 saved a bare ``action_net.weight``, today's class
    a ``Sequential`` (``action_net.0.weight``) -- the same layer, renamed here."""
    from types import SimpleNamespace

    import gymnasium as gym
    from sb3_contrib.ars.policies import ARSLinearPolicy, ARSPolicy

    from tailor.priors.sb3 import read_sb3_zip

    _, state, _ = read_sb3_zip(path)
    arch = prior.meta["architecture"]
    obs = gym.spaces.Box(-np.inf, np.inf, (prior.obs_dim,), np.float32)
    if "action_low" in prior.meta:
        act = gym.spaces.Box(np.array(prior.meta["action_low"], np.float32),
                             np.array(prior.meta["action_high"], np.float32))  # fmt: skip
    else:
        act = gym.spaces.Discrete(int(prior.meta["distribution"]["n"]))
    bias = any(k.endswith(".bias") for k in state)
    if arch["hidden"]:
        pol = ARSPolicy(obs, act, net_arch=arch["hidden"], with_bias=bias,
                        squash_output=arch["squash_output"])  # fmt: skip
    else:
        pol = ARSLinearPolicy(obs, act, with_bias=bias, squash_output=arch["squash_output"])
    rename = {"action_net.weight": "action_net.0.weight", "action_net.bias": "action_net.0.bias"}
    pol.load_state_dict({rename.get(k, k): v for k, v in state.items()})
    return SimpleNamespace(policy=pol.eval())


def sb3_model(algo: str, path: Path, prior) -> object:
    import importlib

    import gymnasium as gym

    if algo == "ars":
        return ars_model(path, prior)
    module, name = ALGOS[algo].split(":")
    cls = getattr(importlib.import_module(module), name)
    obs = gym.spaces.Box(-np.inf, np.inf, (prior.obs_dim,), np.float32)
    meta = prior.meta
    if "action_low" in meta:
        act = gym.spaces.Box(np.array(meta["action_low"], np.float32),
                             np.array(meta["action_high"], np.float32))  # fmt: skip
    else:
        act = gym.spaces.Discrete(int(meta["distribution"]["n"]))
    custom = {"observation_space": obs, "action_space": act, "lr_schedule": lambda _: 0.0,
              "learning_rate": 0.0, "clip_range": lambda _: 0.2, "exploration_schedule":
              lambda _: 0.0, "replay_buffer_class": None, "clip_range_vf": None}  # fmt: skip
    return cls.load(path, custom_objects=custom, device="cpu")


def compare(algo: str, prior, model, obs_raw: torch.Tensor) -> tuple[float, float]:
    """(max |action diff|, max |log-prob or Q diff|)."""
    pol = model.policy
    obs = prior.obs_norm(obs_raw)
    with torch.no_grad():
        if algo in ("dqn", "qrdqn"):
            q_sb3 = pol.q_net(obs) if algo == "dqn" else pol.quantile_net(obs).mean(dim=1)
            q_ours = prior.qnet(obs)
            a = (q_sb3.argmax(-1) != q_ours.argmax(-1)).float().max()
            return float(a), float((q_sb3 - q_ours).abs().max())
        if algo == "ars" and "action_low" not in prior.meta:  # Discrete: the logits
            logits = pol.action_net(obs)
            a = (logits.argmax(-1) != prior.act(obs_raw).reshape(-1)).float().max()
            return float(a), float((prior.log_probs(obs_raw) - logits.log_softmax(-1)).abs().max())
        if algo == "ars":  # SB3's predict: rescale a squashed output, else clip to the bounds
            low, high = (torch.tensor(prior.meta[k]) for k in ("action_low", "action_high"))
            theirs, ours = pol(obs), prior.act(obs_raw, deterministic=True)
            if pol.squash_output:
                theirs = low + (theirs + 1) / 2 * (high - low)
            else:
                theirs, ours = theirs.clamp(low, high), ours.clamp(low, high)
            return float((ours - theirs).abs().max()), 0.0
        if algo in ("td3", "ddpg"):
            ours = prior.act(obs_raw, deterministic=True)
            theirs = model.policy.unscale_action(pol.actor(obs).numpy())
            return float(np.abs(ours.numpy() - theirs).max()), 0.0
        if algo in ("sac", "tqc"):
            mean, _, _ = pol.actor.get_action_dist_params(obs)
            theirs = pol.unscale_action(torch.tanh(mean).numpy())
            ours = prior.act(obs_raw, deterministic=True).numpy()
            # SB3's log-prob from its pre-squash sample (exact); tailor inverts the tanh, which
            # float32 cannot do where |a| rounds to 1: compare where every |a| < 0.999.
            sample, lp_sb3 = pol.actor.action_log_prob(obs)
            keep = sample.abs().amax(-1) < 0.999
            low, high = np.array(prior.meta["action_low"]), np.array(prior.meta["action_high"])
            env_action = torch.as_tensor(low + (sample.numpy() + 1) / 2 * (high - low)).float()
            lp = prior.log_prob(obs_raw, env_action)
            # tailor's log-density is of the action in environment units: SB3's is in [-1, 1]
            lp_theirs = lp_sb3 - float(np.log((high - low) / 2).sum())
            diff = (lp - lp_theirs)[keep].abs()
            return float(np.abs(ours - theirs).max()), float(diff.max()) if keep.any() else -1.0
        dist = pol.get_distribution(obs)
        sample = dist.sample()
        lp = (prior.log_prob(obs_raw, sample) - dist.log_prob(sample)).abs().max()
        if hasattr(dist.distribution, "mean") and "action_low" in prior.meta:
            a = (prior.act(obs_raw, deterministic=True) - dist.distribution.mean).abs().max()
        else:
            a = dist.distribution.logits.argmax(-1) != prior.act(obs_raw, True).reshape(-1)
            a = a.float().max()
        return float(a), float(lp)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    for z in sorted(args.zoo.glob("*/*_1/*.zip")):
        algo, env = z.parts[-3], z.stem
        if z.name == "best_model.zip" or algo not in ALGOS:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    prior = load_prior(z, **OPTIONS.get(algo, {}))
                except TailorError as exc:
                    if algo != "ars" or "Discrete" not in str(exc):
                        raise
                    prior = load_prior(z, **DISCRETE_ARS)
        except TailorError as exc:
            rows.append((algo, env, "-", "refused", str(exc).split(": ", 1)[-1][:90]))
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = sb3_model(algo, z, prior)
            obs = torch.randn(256, prior.obs_dim)
            da, dl = compare(algo, prior, model, obs)
            rows.append((algo, env, type(prior).__name__, f"{da:.1e}", f"{dl:.1e}"))
        except Exception as exc:  # SB3 itself cannot load it: say so, go on
            rows.append(
                (algo, env, type(prior).__name__, "sb3 failed", f"{type(exc).__name__}: {exc}"[:90])
            )
    lines = ["| algo | env | tailor prior | max action diff | max log-prob / Q diff |",
             "|---|---|---|---|---|"] + [f"| {' | '.join(r)} |" for r in rows]  # fmt: skip
    text = "\n".join(lines) + "\n"
    ok = sum(1 for r in rows if r[3] not in ("refused", "sb3 failed"))
    commit = subprocess.run(["git", "-C", str(args.zoo), "rev-parse", "HEAD"], text=True,
                            capture_output=True).stdout.strip() or "unknown"  # fmt: skip
    text += (f"\n{ok} of {len(rows)} compared; DLR-RM/rl-trained-agents at {commit}; command: "
             f"{' '.join(['.venv/bin/python', *sys.argv])}\n")  # fmt: skip
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
