"""Policy gradient for a tabular softmax policy, for every method of :mod:`tailor.methods`.

The policy is ``pi(a|s) = softmax(theta[s])``. A method contributes exactly what it contributes to
PPO: its reward ``r`` (basic, add-on or both), its :class:`~tailor.reward.RewardSpec` through
:func:`tailor.reward.reformulate`, and its loss entropy bonus ``c``. The update direction is the
expectation of the sampled estimator

    g = E[ sum_t gamma^t ( grad log pi(a_t|s_t) * G_t  +  c * grad H(pi(.|s_t)) ) ],
    G_t = sum_{t'>=t} gamma^{t'-t} reformulate(r, log pi_prior, log pi, spec)_{t'}

``estimator="exact"`` computes it in closed form; with ``theta[s, b]`` the logits,

    g[s, b] = d(s) * pi(b|s) * [ (f(s,b) - sum_a pi(a|s) f(s,a))
                                 - c * (log pi(b|s) - sum_a pi(a|s) log pi(a|s)) ]
    f       = r~ + gamma P v,    r~ = reformulate(r, log pi_prior, log pi, spec)  [S, A]
    v       = (I - gamma P_pi)^{-1} sum_a pi r~,   d = mu0^T (I - gamma P_pi)^{-1}  [S]

For the soft methods (``c = 0``) this is the exact gradient of ``J = mu0 . v``; End/Repeat-Entropy
add their bonus gradient with the visitation held fixed, exactly as their PPO losses do.
``estimator="sampled"`` runs Monte-Carlo episodes and computes the same expression from samples.

Fixed points (set ``g = 0``), which the tests check: Soft PG reaches
``pi ∝ exp(q^pi_alpha / alpha)``, the soft-optimal policy; End-Entropy
``pi ∝ exp(q^pi_0 / alpha)`` (future entropy ignored); Repeat-Entropy
``pi ∝ exp(q^pi_alpha / (2 alpha))`` (first-step entropy counted twice).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from tailor.errors import TailorError
from tailor.methods import METHODS, Method, resolve
from tailor.reward import reformulate
from tailor.tabular.mdp import FiniteMDP, validate_policy

__all__ = [
    "PGResult",
    "PGSettings",
    "exact_gradient",
    "method_reward",
    "objective_value",
    "policy_gradient",
    "softmax_policy",
]


@dataclass(frozen=True)
class PGResult:
    """Outcome of :func:`policy_gradient`; ``K`` = iterations.

    Attributes:
        pi: final policy ``[S, A]``.
        logits: final ``theta [S, A]``.
        objective: the method's regularized objective ``J = mu0 . v`` (exact) at every iterate
            ``k = 0..K``, shape ``[K+1]`` (``K`` < iterations when ``tol`` stopped it early).
        method: the resolved method.
    """

    pi: np.ndarray
    logits: np.ndarray
    objective: np.ndarray
    method: Method


@dataclass(frozen=True)
class PGSettings:
    """How :func:`policy_gradient` ascends.

    Attributes:
        iterations: number of gradient steps.
        lr: step size; the step at iteration ``k`` is ``lr / (1 + lr_decay * k)``.
        estimator: ``"exact"`` (closed-form expectation) or ``"sampled"`` (Monte Carlo).
        episodes: the Monte-Carlo batch of ``"sampled"``.
        horizon: the episodes' length for ``"sampled"`` (default: the smallest ``T`` with
            ``gamma^T <= 1e-4``).
        lr_decay: see ``lr``.
        tol: stop early once a step moves no logit by more than ``tol`` (exact estimator).
        seed: seeds the sampled estimator.
    """

    iterations: int = 1000
    lr: float = 1.0
    estimator: Literal["exact", "sampled"] = "exact"
    episodes: int = 256
    horizon: int | None = None
    lr_decay: float = 0.0
    tol: float = 0.0
    seed: int = 0


def softmax_policy(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(pi, log pi)`` of logits ``theta [S, A]``, both ``[S, A]``."""
    z = theta - theta.max(axis=1, keepdims=True)
    log_pi = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return np.exp(log_pi), log_pi


def method_reward(
    mdp: FiniteMDP, method: Method, addon_reward: np.ndarray | None = None
) -> np.ndarray:
    """The environment reward ``[S, A]`` a method optimises on ``mdp``.

    ``basic`` and ``addon`` methods optimise ``mdp.r`` (for a customization method ``mdp`` is the
    add-on MDP, whose reward is ``r_R``); ``full`` needs ``addon_reward`` and optimises
    ``mdp.r + addon_reward``.
    """
    if method.reward == "both":
        if addon_reward is None:
            raise TailorError(f"{method.name} optimises r + r_R: pass addon_reward [S, A]")
        addon = np.asarray(addon_reward, dtype=np.float64)
        if addon.shape != mdp.r.shape or not np.all(np.isfinite(addon)):
            raise TailorError(f"addon_reward must be finite with shape {mdp.r.shape}")
        return method.env_reward(mdp.r, addon)
    if addon_reward is not None:
        raise TailorError(f"{method.name} optimises one reward; addon_reward is only for 'full'")
    return mdp.r


def _evaluate(
    mdp: FiniteMDP,
    reward: np.ndarray,
    log_prior: np.ndarray | None,
    method: Method,
    pi: np.ndarray,
    log_pi: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(f [S, A], v [S], d [S])`` of the module docstring for policy ``pi``."""
    r_tilde = reformulate(reward, log_prior, log_pi, method.spec)
    M = np.eye(mdp.n_states) - mdp.gamma * np.einsum("sa,sat->st", pi, mdp.P)
    v = np.linalg.solve(M, np.sum(pi * r_tilde, axis=1))
    d = np.linalg.solve(M.T, mdp.mu0)
    return r_tilde + mdp.gamma * mdp.P @ v, v, d


def _direction(pi: np.ndarray, log_pi: np.ndarray, f: np.ndarray, bonus: float) -> np.ndarray:
    """Per-state ``pi * [(f - E_pi f) - c (log pi - E_pi log pi)]``, shape ``[S, A]``."""
    adv = f - np.sum(pi * f, axis=1, keepdims=True)
    if bonus:
        adv = adv - bonus * (log_pi - np.sum(pi * log_pi, axis=1, keepdims=True))
    return pi * adv


def exact_gradient(
    mdp: FiniteMDP,
    theta: np.ndarray,
    method: Method,
    reward: np.ndarray,
    log_prior: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Exact expected update direction ``g [S, A]`` and objective ``J`` at logits ``theta``."""
    pi, log_pi = softmax_policy(theta)
    f, v, d = _evaluate(mdp, reward, log_prior, method, pi, log_pi)
    return d[:, None] * _direction(pi, log_pi, f, method.entropy_bonus), float(mdp.mu0 @ v)


def objective_value(
    mdp: FiniteMDP,
    theta: np.ndarray,
    method: Method,
    reward: np.ndarray,
    log_prior: np.ndarray | None = None,
) -> float:
    """The method's regularized objective ``J = mu0 . v`` at logits ``theta`` (exact)."""
    pi, log_pi = softmax_policy(theta)
    _, v, _ = _evaluate(mdp, reward, log_prior, method, pi, log_pi)
    return float(mdp.mu0 @ v)


def _sampled_gradient(
    mdp: FiniteMDP,
    theta: np.ndarray,
    method: Method,
    reward: np.ndarray,
    log_prior: np.ndarray | None,
    batch: tuple[int, int],
    baseline: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Monte-Carlo estimate of the update direction from ``batch = (horizon, episodes)``:
    ``episodes`` episodes of ``horizon`` steps.

    Returns ``(g [S, A], states [T, N], returns [T, N])``; ``baseline [S]`` (a value estimate from
    earlier iterations, independent of this batch's actions) reduces variance without bias.
    """
    S, A = mdp.n_states, mdp.n_actions
    horizon, episodes = batch
    pi, log_pi = softmax_policy(theta)
    cum_pi = np.cumsum(pi, axis=1)
    cum_P = np.cumsum(mdp.P, axis=2)
    states = np.empty((horizon, episodes), dtype=np.int64)
    actions = np.empty((horizon, episodes), dtype=np.int64)
    s = np.searchsorted(np.cumsum(mdp.mu0), rng.uniform(size=episodes), side="right")
    s = np.minimum(s, S - 1)
    for t in range(horizon):
        a = np.minimum((cum_pi[s] < rng.uniform(size=episodes)[:, None]).sum(axis=1), A - 1)
        states[t], actions[t] = s, a
        nxt = (cum_P[s, a] < rng.uniform(size=episodes)[:, None]).sum(axis=1)
        s = np.minimum(nxt, S - 1)
    # The same call PPO makes: one reformulation of the whole rollout, behaviour log-probs.
    r_tilde = reformulate(
        reward[states, actions],
        None if log_prior is None else log_prior[states, actions],
        log_pi[states, actions],
        method.spec,
    )
    returns = np.empty_like(r_tilde)
    running = np.zeros(episodes)
    for t in reversed(range(horizon)):
        running = r_tilde[t] + mdp.gamma * running
        returns[t] = running
    weight = mdp.gamma ** np.arange(horizon)[:, None]
    adv = weight * (returns - baseline[states])
    g = np.zeros((S, A))
    onehot_minus_pi = -pi[states] * adv[..., None]  # [T, N, A]
    onehot_minus_pi[np.arange(horizon)[:, None], np.arange(episodes)[None, :], actions] += adv
    np.add.at(g, states, onehot_minus_pi)
    if method.entropy_bonus:
        grad_h = -pi * (log_pi - np.sum(pi * log_pi, axis=1, keepdims=True))  # [S, A]
        np.add.at(g, states, method.entropy_bonus * weight[..., None] * grad_h[states])
    return g / episodes, states, returns


def policy_gradient(
    mdp: FiniteMDP,
    variant: str,
    settings: PGSettings | None = None,
    *,
    prior: np.ndarray | None = None,
    addon_reward: np.ndarray | None = None,
    init_logits: np.ndarray | None = None,
    **coefficients: float | None,
) -> PGResult:
    """Gradient ascent on a tabular softmax policy with a method from :mod:`tailor.methods`.

    Args:
        mdp: the task; for a customization method (``greedy``, ``kl``, ``residual``) its reward is
            the add-on reward ``r_R``.
        variant: a method name (``no-entropy``, ``end-entropy``, ``repeat-entropy``, ``soft``,
            ``full``, ``greedy``, ``kl``, ``residual``).
        settings: iterations, step size, estimator (default :class:`PGSettings` ``()``).
        prior: prior policy ``[S, A]`` (customization methods). Required when the reward uses
            ``log pi_prior``; customization starts from its logits unless ``init_logits`` is given.
        addon_reward: ``r_R [S, A]`` for ``full``.
        init_logits: starting ``theta [S, A]`` (default: the prior's log-probs for customization
            methods, zeros = uniform otherwise).
        coefficients: the method's coefficients ``alpha``, ``omega_prime``, ``alpha_hat``,
            ``beta`` (see :func:`tailor.methods.resolve`; ``None`` ones are left out).

    Returns:
        :class:`PGResult`.
    """
    if variant not in METHODS:
        raise TailorError(f"unknown variant {variant!r}; known: {', '.join(METHODS)}")
    method = resolve(variant, **{k: v for k, v in coefficients.items() if v is not None})
    s = settings if settings is not None else PGSettings()
    iterations, lr, estimator, lr_decay = s.iterations, s.lr, s.estimator, s.lr_decay
    if estimator not in ("exact", "sampled"):
        raise TailorError(f"estimator must be 'exact' or 'sampled', got {estimator!r}")
    if not (isinstance(iterations, (int, np.integer)) and iterations >= 0):
        raise TailorError(f"iterations must be a non-negative integer, got {iterations!r}")
    if not (np.isfinite(lr) and lr > 0 and np.isfinite(lr_decay) and lr_decay >= 0):
        raise TailorError(f"lr must be > 0 and lr_decay >= 0, got {lr!r}, {lr_decay!r}")
    reward = method_reward(mdp, method, addon_reward)

    log_prior = None
    if prior is not None:
        prior = validate_policy(prior, mdp.n_states, mdp.n_actions, "prior")
        with np.errstate(divide="ignore"):
            log_prior = np.log(prior)
        if method.spec.uses_prior and not np.all(np.isfinite(log_prior)):
            raise TailorError("the prior must give every action a positive probability")
    elif method.spec.uses_prior or method.customization:
        raise TailorError(f"method {variant!r} customizes a prior policy: pass prior=[S, A]")

    if init_logits is not None:
        theta = np.array(init_logits, dtype=np.float64)
        if theta.shape != mdp.r.shape or not np.all(np.isfinite(theta)):
            raise TailorError(f"init_logits must be finite with shape {mdp.r.shape}")
    elif method.customization:
        theta = np.where(np.isfinite(log_prior), log_prior, -50.0)
    else:
        theta = np.zeros_like(mdp.r)

    rng = np.random.default_rng(s.seed)
    horizon = s.horizon
    if horizon is None:
        horizon = max(1, int(np.ceil(np.log(1e-4) / np.log(mdp.gamma)))) if mdp.gamma > 0 else 1
    baseline = np.zeros(mdp.n_states)
    objective = np.empty(iterations + 1)
    for k in range(iterations):
        if estimator == "exact":
            g, objective[k] = exact_gradient(mdp, theta, method, reward, log_prior)
        else:
            objective[k] = objective_value(mdp, theta, method, reward, log_prior)
            g, states, returns = _sampled_gradient(
                mdp, theta, method, reward, log_prior, (horizon, s.episodes), baseline, rng
            )
            # This batch's per-state mean return becomes the next iteration's baseline (first
            # half of the horizon only, where truncating the return costs at most gamma^(T/2)).
            half = max(1, horizon // 2)
            seen = np.bincount(states[:half].ravel(), minlength=mdp.n_states)
            total = np.bincount(
                states[:half].ravel(), weights=returns[:half].ravel(), minlength=mdp.n_states
            )
            baseline = np.where(seen > 0, total / np.maximum(seen, 1), baseline)
        step = lr / (1.0 + lr_decay * k) * g
        theta = theta + step
        if estimator == "exact" and np.max(np.abs(step)) < s.tol:
            objective = objective[: k + 2]
            break
    objective[-1] = objective_value(mdp, theta, method, reward, log_prior)
    pi, _ = softmax_policy(theta)
    return PGResult(pi, theta, objective, method)
