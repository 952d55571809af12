"""Residual Q-Learning as small pure functions (reference section 4).

The prior ``pi`` is fixed; the customized policy never sees the basic reward, only the add-on
reward ``r_R`` and ``log pi``. With ``omega' = omega * alpha``::

    V_R(s')    = alpha_hat * logsumexp_a' ((Q_R(s', a') + omega' log pi(a'|s')) / alpha_hat)
    Q_R(s, a) <- r_R + gamma * (1 - d) * V_R(s')
    pi_hat     = softmax((Q_R + omega' log pi) / alpha_hat)

``omega' = 0`` is plain soft Q-learning (how a prior is trained), ``alpha_hat = 0`` the hard max
(ordinary Q-learning, greedy policy). The same soft value is the node value of residual
max-entropy MCTS (there ``alpha_hat`` is the search temperature ``tau``).

Every function here works element-wise on numpy arrays *or* torch tensors (same type out as in),
so the deep algorithms (torch), the tabular exactness bridge and the tree search (numpy) call the
very same target code. Shapes: ``B`` is any batch shape (possibly empty), ``A`` the number of
actions.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from tailor.errors import TailorError
from tailor.tabular.solvers import logsumexp as _np_logsumexp

Array = TypeVar("Array", np.ndarray, torch.Tensor)

__all__ = [
    "prior_log_probs",
    "residual_logits",
    "sac_actor_loss",
    "sac_critic_target",
    "soft_policy",
    "soft_q_target",
    "soft_value",
]


def _check_temperature(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise TailorError(f"{name} must be a number >= 0, got {value!r}")
    if not (np.isfinite(value) and value >= 0):
        raise TailorError(f"{name} is a temperature and must be finite and >= 0, got {value!r}")
    return float(value)


def _check_omega(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise TailorError(f"omega_prime must be a real number, got {value!r}")
    if not np.isfinite(value):
        raise TailorError(f"omega_prime must be finite, got {value!r}")
    return float(value)


def residual_logits(q: Array, log_prior: Array | None, omega_prime: float) -> Array:
    """``Q_R + omega' * log pi``, the unnormalized customized preferences.

    Args:
        q: residual q-values ``[B..., A]``.
        log_prior: ``log pi(.|s)`` of the prior ``[B..., A]``; ignored (may be ``None``) when
            ``omega' == 0``, so that ``0 * log 0`` never produces NaN.
        omega_prime: weight of the prior's log-probabilities.

    Returns:
        ``[B..., A]``, same type as ``q``.
    """
    omega_prime = _check_omega(omega_prime)
    if omega_prime == 0.0:
        return q + 0.0
    if log_prior is None:
        raise TailorError(f"omega_prime={omega_prime} needs the prior's log-probabilities")
    if tuple(q.shape) != tuple(log_prior.shape):
        raise TailorError(
            f"q has shape {tuple(q.shape)} but log_prior has shape {tuple(log_prior.shape)}"
        )
    return q + omega_prime * log_prior


def soft_value(
    q: Array, log_prior: Array | None = None, omega_prime: float = 0.0, alpha_hat: float = 1.0
) -> Array:
    """Soft state value ``alpha_hat * logsumexp((Q_R + omega' log pi) / alpha_hat)`` over actions.

    ``alpha_hat = 0`` gives ``max_a (Q_R + omega' log pi)`` (the limit). This is the residual
    soft DQN bootstrap (``Q_R`` from the target network at ``s'``) and the residual max-entropy
    MCTS node value (``Q_R`` of the children, ``alpha_hat = tau``).

    Args:
        q: ``[B..., A]``.
        log_prior: ``[B..., A]`` or ``None`` when ``omega' == 0``.
        omega_prime: weight of ``log pi``.
        alpha_hat: temperature ``>= 0``.

    Returns:
        ``[B...]``.
    """
    alpha_hat = _check_temperature("alpha_hat", alpha_hat)
    z = residual_logits(q, log_prior, omega_prime)
    if isinstance(z, torch.Tensor):
        if alpha_hat == 0.0:
            return z.max(dim=-1).values
        return alpha_hat * torch.logsumexp(z / alpha_hat, dim=-1)
    z = np.asarray(z, dtype=np.float64)
    if alpha_hat == 0.0:
        return np.max(z, axis=-1)
    return alpha_hat * _np_logsumexp(z / alpha_hat, axis=-1)


def soft_policy(
    q: Array, log_prior: Array | None = None, omega_prime: float = 0.0, alpha_hat: float = 1.0
) -> Array:
    """Acting distribution ``softmax((Q_R + omega' log pi) / alpha_hat)``, shape ``[B..., A]``.

    ``alpha_hat = 0`` gives the greedy policy with ties split evenly (unique, comparable).
    """
    alpha_hat = _check_temperature("alpha_hat", alpha_hat)
    z = residual_logits(q, log_prior, omega_prime)
    if isinstance(z, torch.Tensor):
        if alpha_hat == 0.0:
            best = (z >= z.max(dim=-1, keepdim=True).values).to(z.dtype)
            return best / best.sum(dim=-1, keepdim=True)
        return torch.softmax(z / alpha_hat, dim=-1)
    z = np.asarray(z, dtype=np.float64)
    if alpha_hat == 0.0:
        best = (z >= np.max(z, axis=-1, keepdims=True)).astype(np.float64)
        return best / best.sum(axis=-1, keepdims=True)
    v = alpha_hat * _np_logsumexp(z / alpha_hat, axis=-1)
    p = np.exp((z - v[..., None]) / alpha_hat)
    return p / p.sum(axis=-1, keepdims=True)


def prior_log_probs(q_prior: Array, alpha: float) -> Array:
    """``log pi(.|s) = log_softmax(Q_prior / alpha)``: the Boltzmann policy of a soft Q-network.

    A soft-DQN prior trained at temperature ``alpha`` acts with this distribution; its log-probs
    are what enters the residual target. ``alpha`` must be ``> 0`` (a greedy prior has no
    usable log-probabilities).

    Args:
        q_prior: the prior's q-values ``[B..., A]``.
        alpha: the prior's temperature ``> 0``.

    Returns:
        ``[B..., A]``.
    """
    alpha = _check_temperature("alpha", alpha)
    if alpha == 0.0:
        raise TailorError("the prior's temperature alpha must be > 0 to define log pi")
    if isinstance(q_prior, torch.Tensor):
        return torch.log_softmax(q_prior / alpha, dim=-1)
    z = np.asarray(q_prior, dtype=np.float64) / alpha
    return z - _np_logsumexp(z, axis=-1)[..., None]


def _check_same(name: str, ref: Array, other: Array) -> None:
    if tuple(ref.shape) != tuple(other.shape):
        raise TailorError(
            f"{name} has shape {tuple(other.shape)}, expected {tuple(ref.shape)} (the reward's)"
        )


def soft_q_target(
    r: Array,
    done: Array,
    gamma: float,
    q_next: Array,
    log_prior_next: Array | None = None,
    omega_prime: float = 0.0,
    alpha_hat: float = 1.0,
) -> Array:
    """Residual soft DQN target::

        r + gamma (1-d) alpha_hat logsumexp((Q_R(s', .) + omega' log pi(.|s')) / alpha_hat)

    ``omega' = 0``: plain soft DQN target (prior training). ``alpha_hat = 0``: DQN's hard max.

    Args:
        r: reward of the transition ``[B]`` (``r_R`` when customizing).
        done: 1.0 where ``s'`` is terminal (not for a time-limit truncation) ``[B]``.
        gamma: discount in ``[0, 1]``.
        q_next: target-network residual q-values at ``s'`` ``[B, A]``.
        log_prior_next: ``log pi(.|s')`` ``[B, A]`` (``None`` when ``omega' == 0``).
        omega_prime: weight of ``log pi``.
        alpha_hat: temperature ``>= 0``.

    Returns:
        ``[B]``.
    """
    _check_same("done", r, done)
    v_next = soft_value(q_next, log_prior_next, omega_prime, alpha_hat)
    _check_same("the next-state value", r, v_next)
    return r + gamma * (1.0 - done) * v_next


def sac_critic_target(
    r: Array,
    done: Array,
    gamma: float,
    q1_next: Array,
    q2_next: Array,
    logp_next: Array,
    log_prior_next: Array | None = None,
    omega_prime: float = 0.0,
    alpha_hat: float = 1.0,
) -> Array:
    """Residual SAC critic target, ``a' ~ pi_theta(.|s')``::

        r + gamma (1-d) [min(Q1', Q2') + omega' log pi(a'|s') - alpha_hat log pi_theta(a'|s')]

    ``omega' = 0`` is plain SAC's target at fixed temperature ``alpha_hat``.

    Args:
        r, done: ``[B]`` (``done`` 1.0 for a true termination only).
        gamma: discount.
        q1_next, q2_next: target critics at ``(s', a')`` ``[B]``.
        logp_next: ``log pi_theta(a'|s')`` ``[B]``.
        log_prior_next: ``log pi(a'|s')`` of the prior ``[B]`` (``None`` when ``omega' == 0``).
        omega_prime, alpha_hat: coefficients (``alpha_hat >= 0``).

    Returns:
        ``[B]``.
    """
    alpha_hat = _check_temperature("alpha_hat", alpha_hat)
    for name, x in (
        ("done", done),
        ("q1_next", q1_next),
        ("q2_next", q2_next),
        ("logp_next", logp_next),
    ):
        _check_same(name, r, x)
    q_min = (
        torch.minimum(q1_next, q2_next)
        if isinstance(r, torch.Tensor)
        else np.minimum(q1_next, q2_next)
    )
    soft = residual_logits(q_min, log_prior_next, omega_prime) - alpha_hat * logp_next
    return r + gamma * (1.0 - done) * soft


def sac_actor_loss(
    logp: Array,
    q1: Array,
    q2: Array,
    log_prior: Array | None = None,
    omega_prime: float = 0.0,
    alpha_hat: float = 1.0,
) -> Array:
    """Residual SAC actor loss, mean over the batch, ``a ~ pi_theta(.|s)`` reparameterized::

        mean[ alpha_hat log pi_theta(a|s) - min(Q1, Q2)(s, a) - omega' log pi(a|s) ]

    Args:
        logp: ``log pi_theta(a|s)`` ``[B]``.
        q1, q2: critics at ``(s, a)`` ``[B]``.
        log_prior: ``log pi(a|s)`` of the prior ``[B]`` (``None`` when ``omega' == 0``).
        omega_prime, alpha_hat: coefficients.

    Returns:
        A scalar (0-d tensor / numpy float).
    """
    alpha_hat = _check_temperature("alpha_hat", alpha_hat)
    for name, x in (("q1", q1), ("q2", q2)):
        _check_same(name, logp, x)
    q_min = torch.minimum(q1, q2) if isinstance(logp, torch.Tensor) else np.minimum(q1, q2)
    per_sample = alpha_hat * logp - residual_logits(q_min, log_prior, omega_prime)
    return per_sample.mean()
