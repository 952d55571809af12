"""KL regularization averages q-values: MD-VI and its dual-averaging and Munchausen views.

Mirror-Descent Value Iteration MD-VI(lam, tau) (Vieillard et al. 2020; reference section 5)::

    pi_{k+1} = argmax_pi <pi, q_k> - lam KL(pi || pi_k) + tau H(pi)
             ∝ pi_k^beta exp(q_k / (lam + tau)),          beta = lam / (lam + tau)
    q_{k+1}  = r + gamma P (<pi_{k+1}, q_k> - lam KL(pi_{k+1} || pi_k) + tau H(pi_{k+1}))
               + eps_{k+1}

``eps_k`` is i.i.d. Gaussian noise of standard deviation ``noise_std`` on every ``(s, a)``, drawn
once per ``seed`` so that every scheme here sees the *same* draws. ``lam = tau = 0`` is plain
approximate value iteration (greedy policies). Starts from ``q_0 = 0`` and uniform ``pi_0``.

With ``tau = 0`` the policy is ``softmax(sum_{j<=k} q_j / lam)``: it acts on the *sum* (average)
of all past q's, so independent errors average out instead of accumulating.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tailor.errors import TailorError
from tailor.tabular.mdp import FiniteMDP, evaluate_policy
from tailor.tabular.solvers import logsumexp, soft_backup, soft_value_iteration

__all__ = [
    "MDVIHistory",
    "approximate_vi",
    "da_vi",
    "md_vi",
    "md_vi_bound",
    "mirror_descent_step",
    "munchausen_vi",
]


@dataclass(frozen=True)
class MDVIHistory:
    """What one run of a scheme produced; ``K`` = number of iterations.

    Attributes:
        policies: ``pi_k`` for ``k = 0..K``, shape ``[K+1, S, A]``.
        qs: the scheme's own ``q_k`` for ``k = 0..K``, shape ``[K+1, S, A]`` (for Munchausen VI
            these are the Munchausen q's, ``q_MD + lam log pi_k``).
        errors: ``||q*_tau - q^{pi_k}_tau||_inf`` for ``k = 0..K``, shape ``[K+1]``, where
            ``q*_tau`` is the ``tau``-entropy-regularized optimum and ``q^{pi_k}_tau`` the exact
            regularized value of ``pi_k`` (``tau = 0``: ordinary values).
        bound: the MD-VI bound of :func:`md_vi_bound` for ``k = 0..K`` (``nan`` at ``k = 0``, and
            everywhere when ``tau > 0`` or the scheme is not MD-VI with ``lam > 0``), ``[K+1]``.
        noise: the draws ``eps_1..eps_K``, shape ``[K, S, A]``.
        q_star: ``q*_tau``, shape ``[S, A]``.
    """

    policies: np.ndarray
    qs: np.ndarray
    errors: np.ndarray
    bound: np.ndarray
    noise: np.ndarray
    q_star: np.ndarray


def mirror_descent_step(
    q: np.ndarray, log_pi: np.ndarray, lam: float, tau: float
) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form greedy step of MD-VI.

    Solves ``max_pi <pi, q> - lam KL(pi || pi_k) + tau H(pi)`` per state.

    Args:
        q: ``q_k [S, A]``.
        log_pi: ``log pi_k [S, A]`` (may hold ``-inf`` for actions of probability 0).
        lam: KL weight ``>= 0``.
        tau: entropy weight ``>= 0``.

    Returns:
        ``(log pi_{k+1} [S, A], value [S])`` where ``pi_{k+1} ∝ pi_k^beta exp(q / (lam + tau))``
        and ``value`` is the maximum, ``(lam + tau) * log sum_a pi_k^beta exp(q / (lam + tau))``.
        With ``lam = tau = 0`` the step is greedy (ties split evenly) and ``value = max_a q``.
    """
    eta = lam + tau
    if eta == 0.0:
        v, pi = soft_backup(q, 0.0)
        with np.errstate(divide="ignore"):
            return np.log(pi), v
    beta = lam / eta
    # 0 * (-inf) would be nan: an action pi_k rules out stays ruled out only when beta > 0.
    prev = beta * log_pi if beta > 0 else np.zeros_like(log_pi)
    logits = prev + q / eta
    log_z = logsumexp(logits, axis=1)
    return logits - log_z[:, None], eta * log_z


def md_vi_bound(mdp: FiniteMDP, lam: float, noise: np.ndarray) -> np.ndarray:
    """Bound of reference section 5 for MD-VI with ``tau = 0``, for ``k = 0..K``.

    ``||q* - q_{pi_k}||_inf <= 2/(1-gamma) ||(1/k) sum_{j<=k} eps_j||_inf + 4/(1-gamma) v_max/k``
    with ``v_max = (r_max + lam log|A|) / (1 - gamma)``; ``nan`` at ``k = 0``.
    """
    gamma = mdp.gamma
    K = noise.shape[0]
    k = np.arange(1, K + 1)
    avg = np.cumsum(noise, axis=0) / k[:, None, None]
    v_max = (np.max(np.abs(mdp.r)) + lam * np.log(mdp.n_actions)) / (1.0 - gamma)
    b = 2.0 / (1.0 - gamma) * np.max(np.abs(avg), axis=(1, 2)) + 4.0 / (1.0 - gamma) * v_max / k
    return np.concatenate(([np.nan], b))


def _check(lam: float, tau: float, iterations: int, noise_std: float) -> None:
    for name, x in (("lam", lam), ("tau", tau), ("noise_std", noise_std)):
        if isinstance(x, bool) or not np.isfinite(x) or x < 0:
            raise TailorError(f"{name} must be finite and >= 0, got {x!r}")
    if not (isinstance(iterations, (int, np.integer)) and iterations >= 1):
        raise TailorError(f"iterations must be a positive integer, got {iterations!r}")


def _noise(mdp: FiniteMDP, iterations: int, noise_std: float, seed: int) -> np.ndarray:
    """The draws ``eps_1..eps_K`` ``[K, S, A]``; identical for every scheme given ``seed``."""
    rng = np.random.default_rng(seed)
    return noise_std * rng.standard_normal((iterations, mdp.n_states, mdp.n_actions))


def _history(
    mdp: FiniteMDP, tau: float, policies: list, qs: list, noise: np.ndarray, bound: np.ndarray
) -> MDVIHistory:
    q_star, _ = soft_value_iteration(mdp, tau)
    errors = np.array(
        [np.max(np.abs(q_star - evaluate_policy(mdp, pi, tau)[0])) for pi in policies]
    )
    return MDVIHistory(np.array(policies), np.array(qs), errors, bound, noise, q_star)


def md_vi(
    mdp: FiniteMDP,
    lam: float,
    tau: float,
    iterations: int,
    noise_std: float = 0.0,
    seed: int = 0,
) -> MDVIHistory:
    """Mirror-Descent VI(lam, tau) with noisy evaluation steps (see the module docstring)."""
    _check(lam, tau, iterations, noise_std)
    noise = _noise(mdp, iterations, noise_std, seed)
    S, A = mdp.n_states, mdp.n_actions
    q = np.zeros((S, A))
    log_pi = np.full((S, A), -np.log(A))
    policies, qs = [np.exp(log_pi)], [q]
    for k in range(iterations):
        log_pi, value = mirror_descent_step(q, log_pi, lam, tau)
        q = mdp.r + mdp.gamma * mdp.P @ value + noise[k]
        policies.append(np.exp(log_pi))
        qs.append(q)
    if tau == 0.0 and lam > 0.0:
        bound = md_vi_bound(mdp, lam, noise)
    else:
        bound = np.full(iterations + 1, np.nan)
    return _history(mdp, tau, policies, qs, noise, bound)


def approximate_vi(
    mdp: FiniteMDP, iterations: int, noise_std: float = 0.0, seed: int = 0
) -> MDVIHistory:
    """Plain approximate VI: ``q_{k+1} = r + gamma P max_a q_k + eps_{k+1}`` (MD-VI with 0, 0)."""
    return md_vi(mdp, 0.0, 0.0, iterations, noise_std, seed)


def da_vi(
    mdp: FiniteMDP,
    lam: float,
    tau: float,
    iterations: int,
    noise_std: float = 0.0,
    seed: int = 0,
) -> MDVIHistory:
    """Dual-averaging view of MD-VI: the policy is a softmax of a weighted *average* of q's.

    ``h_k = (1-beta)/(1-beta^{k+1}) sum_{j<=k} beta^{k-j} q_j`` (the plain average
    ``(1/(k+1)) sum_j q_j`` when ``tau = 0``), ``pi_{k+1} = softmax(h_k / tau_{k+1})`` with
    ``tau_{k+1} = tau / (1 - beta^{k+1})`` (``lam / (k+1)`` when ``tau = 0``), and the evaluation
    step uses ``L_k = log sum_a exp(h_{k-1} / tau_k)`` (``L_0 = log |A|``)::

        q_{k+1} = r + gamma P [(lam + tau) (L_{k+1} - beta L_k)] + eps_{k+1}

    Computed only from ``h`` and ``tau_k``; equal to :func:`md_vi` for ``lam + tau > 0``.
    """
    _check(lam, tau, iterations, noise_std)
    if lam + tau == 0.0:
        raise TailorError("dual averaging needs lam + tau > 0 (lam = tau = 0 is plain VI)")
    noise = _noise(mdp, iterations, noise_std, seed)
    S, A = mdp.n_states, mdp.n_actions
    eta, beta = lam + tau, lam / (lam + tau)
    q = np.zeros((S, A))
    weighted_sum = np.zeros((S, A))  # sum_j beta^{k-j} q_j
    L_prev = np.full(S, np.log(A))
    policies, qs = [np.full((S, A), 1.0 / A)], [q]
    for k in range(iterations):
        weighted_sum = beta * weighted_sum + q
        if tau == 0.0:
            h, temp = weighted_sum / (k + 1), lam / (k + 1)
        else:
            decay = 1.0 - beta ** (k + 1)
            h, temp = (1.0 - beta) / decay * weighted_sum, tau / decay
        L = logsumexp(h / temp, axis=1)
        policies.append(np.exp(h / temp - L[:, None]))
        q = mdp.r + mdp.gamma * mdp.P @ (eta * (L - beta * L_prev)) + noise[k]
        qs.append(q)
        L_prev = L
    return _history(mdp, tau, policies, qs, noise, np.full(iterations + 1, np.nan))


def munchausen_vi(
    mdp: FiniteMDP,
    alpha_m: float,
    tau_m: float,
    iterations: int,
    noise_std: float = 0.0,
    seed: int = 0,
) -> MDVIHistory:
    """Munchausen VI(alpha_m, tau_m): a log-policy bonus on the reward, no explicit KL.

    ``pi_{k+1} = softmax(q_k / tau_m)``,
    ``q_{k+1} = r + alpha_m tau_m log pi_{k+1}``
    ``+ gamma P <pi_{k+1}, q_k - tau_m log pi_{k+1}> + eps``.
    It equals MD-VI(lam = alpha_m tau_m, tau = (1 - alpha_m) tau_m) with
    ``q_M = q_MD + lam log pi_k``; so it starts from ``q_0 = lam log pi_0 = -lam log |A|``.
    ``errors`` are measured at the equivalent MD-VI's entropy ``(1 - alpha_m) tau_m``.
    """
    if not (np.isfinite(alpha_m) and 0.0 <= alpha_m <= 1.0):
        raise TailorError(f"alpha_m must be in [0, 1], got {alpha_m!r}")
    if not (np.isfinite(tau_m) and tau_m > 0):
        raise TailorError(f"tau_m must be > 0, got {tau_m!r}")
    lam, tau = alpha_m * tau_m, (1.0 - alpha_m) * tau_m
    _check(lam, tau, iterations, noise_std)
    noise = _noise(mdp, iterations, noise_std, seed)
    S, A = mdp.n_states, mdp.n_actions
    q = np.full((S, A), -lam * np.log(A))
    policies, qs = [np.full((S, A), 1.0 / A)], [q]
    for k in range(iterations):
        log_pi = q / tau_m - logsumexp(q / tau_m, axis=1)[:, None]
        pi = np.exp(log_pi)
        value = np.sum(pi * (q - tau_m * log_pi), axis=1)
        q = mdp.r + lam * log_pi + mdp.gamma * mdp.P @ value + noise[k]
        policies.append(pi)
        qs.append(q)
    return _history(mdp, tau, policies, qs, noise, np.full(iterations + 1, np.nan))
