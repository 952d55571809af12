"""Exact solvers: soft / KL-regularized value iteration and residual soft value iteration.

Soft Bellman operator at temperature ``alpha`` with an optional reference policy ``rho``::

    V(s)   = alpha * log sum_a rho(a|s) exp(Q(s, a) / alpha)     (rho uniform-weight 1 if absent)
    Q      = r + gamma * P V
    pi     ∝ rho * exp(Q / alpha)

Without ``rho`` this is max-entropy RL; with it, KL-regularized RL with ``rho`` as reference.
``alpha = 0`` is the hard max (ordinary value iteration). Residual soft VI (reference section 4)::

    Q_R    <- r_R + gamma * P [ alpha_hat * log sum_a exp((Q_R + omega' log pi_prior) / alpha_hat) ]
    pi_hat ∝ exp((Q_R + omega' log pi_prior) / alpha_hat)

It never sees the basic reward, only ``r_R`` (the add-on MDP's reward) and ``log pi_prior``.
"""

from __future__ import annotations

import numpy as np

from tailor.errors import TailorError
from tailor.numerics import logsumexp
from tailor.tabular.mdp import FiniteMDP, validate_policy

__all__ = [
    "logsumexp",
    "residual_soft_value_iteration",
    "soft_backup",
    "soft_value_iteration",
]

_MAX_ITERATIONS = 1_000_000


def _safe_log(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(p)


def soft_backup(logits: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Soft maximum of ``logits [S, A]`` at temperature ``alpha`` and its policy.

    Returns ``(V [S], pi [S, A])`` with ``V = alpha * logsumexp(logits / alpha)`` and
    ``pi = softmax(logits / alpha)``; for ``alpha = 0``, ``V = max`` and ``pi`` is greedy
    (ties split evenly, so the greedy policy is unique and comparable).
    """
    if alpha == 0.0:
        v = np.max(logits, axis=1)
        best = logits >= v[:, None] - 1e-12 * np.maximum(1.0, np.abs(v[:, None]))
        return v, best / best.sum(axis=1, keepdims=True)
    v = alpha * logsumexp(logits / alpha, axis=1)
    pi = np.exp((logits - v[:, None]) / alpha)
    return v, pi / pi.sum(axis=1, keepdims=True)


def _check_temperature(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise TailorError(f"{name} must be a number >= 0, got {value!r}")
    if not (np.isfinite(value) and value >= 0):
        raise TailorError(f"{name} must be finite and >= 0, got {value!r}")
    return float(value)


def _iterate(
    mdp: FiniteMDP, r: np.ndarray, offset: np.ndarray, alpha: float, tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed point of ``Q = r + gamma P V(Q + offset)``; returns ``(Q, pi)``.

    Stops when ``gamma/(1-gamma) * ||Q_{k+1} - Q_k||_inf < tol``, which bounds the distance to the
    fixed point by ``tol`` (the operator is a ``gamma``-contraction).
    """
    if not (np.isfinite(tol) and tol > 0):
        raise TailorError(f"tol must be a positive number, got {tol!r}")
    gamma = mdp.gamma
    q = np.zeros_like(r)
    scale = gamma / (1.0 - gamma) if gamma > 0 else 0.0
    for _ in range(_MAX_ITERATIONS):
        v, _ = soft_backup(q + offset, alpha)
        q_new = r + gamma * mdp.P @ v
        delta = np.max(np.abs(q_new - q))
        q = q_new
        if scale * delta < tol:
            break
    _, pi = soft_backup(q + offset, alpha)
    return q, pi


def soft_value_iteration(
    mdp: FiniteMDP,
    alpha: float,
    reference: np.ndarray | None = None,
    tol: float = 1e-12,
) -> tuple[np.ndarray, np.ndarray]:
    """Soft (or KL-regularized) value iteration to the fixed point.

    Args:
        mdp: the MDP; its reward ``r [S, A]`` is optimised.
        alpha: temperature ``>= 0``; 0 gives ordinary value iteration and a greedy policy.
        reference: optional reference policy ``rho [S, A]``; then the objective is
            ``E[sum_t gamma^t (r - alpha KL(pi || rho))]`` instead of the entropy-regularized one.
        tol: sup-norm distance to the fixed point at which to stop.

    Returns:
        ``(q [S, A], pi [S, A])``: the optimal soft q-function and policy.
    """
    alpha = _check_temperature("alpha", alpha)
    if reference is None:
        offset = np.zeros_like(mdp.r)
    else:
        rho = validate_policy(reference, mdp.n_states, mdp.n_actions, "reference")
        if alpha == 0.0:
            raise TailorError("a reference policy needs alpha > 0 (alpha = 0 ignores it)")
        offset = alpha * _safe_log(rho)
    return _iterate(mdp, mdp.r, offset, alpha, tol)


def residual_soft_value_iteration(
    addon_mdp: FiniteMDP,
    prior: np.ndarray,
    omega_prime: float,
    alpha_hat: float,
    tol: float = 1e-12,
) -> tuple[np.ndarray, np.ndarray]:
    """Residual soft value iteration (Residual Q-Learning, reference section 4).

    Args:
        addon_mdp: dynamics with the *add-on* reward ``r_R [S, A]`` (never the basic reward).
        prior: the prior policy ``pi [S, A]``; actions it never takes keep probability 0 when
            ``omega_prime > 0``.
        omega_prime: weight of ``log pi`` (``omega * alpha``).
        alpha_hat: temperature of the customized policy, ``>= 0``.
        tol: sup-norm distance to the fixed point at which to stop.

    Returns:
        ``(q_residual [S, A], pi_hat [S, A])`` with
        ``pi_hat ∝ exp((q_residual + omega' log pi) / alpha_hat)``.
    """
    alpha_hat = _check_temperature("alpha_hat", alpha_hat)
    if isinstance(omega_prime, bool) or not np.isfinite(omega_prime):
        raise TailorError(f"omega_prime must be a finite number, got {omega_prime!r}")
    pi = validate_policy(prior, addon_mdp.n_states, addon_mdp.n_actions, "prior")
    if omega_prime == 0.0:
        offset = np.zeros_like(pi)
    else:
        if omega_prime < 0 and np.any(pi == 0):
            raise TailorError("a negative omega_prime needs a prior with full support")
        offset = omega_prime * _safe_log(pi)
    return _iterate(addon_mdp, addon_mdp.r, offset, alpha_hat, tol)
