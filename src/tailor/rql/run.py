"""Entry points for the command line: train a prior, customize it, evaluate a policy.

Three plain functions (the CLI's ``--algo {dqn,sac,mcts}`` calls them)::

    train_prior(task, algo, steps, seed, out, *, method="soft", alpha=None) -> Path
    customize(task, algo, prior_dir, steps, seed, out, omega_prime=None, alpha_hat=None,
              *, method="residual") -> Path
    evaluate(policy_dir, task=None, episodes=50, seed=0) -> dict

A run directory holds ``policy.safetensors`` (tensors + the JSON metadata in its header, format
``"tailor-rql-policy"``) and ``policy.json`` (a readable copy). Tensor groups: ``q.*`` (a soft
Q-network or a residual ``Q_R``), ``prior.*`` (the prior Q-network a residual DQN or MCTS policy
needs to act), ``actor.*`` (a SAC actor). Metadata: ``algo``, ``task``, ``env_id``, ``method``,
``coefficients`` (``omega_prime``, ``alpha_hat``), ``prior_alpha``, ``obs_dim``, ``n_actions`` /
``act_dim``, ``hidden``, ``config``, ``steps``, ``seed``, ``train_stats``.

Coefficients left as ``None`` come from the task's ``coefficients`` (``soft`` / ``full`` for
training, the customization method's for customizing); MCTS falls back to the RQL paper's
``omega' = tau = 1`` when the task gives none.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from tailor.checkpoint import load_tensors, save_tensors, write_json
from tailor.envs import Task, get_task, make_env
from tailor.envs import classic as rql_tasks
from tailor.errors import TailorError
from tailor.methods import Method, resolve
from tailor.rql.mcts import (
    BatchedResidualMCTS,
    MCTSConfig,
    ResidualMCTS,
    TaskModel,
    batch_model,
    numpy_log_prior,
)
from tailor.rql.sac import SACConfig, SquashedGaussianActor, train_sac
from tailor.rql.soft_dqn import QPrior, SoftDQNConfig, mlp, train_soft_dqn

__all__ = [
    "ALGOS",
    "POLICY_FILE",
    "RQL_FORMAT",
    "customize",
    "evaluate",
    "is_rql_policy",
    "load_policy",
    "train_prior",
]

ALGOS = ("dqn", "sac", "mcts")
RQL_FORMAT = "tailor-rql-policy"
POLICY_FILE = "policy.safetensors"
_TRAIN_METHODS = ("soft", "full", "no-entropy")
_CUSTOM_METHODS = ("residual", "kl", "greedy")

Log = Callable[[str], None] | None


# ---------------------------------------------------------------------------------------------
# Coefficients and configs


def _method(
    task: Task,
    name: str,
    *,
    alpha: float | None = None,
    omega_prime: float | None = None,
    alpha_hat: float | None = None,
) -> Method:
    """Resolve ``name`` with explicit coefficients, else the task's defaults for it."""
    return task.method(name, alpha=alpha, omega_prime=omega_prime, alpha_hat=alpha_hat)


def _config(cls: type, steps: int, seed: int, overrides: dict[str, Any]) -> Any:
    fields = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise TailorError(
            f"unknown {cls.__name__} option(s) {', '.join(bad)}; known: {', '.join(sorted(fields))}"
        )
    kwargs = dict(overrides)
    if steps is not None and "total_steps" in fields:
        kwargs["total_steps"] = int(steps)
    kwargs["seed"] = int(seed)
    if "hidden" in kwargs:
        kwargs["hidden"] = tuple(int(h) for h in kwargs["hidden"])
    return cls(**kwargs)


def _check_algo(algo: str, allowed: tuple[str, ...]) -> None:
    if algo not in allowed:
        raise TailorError(
            f"--algo {algo!r} is not available here; choose one of {', '.join(allowed)}"
        )


def _check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise TailorError(f"steps must be a positive integer, got {steps!r}")
    return steps


# ---------------------------------------------------------------------------------------------
# Checkpoints


def _save(out: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    from tailor import __version__

    out = Path(out)
    full = {"format": RQL_FORMAT, "tailor_version": __version__, **meta}
    save_tensors(out / POLICY_FILE, tensors, full)
    write_json(out / "policy.json", full)
    return out


def _policy_file(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / POLICY_FILE
    if not path.is_file():
        raise TailorError(
            f"policy {str(path)!r} does not exist (expected a run directory "
            f"with a {POLICY_FILE} or the file itself)"
        )
    return path


def is_rql_policy(path: str | Path) -> bool:
    """Whether ``path`` (a run directory or a policy file) holds a DQN/SAC/MCTS policy.

    Lets ``tailor evaluate`` dispatch between this module and the PPO evaluator. Never raises:
    a missing or unreadable file is simply not an RQL policy.
    """
    try:
        with safe_open(str(_policy_file(path)), "pt") as f:
            raw = (f.metadata() or {}).get("tailor", "")
    except Exception:
        return False
    return f'"format": "{RQL_FORMAT}"' in raw


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _qnet_from(tensors: dict, prefix: str, meta: dict) -> torch.nn.Module:
    net = mlp(int(meta["obs_dim"]), int(meta["n_actions"]), meta["hidden"])
    net.load_state_dict(_prefixed(tensors, prefix))
    return net.eval()


def load_policy(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read an RQL run directory / policy file; returns ``(meta, tensors)``.

    Raises:
        TailorError: missing, truncated or foreign file
            (see :func:`tailor.checkpoint.load_tensors`).
    """
    tensors, meta = load_tensors(_policy_file(path), RQL_FORMAT)
    return meta, tensors


def _load_dqn_prior(prior_dir: str | Path, task: Task) -> tuple[QPrior, dict, dict]:
    meta, tensors = load_policy(prior_dir)
    if meta.get("algo") != "dqn" or meta.get("has_prior"):
        raise TailorError(
            f"{str(prior_dir)!r} is not a soft-DQN prior (algo "
            f"{meta.get('algo')!r}, method {meta.get('method')!r}); train one with "
            f"train_prior(..., algo='dqn')"
        )
    _check_task(meta, task, prior_dir)
    alpha = float(meta["coefficients"]["alpha_hat"])
    if alpha <= 0:
        raise TailorError(
            f"the prior {str(prior_dir)!r} was trained at temperature 0: it has "
            f"no log-probabilities to customize with"
        )
    return QPrior(_qnet_from(tensors, "q.", meta), alpha), meta, tensors


def _check_task(meta: dict, task: Task, path: str | Path) -> None:
    if meta.get("env_id") != task.env_id:
        raise TailorError(
            f"{str(path)!r} was trained on {meta.get('env_id')!r} (task "
            f"{meta.get('task')!r}), not on {task.env_id!r} of task {task.name!r}"
        )


def _spaces(task: Task) -> dict[str, Any]:
    env = make_env(task)
    try:
        out: dict[str, Any] = {"obs_dim": int(np.prod(env.observation_space.shape))}
        if hasattr(env.action_space, "n"):
            out["n_actions"] = int(env.action_space.n)
        else:
            out["act_dim"] = int(env.action_space.shape[0])
            out["action_low"] = env.action_space.low.tolist()
            out["action_high"] = env.action_space.high.tolist()
            out["obs_low"] = env.observation_space.low.tolist()
            out["obs_high"] = env.observation_space.high.tolist()
    finally:
        env.close()
    return out


def _meta(
    task: Task,
    algo: str,
    method: Method,
    cfg: Any,
    stats: dict,
    steps: int,
    seed: int,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "algo": algo,
        "task": task.name,
        "env_id": task.env_id,
        "method": method.name,
        "coefficients": {
            "omega_prime": method.spec.omega_prime,
            "alpha_hat": method.spec.alpha_hat,
        },
        **_spaces(task),
        "hidden": list(getattr(cfg, "hidden", ())),
        "config": dataclasses.asdict(cfg),
        "steps": steps,
        "seed": seed,
        "train_stats": stats,
        **extra,
    }


def _sac_actor(meta: dict, tensors: dict, prefix: str = "actor.") -> SquashedGaussianActor:
    actor = SquashedGaussianActor(
        int(meta["obs_dim"]),
        int(meta["act_dim"]),
        meta["hidden"],
        np.asarray(meta["action_low"]),
        np.asarray(meta["action_high"]),
        np.asarray(meta["obs_low"]),
        np.asarray(meta["obs_high"]),
    )
    actor.load_state_dict(_prefixed(tensors, prefix))
    return actor.eval()


# ---------------------------------------------------------------------------------------------
# The three entry points


def train_prior(
    task: Task | str,
    algo: str,
    steps: int,
    seed: int,
    out: str | Path,
    *,
    method: str = "soft",
    alpha: float | None = None,
    log: Log = print,
    **config: Any,
) -> Path:
    """Train a policy from scratch with soft DQN (``algo="dqn"``) or SAC (``algo="sac"``).

    Args:
        task: task or registered name (see ``tailor tasks``).
        algo: ``"dqn"`` (discrete actions) or ``"sac"`` (continuous actions).
        steps: environment steps.
        seed: seed of everything random in the run.
        out: run directory to write ``policy.safetensors`` / ``policy.json`` into.
        method: ``"soft"`` (basic reward: a prior), ``"full"`` (basic + add-on reward: the
            from-scratch baseline) or ``"no-entropy"`` (hard DQN / SAC at temperature 0).
        alpha: the temperature (default: the task's coefficient for ``method``).
        log: progress printer (``None``: silent).
        **config: fields of :class:`SoftDQNConfig` / :class:`SACConfig` to override.

    Returns:
        The run directory.

    Raises:
        TailorError: bad algo/method/steps, a task whose action space does not fit the algo.
    """
    torch.set_num_threads(1)
    task = get_task(task)
    _check_algo(algo, ("dqn", "sac"))
    if method not in _TRAIN_METHODS:
        raise TailorError(
            f"train_prior: method must be one of {', '.join(_TRAIN_METHODS)}, got {method!r}"
        )
    m = _method(task, method, alpha=alpha)
    steps = _check_steps(steps)
    if algo == "dqn":
        cfg = _config(SoftDQNConfig, steps, seed, config)
        qnet, stats = train_soft_dqn(task, m, cfg, log=log)
        tensors = {f"q.{k}": v for k, v in qnet.state_dict().items()}
    else:
        cfg = _config(SACConfig, steps, seed, config)
        actor, stats = train_sac(task, m, cfg, log=log)
        tensors = {f"actor.{k}": v for k, v in actor.state_dict().items()}
    return _save(out, tensors, _meta(task, algo, m, cfg, stats, steps, seed, has_prior=False))


def customize(
    task: Task | str,
    algo: str,
    prior_dir: str | Path,
    steps: int,
    seed: int,
    out: str | Path,
    omega_prime: float | None = None,
    alpha_hat: float | None = None,
    *,
    method: str = "residual",
    log: Log = print,
    **config: Any,
) -> Path:
    """Customize a prior to the task's add-on reward with residual soft DQN, SAC or MCTS.

    Args:
        task: the task (its add-on reward is what is optimised; the basic reward is never used).
        algo: ``"dqn"`` (prior from ``train_prior(algo="dqn")``), ``"sac"`` (prior from
            ``train_prior(algo="sac")``) or ``"mcts"`` (online search with a DQN prior; no
            training: ``steps`` is ignored and the run directory only stores the prior and the
            search settings).
        prior_dir: the prior's run directory (or its ``policy.safetensors``).
        steps: environment steps of customization (ignored for MCTS).
        seed: seed.
        out: run directory to write.
        omega_prime: weight of ``log pi_prior`` (default: the task's ``residual`` coefficient;
            for MCTS without task coefficients 1.0).
        alpha_hat: temperature of the customized policy (MCTS: the search temperature ``tau``).
        method: ``"residual"``, ``"kl"`` (``omega' = alpha_hat``) or ``"greedy"`` (``omega' =
            0``); MCTS is always residual.
        log: progress printer.
        **config: fields of :class:`SoftDQNConfig` / :class:`SACConfig` / :class:`MCTSConfig`.

    Returns:
        The run directory.

    Raises:
        TailorError: bad algo/method, a prior of the wrong kind or for another env.
    """
    torch.set_num_threads(1)
    task = get_task(task)
    _check_algo(algo, ALGOS)
    if method not in _CUSTOM_METHODS:
        raise TailorError(
            f"customize: method must be one of {', '.join(_CUSTOM_METHODS)}, got {method!r}"
        )
    if algo == "mcts":
        prior, pmeta, ptensors = _load_dqn_prior(prior_dir, task)
        defaults = task.coefficients.get("residual", {})
        omega = omega_prime if omega_prime is not None else defaults.get("omega_prime", 1.0)
        tau = alpha_hat if alpha_hat is not None else defaults.get("alpha_hat", 1.0)
        m = resolve("residual", omega_prime=omega, alpha_hat=tau)
        cfg = _config(
            MCTSConfig,
            None,
            seed,
            {**config, "omega_prime": m.spec.omega_prime, "tau": m.spec.alpha_hat},
        )
        tensors = {f"prior.{k}": v for k, v in prior.qnet.state_dict().items()}
        meta = _meta(
            task,
            "mcts",
            m,
            cfg,
            {},
            0,
            seed,
            has_prior=True,
            prior_alpha=prior.alpha,
            hidden_prior=pmeta["hidden"],
        )
        meta["hidden"] = pmeta["hidden"]
        return _save(out, tensors, meta)

    steps = _check_steps(steps)
    m = _method(task, method, omega_prime=omega_prime, alpha_hat=alpha_hat)
    if algo == "dqn":
        prior, pmeta, _ = _load_dqn_prior(prior_dir, task)
        cfg = _config(
            SoftDQNConfig,
            steps,
            seed,
            {"epsilon_start": 0.0, "epsilon_end": 0.0, "zero_init": True, **config},
        )
        q_r, stats = train_soft_dqn(task, m, cfg, prior=prior, log=log)
        tensors = {f"q.{k}": v for k, v in q_r.state_dict().items()}
        tensors.update({f"prior.{k}": v for k, v in prior.qnet.state_dict().items()})
        meta = _meta(
            task, "dqn", m, cfg, stats, steps, seed, has_prior=True, prior_alpha=prior.alpha
        )
    else:
        pmeta, ptensors = load_policy(prior_dir)
        if pmeta.get("algo") != "sac":
            raise TailorError(
                f"{str(prior_dir)!r} is not a SAC prior (algo "
                f"{pmeta.get('algo')!r}); train one with train_prior(algo='sac')"
            )
        _check_task(pmeta, task, prior_dir)
        prior_actor = _sac_actor(pmeta, ptensors)
        cfg = _config(SACConfig, steps, seed, {"hidden": tuple(pmeta["hidden"]), **config})
        actor, stats = train_sac(task, m, cfg, prior=prior_actor, log=log)
        tensors = {f"actor.{k}": v for k, v in actor.state_dict().items()}
        meta = _meta(
            task,
            "sac",
            m,
            cfg,
            stats,
            steps,
            seed,
            has_prior=False,
            prior_alpha=float(pmeta["coefficients"]["alpha_hat"]),
        )
    meta["prior"] = str(prior_dir)
    return _save(out, tensors, meta)


def _actor_fn(meta: dict, tensors: dict, task: Task, seed: int) -> tuple[Callable, Any]:
    """``act(obs, env) -> action`` for a loaded policy (greedy / deterministic)."""
    algo = meta.get("algo")
    if algo == "sac":
        actor = _sac_actor(meta, tensors)

        def act(obs, env):
            with torch.no_grad():
                return actor.mean_action(torch.as_tensor(obs, dtype=torch.float32)[None])[0].numpy()

        return act, None
    if algo == "dqn":
        q = _qnet_from(tensors, "q.", meta)
        omega = float(meta["coefficients"]["omega_prime"])
        prior = (
            QPrior(_qnet_from(tensors, "prior.", meta), float(meta["prior_alpha"]))
            if meta.get("has_prior")
            else None
        )

        def act(obs, env):
            o = torch.as_tensor(obs, dtype=torch.float32)[None]
            with torch.no_grad():
                z = q(o)[0]
                if prior is not None and omega != 0.0:
                    z = z + omega * prior.log_probs(o)[0]
            return int(torch.argmax(z))  # greedy: alpha_hat = 0

        return act, None
    if algo == "mcts":
        qnet = _qnet_from(tensors, "prior.", meta)
        fields = {f.name for f in dataclasses.fields(MCTSConfig)}
        cfg = MCTSConfig(**{k: v for k, v in meta["config"].items() if k in fields})
        cfg.seed = seed
        log_prior = numpy_log_prior(qnet, float(meta["prior_alpha"]))
        if cfg.batched:
            batched = BatchedResidualMCTS(batch_model(task), log_prior, cfg)
            return batched.act, batched
        model = TaskModel(task)
        search = ResidualMCTS(model, log_prior, cfg)

        def act(obs, env):
            model.sync(env)
            return search.act(obs)

        return act, search
    raise TailorError(f"unknown algo {algo!r} in the policy's metadata")


def evaluate(
    policy_dir: str | Path,
    task: Task | str | None = None,
    episodes: int = 50,
    seed: int = 0,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """Run ``episodes`` episodes of an RQL policy, acting greedily/deterministically.

    DQN: ``argmax(Q_R + omega' log pi)`` (``argmax Q`` for a prior); SAC: the squashed mean;
    MCTS: a search from the true state at every step. Episode ``i`` resets with ``seed + i``.

    Returns:
        ``{"total", "basic", "addon", "statistic", "length": {"mean", "std"},
        "success_rate", "episodes", "task", "statistic_name", "policy", "algo", "method",
        "wall_s", "per_episode": {"total", "basic", "addon", "statistic", "length", "success"}}``
        (``std`` over episodes, population); success as in :func:`tailor.envs.classic.success`.

    Raises:
        TailorError: bad ``episodes``, unreadable policy, a policy trained for another env.
    """
    torch.set_num_threads(1)
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise TailorError(f"episodes must be a positive integer, got {episodes!r}")
    meta, tensors = load_policy(policy_dir)
    task = get_task(task if task is not None else meta["task"])
    _check_task(meta, task, policy_dir)
    act, _ = _actor_fn(meta, tensors, task, seed)
    env = make_env(task)
    rows = []
    t0 = time.perf_counter()
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        basic = addon = stat = 0.0
        n = 0
        while True:
            obs, _, terminated, truncated, info = env.step(act(obs, env))
            basic += info["basic_reward"]
            addon += info["addon_reward"]
            stat += info["statistic"]
            n += 1
            if terminated or truncated or (max_steps is not None and n >= max_steps):
                break
        ok = rql_tasks.success(task, terminated, truncated, n, info)
        rows.append((basic + addon, basic, addon, stat / n, n, float(ok)))
    env.close()
    arr = np.asarray(rows, dtype=np.float64)

    def summary(x: np.ndarray) -> dict[str, float]:
        return {"mean": float(x.mean()), "std": float(x.std())}

    return {
        "total": summary(arr[:, 0]),
        "basic": summary(arr[:, 1]),
        "addon": summary(arr[:, 2]),
        "statistic": summary(arr[:, 3]),
        "length": summary(arr[:, 4]),
        "success_rate": float(arr[:, 5].mean()),
        "episodes": episodes,
        "task": task.name,
        "statistic_name": task.statistic_name,
        "policy": str(policy_dir),
        "algo": meta.get("algo"),
        "method": meta.get("method"),
        "seed": seed,
        "wall_s": time.perf_counter() - t0,
        "per_episode": {
            "total": arr[:, 0].tolist(),
            "basic": arr[:, 1].tolist(),
            "addon": arr[:, 2].tolist(),
            "statistic": arr[:, 3].tolist(),
            "length": arr[:, 4].astype(int).tolist(),
            "success": arr[:, 5].astype(bool).tolist(),
        },
    }
