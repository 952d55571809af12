"""The prior of a customization: read once, then shaped into what each loop takes.

:func:`read_prior` reads the prior a customization starts from (once per run: the entry point
needs its metadata for the coefficient defaults, the runner its networks). A tailor DQN / SAC /
MCTS policy stays ``(meta, tensors)``; anything else is :func:`tailor.priors.load_prior`'s
object (a tailor PPO policy, an imported SB3 / rsl-rl / CleanRL / skrl file). The adapters turn
it into the loops' priors: :func:`q_prior` (residual soft DQN and MCTS), :func:`sac_prior`
(residual SAC); PPO takes :class:`~tailor.priors.PolicyPrior` objects as they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tailor.envs import Task
from tailor.errors import TailorError
from tailor.nets import EmpiricalNormalization, SquashedGaussianActor, mlp
from tailor.policyfile import (
    RQL_KINDS,
    check_task,
    load_rql_policy,
    policy_kind,
    prefixed,
    qnet_from,
    sac_actor,
    task_spaces,
)
from tailor.priors import PolicyPrior, QPrior, check_spaces, load_prior, prior_temperature
from tailor.priors.policies import BoltzmannQPrior, GSDEPrior, SquashedGaussianPrior

__all__ = [
    "LoadedPrior",
    "acting_q_prior",
    "describe_import",
    "q_prior",
    "read_prior",
    "sac_prior",
]

_Q_PRIORS = (
    "a Q-network or categorical prior: a tailor DQN run, an SB3 DQN with --prior-temperature "
    "TAU, an SB3 PPO/A2C on Discrete actions"
)
_SQUASHED_PRIORS = (
    "a tanh-squashed Gaussian prior: a tailor SAC run, an SB3 SAC or TQC policy (gSDE too)"
)


@dataclasses.dataclass(frozen=True)
class LoadedPrior:
    """A customization's prior, as read by :func:`read_prior`.

    Attributes:
        path: the prior's run directory or file, as given.
        options: the :func:`tailor.priors.load_prior` options given for it (``None`` dropped).
        meta: its metadata (the policy header of a tailor policy).
        policy: :func:`tailor.priors.load_prior`'s object; ``None`` for a tailor DQN / SAC /
            MCTS policy, which is ``tensors`` instead.
        tensors: the tensors of a tailor DQN / SAC / MCTS policy file.
    """

    path: str | Path
    options: Mapping[str, Any]
    meta: dict[str, Any]
    policy: Any = None
    tensors: dict[str, torch.Tensor] | None = None


def read_prior(path: str | Path, options: Mapping[str, Any]) -> LoadedPrior:
    """Read the prior at ``path`` (a clear TailorError when it is unreadable); the loaders'
    warnings (e.g. about an imported file's normalizer) are shown here, once."""
    if policy_kind(path) in RQL_KINDS:
        meta, tensors = load_rql_policy(path)
        return LoadedPrior(path, options, meta, tensors=tensors)
    policy = load_prior(path, **options)
    return LoadedPrior(path, options, dict(policy.meta), policy=policy)


def describe_import(meta: Mapping[str, Any]) -> str | None:
    """One line on an imported prior (``None`` for a tailor one): what it is and which
    observation normalizer it uses (the file, or why none), so that a run always says it."""
    source = meta.get("source")
    if not isinstance(source, dict):
        return None
    norm = meta.get("obs_normalizer") or {}
    if norm.get("file"):
        used = f"{norm['file']} ({norm.get('kind', '?')})"
    else:
        used = "none" + (f" ({norm['note']})" if norm.get("note") else "")
    what = f"{source.get('library', source.get('format', '?'))} {source.get('algorithm', '')}"
    return f"prior: {what.strip()} from {source.get('path', '?')}; observation normalizer: {used}"


def _tailor_rql(prior: LoadedPrior) -> bool:
    """Whether ``prior`` is a tailor DQN / SAC / MCTS policy; refuses ``--prior-*`` options for
    it (they only describe imported files)."""
    if prior.tensors is None:
        return False
    given = [k for k, v in prior.options.items() if v is not None]
    if given:
        raise TailorError(
            f"{', '.join('--prior-' + k for k in given)} only apply to imported priors; "
            f"{str(prior.path)!r} is a tailor checkpoint, which carries its own distribution"
        )
    return True


def _describe(prior: Any) -> str:
    """``"an SB3 PPO policy (gaussian)"``-like words for a loaded prior (error messages)."""
    source = prior.meta.get("source") or {}
    algorithm = source.get("algorithm", prior.meta.get("kind", "PPO"))
    who = f"{source.get('library', 'tailor')} {algorithm}"
    dist = (prior.meta.get("distribution") or {}).get("kind", "gaussian")
    return f"a {who} policy ({dist})"


def _imported(prior: LoadedPrior, task: Task, want: type, algo: str, accepted: str) -> Any:
    """The loaded ``prior.policy``, which must be a ``want`` whose sizes fit the task."""
    policy = prior.policy
    if not isinstance(policy, want):
        raise TailorError(
            f"--algo {algo} customizes {accepted}; {str(prior.path)!r} is {_describe(policy)}"
            + (
                "; customize Gaussian priors with --algo ppo"
                if isinstance(policy, PolicyPrior)
                else ""
            )
        )
    sp = task_spaces(task)
    check_spaces(policy, sp["obs_dim"], sp.get("n_actions", sp.get("act_dim", -1)), task.name)
    return policy


def _dqn_prior(prior: LoadedPrior, task: Task) -> QPrior:
    """The Q-network of a tailor soft-DQN prior at its temperature."""
    meta = prior.meta
    if meta.get("algo") != "dqn" or meta.get("has_prior"):
        raise TailorError(
            f"{str(prior.path)!r} is not a soft-DQN prior (algo "
            f"{meta.get('algo')!r}, method {meta.get('method')!r}); train one with "
            f"train_prior(..., algo='dqn')"
        )
    check_task(meta, task, prior.path)
    alpha = float(meta["coefficients"]["alpha_hat"])
    if alpha <= 0:
        raise TailorError(
            f"the prior {str(prior.path)!r} was trained at temperature 0: it has "
            f"no log-probabilities to customize with"
        )
    assert prior.tensors is not None
    return QPrior(qnet_from(prior.tensors, "q.", meta), alpha)


def q_prior(
    prior: LoadedPrior, task: Task, algo: str
) -> tuple[QPrior, dict[str, torch.Tensor], dict[str, Any]]:
    """The prior of a residual DQN / MCTS run: ``(QPrior the loop uses, the tensors the saved
    policy keeps to act, metadata)``.

    A tailor DQN prior is its Q-network at its temperature (``prior.*``). An imported one
    (:class:`~tailor.priors.policies.BoltzmannQPrior`: SB3 DQN with a temperature, SB3
    categorical PPO/A2C at temperature 1) becomes ``QPrior(Sequential(normalizer, qnet), tau)``,
    the same ``log_softmax(Q(norm(s)) / tau)``; it is saved as ``prior.*`` (the network),
    ``prior_norm.*`` (the frozen normalizer) and ``prior_net`` (hidden sizes, activation,
    normalizer formula), which :func:`acting_q_prior` reads back.
    """
    if _tailor_rql(prior):
        q = _dqn_prior(prior, task)
        tensors = {f"prior.{k}": v for k, v in q.qnet.state_dict().items()}
        return q, tensors, {"prior_alpha": q.alpha, "hidden_prior": list(prior.meta["hidden"])}
    p = _imported(prior, task, BoltzmannQPrior, algo, _Q_PRIORS)
    tensors = {f"prior.{k}": v for k, v in p.qnet.state_dict().items()}
    tensors.update({f"prior_norm.{k}": v for k, v in p.obs_norm.state_dict().items()})
    linears = [m for m in p.qnet.modules() if isinstance(m, torch.nn.Linear)]
    net = {
        "hidden": [m.out_features for m in linears[:-1]],
        "activation": p.meta.get("activation", "relu"),
        "normalizer": {"mode": p.obs_norm.mode, "eps": p.obs_norm.eps, "clip": p.obs_norm.clip},
    }
    meta = {
        "prior_alpha": p.temperature,
        "prior_net": net,
        "hidden_prior": net["hidden"],
        "prior_source": p.meta.get("source"),
    }
    qnet = torch.nn.Sequential(p.obs_norm, p.qnet).eval()
    return QPrior(qnet, p.temperature), tensors, meta


def acting_q_prior(meta: dict, tensors: dict) -> QPrior:
    """The prior a saved residual DQN / MCTS policy acts with (the inverse of :func:`q_prior`)."""
    alpha = float(meta["prior_alpha"])
    net = meta.get("prior_net")
    if net is None:
        hidden = meta.get("hidden_prior", meta["hidden"])
        return QPrior(qnet_from(tensors, "prior.", {**meta, "hidden": hidden}), alpha)
    obs_dim = int(meta["obs_dim"])
    qnet = mlp([obs_dim, *net["hidden"], int(meta["n_actions"])], net["activation"])
    qnet.load_state_dict(prefixed(tensors, "prior."))
    spec = net["normalizer"]
    norm = EmpiricalNormalization(
        obs_dim, eps=float(spec["eps"]), mode=spec["mode"], clip=spec["clip"]
    )
    norm.load_state_dict(prefixed(tensors, "prior_norm."))
    return QPrior(torch.nn.Sequential(norm, qnet).eval(), alpha)


def sac_prior(
    prior: LoadedPrior, task: Task
) -> tuple[Any, SquashedGaussianActor | None, dict[str, Any]]:
    """``(prior, actor_init, info)`` of a residual SAC run.

    A tailor SAC prior is its actor (copied and frozen by the loop, which also starts the
    customized actor from it). An imported SB3 SAC/TQC policy
    (:class:`~tailor.priors.policies.SquashedGaussianPrior`) gives ``log pi_prior`` with SB3's
    own formula, and its weights start the customized actor (``to_actor()``: the architecture
    always fits, as tailor's actor takes the prior's activation, log-std clamp and
    normalizer). ``info``: the default ``hidden`` of the critics and ``prior_alpha``.
    """
    if _tailor_rql(prior):
        pmeta = prior.meta
        if pmeta.get("algo") != "sac":
            raise TailorError(
                f"{str(prior.path)!r} is not a SAC prior (algo "
                f"{pmeta.get('algo')!r}); train one with train_prior(algo='sac')"
            )
        check_task(pmeta, task, prior.path)
        alpha = float(pmeta["coefficients"]["alpha_hat"])
        assert prior.tensors is not None
        return (
            sac_actor(pmeta, prior.tensors),
            None,
            {"hidden": tuple(pmeta["hidden"]), "prior_alpha": alpha},
        )
    squashed = (SquashedGaussianPrior, GSDEPrior)
    p = _imported(prior, task, squashed, "sac", _SQUASHED_PRIORS)
    if isinstance(p, GSDEPrior) and not p.squash:
        raise TailorError(
            f"--algo sac customizes {_SQUASHED_PRIORS}; {str(prior.path)!r} is a PPO/A2C gSDE "
            "policy without squash_output (unbounded Gaussian), which no tailor loop customizes"
        )
    sp = task_spaces(task)
    if not (
        np.allclose(p.low.numpy(), sp["action_low"])
        and np.allclose(p.high.numpy(), sp["action_high"])
    ):
        raise TailorError(
            f"the prior's action bounds [{p.low.tolist()}, {p.high.tolist()}] are not task "
            f"{task.name!r}'s [{sp['action_low']}, {sp['action_high']}]"
        )
    actor = p.to_actor()
    found = prior_temperature(p.meta)
    info = {
        "hidden": actor.hidden,
        "prior_alpha": found[0] if found else None,
        "prior_source": p.meta.get("source"),
    }
    return p, actor, info
