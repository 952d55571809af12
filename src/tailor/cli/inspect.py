"""``tailor inspect PRIOR``: what tailor reads from a prior file, and whether it fits a task.

Prints (and with ``--json F`` writes) the format, library and version, algorithm, network
(hidden sizes, activation), distribution (kind, std range or temperature), observation
normalizer, action bounds and, with ``--task``, whether the sizes fit the task and the
deterministic action on the task's first reset observation (seed 0).
"""

from __future__ import annotations

import argparse
from typing import Any

from tailor.cli.args import add_overwrite, check_output_arg, prior_path

__all__ = ["describe", "register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    from tailor.cli.rl import add_prior_arguments

    p = subparsers.add_parser(
        "inspect",
        help="describe a prior file (tailor, SB3, rsl-rl, CleanRL, skrl); check it against a task",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    p.add_argument(
        "prior", metavar="PRIOR", type=prior_path, help="the prior file or tailor run directory"
    )
    p.add_argument("--task", help="check the prior's sizes against this task (`tailor tasks`)")
    p.add_argument("--json", metavar="FILE", help="also write the description as JSON to FILE")
    add_overwrite(p, "the --json file")
    p.add_argument(
        "--tasks-file",
        metavar="FILE.py",
        help="a Python file that registers more tasks (tailor.envs.register_task)",
    )
    add_prior_arguments(p)
    p.set_defaults(func=cmd_inspect)


def _normalizer(obs_norm: Any, meta: dict[str, Any]) -> dict[str, Any]:
    info = dict(meta.get("obs_normalizer") or {})
    if obs_norm.eps == 0.0 and obs_norm.mode == "std_eps" and not float(obs_norm.count):
        info.setdefault("kind", "none")
        return info
    info.setdefault("kind", "tailor EmpiricalNormalization")
    formula = (
        "(x - mean) / sqrt(var + eps)"
        if obs_norm.mode == "var_eps"
        else "(x - mean) / (sqrt(var) + eps)"
    )
    if obs_norm.clip is not None:
        formula = f"clip({formula}, -clip, clip)"
    info.update(formula=formula, mode=obs_norm.mode, eps=obs_norm.eps, clip=obs_norm.clip)
    info["count"] = float(obs_norm.count)
    info["mean_range"] = [float(obs_norm.mean.min()), float(obs_norm.mean.max())]
    info["std_range"] = [float(obs_norm.var.sqrt().min()), float(obs_norm.var.sqrt().max())]
    return info


def describe(prior: Any) -> dict[str, Any]:
    """A JSON-able description of a loaded prior (see the module docstring)."""
    from tailor.experiments.algo_choice import customize_algos
    from tailor.priors import PolicyPrior, prior_temperature

    meta = dict(getattr(prior, "meta", {}) or {})
    source = dict(meta.get("source") or {})
    if not source:  # a tailor checkpoint
        source = {
            "format": "tailor",
            "library": "tailor",
            "version": meta.get("tailor_version"),
            "algorithm": f"PPO ({meta.get('method')})" if meta.get("method") else "PPO",
            "task": meta.get("task"),
        }
    out: dict[str, Any] = {
        **{k: source.get(k) for k in ("format", "library", "version", "algorithm")},
        "source": source,
        "obs_dim": prior.obs_dim,
        "act_dim": prior.act_dim,
    }
    arch = dict(meta.get("architecture") or {})
    if isinstance(prior, PolicyPrior):
        actor = prior.actor
        arch = {"hidden": list(actor.hidden), "activation": actor.activation}
        dist: dict[str, Any] = {"kind": "gaussian", "std_type": actor.std_type}
        if actor.bounded:  # e.g. SB3 TD3/DDPG: the deterministic action, its std the user's
            dist["kind"] = "gaussian around the mean squashed into the action bounds (tanh)"
        if actor.std_type == "global":
            std = actor.log_std.detach().exp()
            dist.update(std_min=float(std.min()), std_max=float(std.max()))
        out["customizable_with_ppo"] = True
    else:
        dist = dict(meta.get("distribution") or {})
        out["customizable_with_ppo"] = False
    if "activation_source" in meta:
        arch["activation_source"] = meta["activation_source"]
    out["architecture"] = arch
    out["distribution"] = {**dict(meta.get("distribution") or {}), **dist}
    out["normalizer"] = _normalizer(prior.obs_norm, meta)
    if meta.get("action_low") is not None:
        out["action_low"], out["action_high"] = meta["action_low"], meta.get("action_high")
    out["customize_with"] = customize_algos(prior)
    found = prior_temperature(meta)
    out["temperature"] = {"value": found[0], "source": found[1]} if found else None
    return out


def _task_check(prior: Any, task_name: str) -> dict[str, Any]:
    import gymnasium as gym
    import numpy as np
    import torch

    from tailor.envs import get_task

    task = get_task(task_name)
    env = gym.make(task.env_id, **task.env_kwargs)
    try:
        obs, _ = env.reset(seed=0)
        obs_dim = int(gym.spaces.flatdim(env.observation_space))
        space = env.action_space
        act_dim = int(space.n) if isinstance(space, gym.spaces.Discrete) else int(space.shape[0])
    finally:
        env.close()
    fits = (prior.obs_dim, prior.act_dim) == (obs_dim, act_dim)
    out: dict[str, Any] = {
        "task": task.name,
        "env_id": task.env_id,
        "task_obs_dim": obs_dim,
        "task_act_dim": act_dim,
        "fits": fits,
    }
    if fits:
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32).reshape(1, -1))
        with torch.no_grad():
            action = prior.act(x, deterministic=True)
        out["first_obs"] = [float(v) for v in x[0]]
        out["deterministic_action"] = np.asarray(action, dtype=np.float64).reshape(-1).tolist()
    return out


def _fmt_list(xs: Any, n: int = 6) -> str:
    xs = list(xs)
    body = ", ".join(f"{float(x):.4g}" for x in xs[:n])
    return f"[{body}{', ...' if len(xs) > n else ''}]"


def cmd_inspect(args: argparse.Namespace) -> int:
    from tailor.cli.rl import prior_options
    from tailor.envs import load_tasks_file
    from tailor.output import write_json
    from tailor.priors import load_acting_policy

    if args.json:
        check_output_arg(args, args.json)  # not the prior itself, nor an existing file
    if args.tasks_file:
        load_tasks_file(args.tasks_file)
    # a deterministic policy is still worth describing: say what it needs to be a prior
    prior, missing = load_acting_policy(args.prior, **prior_options(args))
    info = describe(prior)
    if missing is not None:
        flag = f"--prior-{missing}"
        info["needs"] = f"{flag}: a deterministic policy, a prior only with a {missing}"
    if args.task:
        info["task_check"] = _task_check(prior, args.task)
    arch, dist, norm = info["architecture"], info["distribution"], info["normalizer"]
    print(f"{args.prior}")
    print(f"  format        {info['format']} ({info['library']} {info['version']})")
    print(f"  algorithm     {info['algorithm']}")
    print(f"  sizes         obs {info['obs_dim']}, action {info['act_dim']}")
    act_src = f" ({arch['activation_source']})" if "activation_source" in arch else ""
    print(f"  network       hidden {arch.get('hidden')}, {arch.get('activation')}{act_src}")
    line = dist.get("kind", "?")
    if "std_min" in dist:
        line += f", std in [{dist['std_min']:.4g}, {dist['std_max']:.4g}]"
    if "temperature" in dist:
        line += f", temperature {dist['temperature']:g}"
    if missing is not None:
        line = f"deterministic: a prior only with --prior-{missing} (its action is the mean)"
    print(f"  distribution  {line}")
    desc = norm.get("kind", "none")
    if norm.get("formula"):
        desc += f": {norm['formula']}, eps {norm.get('eps'):g}"
        if norm.get("clip") is not None:
            desc += f", clip {norm['clip']:g}"
    print(f"  normalizer    {desc}")
    if "action_low" in info:
        low, high = _fmt_list(info["action_low"]), _fmt_list(info["action_high"])
        print(f"  action bounds {low} .. {high}")
    print(f"  PPO prior     {'yes' if info['customizable_with_ppo'] else 'no'}")
    algos = info["customize_with"]
    given = f" (with --prior-{missing})" if missing is not None and algos else ""
    print(f"  customize     {', '.join('--algo ' + a for a in algos) if algos else 'no'}{given}")
    if info["temperature"] is not None:
        t = info["temperature"]
        print(f"  temperature   {t['value']:g} ({t['source']})")
    if "task_check" in info:
        tc = info["task_check"]
        verdict = (
            "fits"
            if tc["fits"]
            else f"does NOT fit (the prior has obs {info['obs_dim']}, action {info['act_dim']})"
        )
        print(
            f"  task          {tc['task']} (obs {tc['task_obs_dim']}, action "
            f"{tc['task_act_dim']}): {verdict}"
        )
        if tc["fits"]:
            print(f"  first action  {_fmt_list(tc['deterministic_action'])}")
    if args.json:
        write_json(args.json, info)
        print(f"  wrote {args.json}")
    return 0
