"""Finite MDPs, random Garnets and exact (entropy-regularized) policy evaluation. float64 numpy."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tailor.errors import TailorError

__all__ = ["FiniteMDP", "evaluate_policy", "garnet", "policy_entropy_term", "validate_policy"]

_ROW_SUM_TOL = 1e-9


@dataclass(frozen=True)
class FiniteMDP:
    """A finite discounted MDP.

    Attributes:
        P: transition probabilities ``P[s, a, s'] = p(s'|s, a)``, shape ``[S, A, S]``; rows
            sum to 1.
        r: reward ``r[s, a]``, shape ``[S, A]``, finite.
        gamma: discount, ``0 <= gamma < 1``.
        mu0: initial-state distribution, shape ``[S]``; uniform when omitted.
    """

    P: np.ndarray
    r: np.ndarray
    gamma: float
    mu0: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        P = np.array(self.P, dtype=np.float64)
        r = np.array(self.r, dtype=np.float64)
        if P.ndim != 3 or P.shape[0] != P.shape[2]:
            raise TailorError(f"P must have shape [S, A, S], got {P.shape}")
        S, A, _ = P.shape
        if S == 0 or A == 0:
            raise TailorError(f"P must have at least one state and one action, got {P.shape}")
        if r.shape != (S, A):
            raise TailorError(f"r must have shape [S, A] = {(S, A)} to match P, got {r.shape}")
        if not np.all(np.isfinite(P)):
            raise TailorError("P contains non-finite values")
        if np.any(P < 0):
            s, a, s2 = np.argwhere(P < 0)[0]
            raise TailorError(
                f"P has a negative probability P[{s}, {a}, {s2}] = {float(P[s, a, s2]):.6g}"
            )
        sums = P.sum(axis=2)
        bad = np.argwhere(np.abs(sums - 1.0) > _ROW_SUM_TOL)
        if len(bad):
            s, a = bad[0]
            raise TailorError(
                f"P[{s}, {a}, :] sums to {float(sums[s, a]):.12g}, not 1 "
                f"({len(bad)} row(s) of P are not probability distributions)"
            )
        if not np.all(np.isfinite(r)):
            s, a = np.argwhere(~np.isfinite(r))[0]
            raise TailorError(f"r contains a non-finite value r[{s}, {a}] = {float(r[s, a])}")
        gamma = self.gamma
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.floating)):
            raise TailorError(f"gamma must be a number in [0, 1), got {gamma!r}")
        if not (np.isfinite(gamma) and 0.0 <= gamma < 1.0):
            raise TailorError(f"gamma must satisfy 0 <= gamma < 1, got {gamma!r}")
        mu0 = np.full(S, 1.0 / S) if self.mu0 is None else np.array(self.mu0, dtype=np.float64)
        if mu0.shape != (S,):
            raise TailorError(f"mu0 must have shape [S] = ({S},), got {mu0.shape}")
        if not np.all(np.isfinite(mu0)) or np.any(mu0 < 0) or abs(mu0.sum() - 1) > _ROW_SUM_TOL:
            raise TailorError("mu0 must be a probability distribution over the states")
        P.setflags(write=False)
        r.setflags(write=False)
        mu0.setflags(write=False)
        object.__setattr__(self, "P", P)
        object.__setattr__(self, "r", r)
        object.__setattr__(self, "gamma", float(gamma))
        object.__setattr__(self, "mu0", mu0)

    @property
    def n_states(self) -> int:
        return self.P.shape[0]

    @property
    def n_actions(self) -> int:
        return self.P.shape[1]

    def with_reward(self, r_new: np.ndarray) -> FiniteMDP:
        """The same dynamics, discount and start distribution with another reward ``[S, A]``."""
        return FiniteMDP(self.P, r_new, self.gamma, self.mu0)


def garnet(
    n_states: int,
    n_actions: int,
    branching: int,
    gamma: float,
    seed: int,
    reward_scale: float = 1.0,
) -> FiniteMDP:
    """A random Garnet MDP (Archibald et al. 1995).

    Each ``(s, a)`` moves to ``branching`` distinct next states chosen uniformly, with probabilities
    from a uniform partition of ``[0, 1]``; rewards are i.i.d. ``U(-reward_scale, reward_scale)``.
    """
    if not (isinstance(n_states, int) and n_states >= 1):
        raise TailorError(f"n_states must be a positive integer, got {n_states!r}")
    if not (isinstance(n_actions, int) and n_actions >= 1):
        raise TailorError(f"n_actions must be a positive integer, got {n_actions!r}")
    if not (isinstance(branching, int) and 1 <= branching <= n_states):
        raise TailorError(
            f"branching must be an integer in [1, n_states={n_states}], got {branching!r}"
        )
    rng = np.random.default_rng(seed)
    P = np.zeros((n_states, n_actions, n_states))
    for s in range(n_states):
        for a in range(n_actions):
            nxt = rng.choice(n_states, size=branching, replace=False)
            cuts = np.sort(rng.uniform(size=branching - 1))
            P[s, a, nxt] = np.diff(np.concatenate(([0.0], cuts, [1.0])))
    r = rng.uniform(-reward_scale, reward_scale, size=(n_states, n_actions))
    return FiniteMDP(P, r, gamma)


def validate_policy(pi: np.ndarray, n_states: int, n_actions: int, name: str = "pi") -> np.ndarray:
    """Check ``pi`` is a stochastic matrix ``[S, A]``; return it as float64."""
    pi = np.asarray(pi, dtype=np.float64)
    if pi.shape != (n_states, n_actions):
        raise TailorError(
            f"{name} must have shape [S, A] = {(n_states, n_actions)}, got {pi.shape}"
        )
    if not np.all(np.isfinite(pi)) or np.any(pi < 0):
        raise TailorError(f"{name} must contain finite non-negative probabilities")
    sums = pi.sum(axis=1)
    if np.any(np.abs(sums - 1.0) > 1e-9):
        s = int(np.argmax(np.abs(sums - 1.0)))
        raise TailorError(f"{name}[{s}, :] sums to {float(sums[s]):.12g}, not 1")
    return pi


def policy_entropy_term(pi: np.ndarray) -> np.ndarray:
    """``sum_a pi(a|s) log pi(a|s)`` per state, shape ``[S]``, with ``0 log 0 = 0``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(pi > 0, pi * np.log(np.where(pi > 0, pi, 1.0)), 0.0)
    return plogp.sum(axis=1)


def evaluate_policy(
    mdp: FiniteMDP, pi: np.ndarray, alpha: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Exact entropy-regularized values of ``pi`` by one linear solve.

    ``v = (I - gamma P_pi)^{-1} sum_a pi (r - alpha log pi)`` and ``q = r + gamma P v``.

    Args:
        mdp: the MDP.
        pi: policy ``[S, A]``.
        alpha: entropy temperature ``>= 0`` (0: ordinary values).

    Returns:
        ``(q [S, A], v [S])``.
    """
    pi = validate_policy(pi, mdp.n_states, mdp.n_actions)
    if not (np.isfinite(alpha) and alpha >= 0):
        raise TailorError(f"alpha must be finite and >= 0, got {alpha!r}")
    P_pi = np.einsum("sa,sat->st", pi, mdp.P)
    r_pi = np.einsum("sa,sa->s", pi, mdp.r) - alpha * policy_entropy_term(pi)
    v = np.linalg.solve(np.eye(mdp.n_states) - mdp.gamma * P_pi, r_pi)
    q = mdp.r + mdp.gamma * mdp.P @ v
    return q, v
