"""The exactness bridge: the deep algorithms' target functions on a finite MDP.

* :class:`FiniteMDPEnv`: a :class:`tailor.tabular.FiniteMDP` as a gymnasium env with one-hot
  observations; ``info["addon_reward"]`` carries an optional add-on reward matrix.
* :func:`expected_residual_q_iteration`: ``Q_R <- E_s'[soft_q_target(r_R, 0, gamma, Q_R(s', .),
  log pi(.|s'), omega', alpha_hat)]`` with exact expectations over ``P`` -- the same target
  function as residual soft DQN, with a table instead of a network.
* :func:`residual_soft_q_learning`: sampled tabular Q-learning on the env with that target.
* :class:`FiniteMDPModel`: the MDP as a search model for residual MCTS.

Both Q-learning variants must converge to
:func:`tailor.tabular.residual_soft_value_iteration` (tests: exact to 1e-8, sampled to ~1e-2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import gymnasium as gym
import numpy as np

from tailor.errors import TailorError
from tailor.losses import soft_policy, soft_q_target
from tailor.tabular.mdp import FiniteMDP, validate_policy

__all__ = [
    "FiniteMDPEnv",
    "FiniteMDPModel",
    "QLearningConfig",
    "expected_residual_q_iteration",
    "residual_soft_q_learning",
]


class FiniteMDPEnv(gym.Env):
    """A finite MDP as a gymnasium env: one-hot observations, ``Discrete(A)`` actions.

    The env's reward is ``mdp.r[s, a]``; ``info["addon_reward"]`` is ``addon[s, a]`` (0 without
    an add-on matrix). It never terminates (a discounted, infinite-horizon MDP); use
    ``max_episode_steps`` to truncate. Reset draws ``s0 ~ mdp.mu0``.

    Args:
        mdp: the MDP.
        addon: optional add-on reward ``[S, A]``.
        max_episode_steps: truncate after this many steps (``None``: never).
    """

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(
        self, mdp: FiniteMDP, addon: np.ndarray | None = None, max_episode_steps: int | None = None
    ) -> None:
        self.mdp = mdp
        S, A = mdp.n_states, mdp.n_actions
        self.addon = np.zeros((S, A)) if addon is None else np.asarray(addon, np.float64)
        if self.addon.shape != (S, A):
            raise TailorError(f"addon must have shape [S, A] = {(S, A)}, got {self.addon.shape}")
        self.observation_space = gym.spaces.Box(0.0, 1.0, (S,), np.float32)
        self.action_space = gym.spaces.Discrete(A)
        self.max_episode_steps = max_episode_steps
        self.state = 0
        self._t = 0
        self._cdf = np.cumsum(mdp.P, axis=2)

    def _obs(self) -> np.ndarray:
        o = np.zeros(self.mdp.n_states, np.float32)
        o[self.state] = 1.0
        return o

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.state = int(self.np_random.choice(self.mdp.n_states, p=self.mdp.mu0))
        self._t = 0
        return self._obs(), {"state": self.state}

    def step(self, action):
        s, a = self.state, int(action)
        r, r_add = float(self.mdp.r[s, a]), float(self.addon[s, a])
        u = self.np_random.random()
        self.state = int(
            min(np.searchsorted(self._cdf[s, a], u, side="right"), self.mdp.n_states - 1)
        )
        self._t += 1
        truncated = self.max_episode_steps is not None and self._t >= self.max_episode_steps
        info = {"state": self.state, "basic_reward": r, "addon_reward": r_add}
        return self._obs(), r, False, truncated, info

    def get_sim_state(self) -> int:
        return self.state

    def set_sim_state(self, state: int) -> None:
        self.state = int(state)


def expected_residual_q_iteration(
    addon_mdp: FiniteMDP,
    prior: np.ndarray,
    omega_prime: float,
    alpha_hat: float,
    tol: float = 1e-12,
    max_iterations: int = 100_000,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Residual soft Q-iteration with exact expectations, through :func:`soft_q_target`.

    ``Q_R[s, a] <- sum_s' P[s, a, s'] * soft_q_target(r_R[s, a], 0, gamma, Q_R[s'],
    log pi[s'], omega', alpha_hat)`` -- the target is evaluated for every ``(s, a, s')`` triple
    ``[S, A, S]`` and averaged with ``P``.

    Returns:
        ``(q_residual [S, A], pi_hat [S, A], iterations)``; stops when
        ``gamma/(1-gamma) * ||Q_{k+1} - Q_k||_inf < tol``.
    """
    S, A = addon_mdp.n_states, addon_mdp.n_actions
    pi = validate_policy(prior, S, A, "prior")
    with np.errstate(divide="ignore"):
        log_pi = np.log(pi)
    gamma = addon_mdp.gamma
    r = np.broadcast_to(addon_mdp.r[:, :, None], (S, A, S))
    done = np.zeros((S, A, S))
    lp_next = None if omega_prime == 0 else np.broadcast_to(log_pi[None, None], (S, A, S, A))
    q = np.zeros((S, A))
    scale = gamma / (1.0 - gamma) if gamma > 0 else 0.0
    k = 0
    for k in range(1, max_iterations + 1):  # noqa: B007  (k is returned)
        q_next = np.broadcast_to(q[None, None], (S, A, S, A))  # Q_R(s', .) for every (s, a, s')
        y = soft_q_target(r, done, gamma, q_next, lp_next, omega_prime, alpha_hat)
        q_new = np.einsum("sat,sat->sa", addon_mdp.P, y)
        delta = float(np.max(np.abs(q_new - q)))
        q = q_new
        if scale * delta < tol:
            break
    return q, soft_policy(q, None if omega_prime == 0 else log_pi, omega_prime, alpha_hat), k


@dataclass
class QLearningConfig:
    """Sampled tabular residual soft Q-learning.

    Attributes:
        steps: environment steps (one update each).
        lr_power: step size ``1 / n(s, a) ** lr_power`` for the ``n``-th update of ``(s, a)``
            (in ``(0.5, 1]`` for convergence; 1 averages the targets).
        epsilon: probability of a uniformly random behaviour action (the rest follows the
            customized soft policy); off-policy Q-learning needs every pair visited, and 1.0
            (uniform behaviour) visits them most evenly.
        episode_steps: steps before a reset (frequent restarts from ``mu0`` keep every state
            visited often).
        seed: seed of the env and the behaviour policy.
    """

    steps: int = 10_000
    lr_power: float = 1.0
    epsilon: float = 1.0
    episode_steps: int = 5
    seed: int = 0


def residual_soft_q_learning(
    env: FiniteMDPEnv,
    prior: np.ndarray,
    omega_prime: float,
    alpha_hat: float,
    config: QLearningConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Tabular residual soft Q-learning from sampled transitions of ``env``.

    The reward learned from is ``info["addon_reward"]``; the state is the one-hot observation's
    index. Update: ``Q_R[s, a] += lr * (soft_q_target(r_R, 0, gamma, Q_R[s'], log pi[s'],
    omega', alpha_hat) - Q_R[s, a])``.

    Returns:
        ``(q_residual [S, A], visits [S, A])``.
    """
    S, A = env.mdp.n_states, env.mdp.n_actions
    pi = validate_policy(prior, S, A, "prior")
    with np.errstate(divide="ignore"):
        log_pi = np.log(pi)
    lp = None if omega_prime == 0 else log_pi
    gamma = env.mdp.gamma
    rng = np.random.default_rng(config.seed)
    q = np.zeros((S, A))
    visits = np.zeros((S, A), np.int64)
    obs, _ = env.reset(seed=config.seed)
    s = int(np.argmax(obs))
    zero = np.zeros(())
    for t in range(config.steps):
        if rng.random() < config.epsilon:
            a = int(rng.integers(A))
        else:
            p = soft_policy(q[s], None if lp is None else lp[s], omega_prime, alpha_hat)
            a = int(rng.choice(A, p=p))
        obs, _, terminated, _, info = env.step(a)
        s2 = int(np.argmax(obs))
        y = soft_q_target(
            np.asarray(info["addon_reward"]),
            zero + float(terminated),
            gamma,
            q[s2],
            None if lp is None else lp[s2],
            omega_prime,
            alpha_hat,
        )
        visits[s, a] += 1
        q[s, a] += (y - q[s, a]) / visits[s, a] ** config.lr_power
        s = s2
        if (t + 1) % config.episode_steps == 0:
            obs, _ = env.reset()
            s = int(np.argmax(obs))
    return q, visits


class FiniteMDPModel:
    """A finite MDP as a search model (:class:`tailor.algos.mcts.Model`) with reward ``r_R``.

    A stochastic transition is sampled with the model's own generator; on a deterministic MDP
    (one next state per ``(s, a)``) the search is exact.
    """

    def __init__(self, addon_mdp: FiniteMDP, state: int = 0, seed: int = 0) -> None:
        self.mdp = addon_mdp
        self.n_actions = addon_mdp.n_actions
        self.state = int(state)
        self.rng = np.random.default_rng(seed)

    def obs(self) -> np.ndarray:
        o = np.zeros(self.mdp.n_states)
        o[self.state] = 1.0
        return o

    def get_state(self) -> int:
        return self.state

    def set_state(self, state: int) -> None:
        self.state = int(state)

    def step(self, action: int) -> tuple[np.ndarray, float, bool]:
        r = float(self.mdp.r[self.state, action])
        self.state = int(self.rng.choice(self.mdp.n_states, p=self.mdp.P[self.state, action]))
        return self.obs(), r, False
