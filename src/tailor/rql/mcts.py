"""Residual max-entropy MCTS: online customization of a discrete prior, no training.

At every real step a tree is grown from the current state with a *copy of the simulator* as the
model. Inside the search the only reward is the add-on reward ``r_R``; the basic task enters
through the prior's log-probabilities alone (reference section 4)::

    node value   V(s)    = tau * logsumexp((Q_R(s, .) + omega' log pi(.|s)) / tau)
    edge value   Q_R(s,a) = r_R(s, a) + gamma * V(s')          (V = 0 at a terminal state and
                                                               at the horizon)
    action       argmax_a  Q_R(root, a) + omega' log pi(a|root)

The RQL paper's settings are the defaults: 150 simulations, horizon 6, gamma 0.8, temperature
``tau = 1`` and ``omega' = 1``. How the tree grows (our choices, documented):

* expansion: a node's untried actions are tried before any is revisited, in an order sampled
  from the prior restricted to the untried ones ("prior probabilities for expansion");
* a new node is valued by a rollout that samples the prior to the horizon (sum of discounted
  ``r_R``); once it has children its value is the soft backup above (the rollout is dropped);
* revisits pick an action from the customized soft policy mixed with uniform exploration
  (E2W/MENTS: weight ``lambda = min(1, exploration * A / log(n + 1))`` on uniform);
* untried actions count with ``Q_R = 0`` in the soft value (the prior's own value: ``Q_R = 0``
  everywhere is the customized policy that equals the prior when ``omega' = tau``).

The tree is exact on a deterministic model: once every node above the horizon has been visited
twice, the root's ``Q_R`` equals the finite-horizon residual soft values (tested against
enumeration with :func:`tailor.tabular.solvers.soft_backup`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from torch import nn

from tailor.envs import Task, get_task, make_env
from tailor.errors import TailorError
from tailor.rql.targets import soft_policy, soft_value

__all__ = [
    "MCTSConfig",
    "Model",
    "ResidualMCTS",
    "TaskModel",
    "numpy_log_prior",
]


class Model(Protocol):
    """What the search needs from a simulator."""

    n_actions: int

    def get_state(self) -> Any:
        """A snapshot of the simulator (must not alias the live state)."""

    def set_state(self, state: Any) -> None:
        """Restore a snapshot taken by :meth:`get_state` (may be called many times)."""

    def step(self, action: int) -> tuple[np.ndarray, float, bool]:
        """Step; return ``(obs, r_R, terminated)`` (add-on reward only)."""


class TaskModel:
    """A task's env used as the search model (a private copy, never the env being acted in).

    State snapshots: the unwrapped env's own ``get_sim_state``/``set_sim_state`` if it has
    them; else, for classic-control envs, a copy of ``state`` (and CartPole's
    ``steps_beyond_terminated``); else a ``copy.deepcopy`` of the whole unwrapped env (generic,
    slower). The add-on reward is the task's ``addon(env, action, info)``.
    """

    def __init__(self, task: Task | str) -> None:
        self.task = get_task(task)
        self.env = make_env(self.task).unwrapped
        self.env.reset(seed=0)
        if not hasattr(self.env.action_space, "n"):
            raise TailorError(
                f"residual MCTS needs a discrete action space; task "
                f"{self.task.name!r} has {self.env.action_space}"
            )
        self.n_actions = int(self.env.action_space.n)
        self._mode = (
            "own"
            if hasattr(self.env, "get_sim_state")
            else "state"
            if hasattr(self.env, "state")
            else "deepcopy"
        )

    def get_state(self) -> Any:
        e = self.env
        if self._mode == "own":
            return e.get_sim_state()
        if self._mode == "state":
            return (copy.copy(e.state), getattr(e, "steps_beyond_terminated", None))
        return copy.deepcopy(e)

    def set_state(self, state: Any) -> None:
        if self._mode == "own":
            self.env.set_sim_state(state)
        elif self._mode == "state":
            self.env.state = copy.copy(state[0])
            if hasattr(self.env, "steps_beyond_terminated"):
                self.env.steps_beyond_terminated = state[1]
        else:
            self.env = copy.deepcopy(state)

    def sync(self, real_env: Any) -> None:
        """Copy the state of the env being acted in (any wrapper around the same env class)."""
        other = real_env.unwrapped
        if self._mode == "own":
            self.env.set_sim_state(other.get_sim_state())
        elif self._mode == "state":
            self.env.state = copy.copy(other.state)
            if hasattr(other, "steps_beyond_terminated"):
                self.env.steps_beyond_terminated = other.steps_beyond_terminated
        else:
            self.env = copy.deepcopy(other)

    def step(self, action: int) -> tuple[np.ndarray, float, bool]:
        obs, _, terminated, _, info = self.env.step(int(action))
        return obs, float(self.task.addon(self.env, action, info)), bool(terminated)


def numpy_log_prior(qnet: nn.Module, alpha: float) -> Callable[[np.ndarray], np.ndarray]:
    """``obs [obs_dim] -> log softmax(Q_prior(obs) / alpha) [A]`` in numpy (float64).

    A soft-DQN prior (an ``nn.Sequential`` of ``Linear``/``ReLU``) evaluated without torch's
    per-call overhead: the search calls it at every new node and rollout step.
    """
    if not alpha > 0:
        raise TailorError(f"the prior's temperature alpha must be > 0, got {alpha!r}")
    layers: list[tuple[np.ndarray, np.ndarray] | str] = []
    for m in qnet:
        if isinstance(m, nn.Linear):
            layers.append(
                (
                    m.weight.detach().double().numpy().T.copy(),
                    m.bias.detach().double().numpy().copy(),
                )
            )
        elif isinstance(m, nn.ReLU):
            layers.append("relu")
        else:
            raise TailorError(f"numpy_log_prior supports Linear/ReLU networks, got {m}")

    def log_prior(obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float64)
        for layer in layers:
            x = np.maximum(x, 0.0) if isinstance(layer, str) else x @ layer[0] + layer[1]
        z = x / alpha
        m = z.max()
        return z - (m + math.log(np.exp(z - m).sum()))

    return log_prior


@dataclass
class MCTSConfig:
    """Settings of residual max-entropy MCTS (defaults: the RQL paper's).

    Attributes:
        simulations: simulations per real step.
        horizon: depth of the tree below the root (values are 0 beyond it).
        gamma: discount inside the search.
        omega_prime: weight of ``log pi`` of the prior.
        tau: temperature of the soft backup and of the customized policy (``alpha_hat``).
        exploration: E2W exploration constant (weight of uniform mixing at a revisit).
        rollout: value a new node by a prior rollout to the horizon (else by 0).
        seed: seed of the search's random choices.
    """

    simulations: int = 150
    horizon: int = 6
    gamma: float = 0.8
    omega_prime: float = 1.0
    tau: float = 1.0
    exploration: float = 1.0
    rollout: bool = True
    seed: int = 0


class _Node:
    __slots__ = (
        "children",
        "logp",
        "n",
        "obs",
        "q",
        "reward",
        "state",
        "terminal",
        "untried",
        "value",
    )

    def __init__(
        self, state: Any, obs: np.ndarray, reward: float, terminal: bool, n_actions: int
    ) -> None:
        self.state, self.obs, self.reward, self.terminal = state, obs, reward, terminal
        self.n = 0
        self.q = np.zeros(n_actions)
        self.logp: np.ndarray | None = None
        self.children: dict[int, _Node] = {}
        self.untried: list[int] = []
        self.value = 0.0


class ResidualMCTS:
    """Residual max-entropy MCTS over ``model`` with prior ``log_prior(obs) -> [A]``.

    Args:
        model: the simulator copy (see :class:`Model`).
        log_prior: the prior's log-probabilities of one observation.
        config: settings.
    """

    def __init__(
        self, model: Model, log_prior: Callable[[np.ndarray], np.ndarray], config: MCTSConfig
    ) -> None:
        if config.simulations < 1 or config.horizon < 1:
            raise TailorError("MCTS needs simulations >= 1 and horizon >= 1")
        if not config.tau > 0:
            raise TailorError(f"MCTS temperature tau must be > 0, got {config.tau}")
        self.model, self.log_prior, self.cfg = model, log_prior, config
        self.n_actions = int(model.n_actions)
        self.rng = np.random.default_rng(config.seed)
        self.root: _Node | None = None

    # -- public -------------------------------------------------------------------------------
    def search(self, obs: np.ndarray, simulations: int | None = None) -> np.ndarray:
        """Grow a fresh tree from the model's *current* state; return the root's ``Q_R`` [A]."""
        root = _Node(self.model.get_state(), np.asarray(obs), 0.0, False, self.n_actions)
        self.root = root
        for _ in range(simulations or self.cfg.simulations):
            self._simulate(root, 0)
        return root.q.copy()

    def act(self, obs: np.ndarray) -> int:
        """Search, then ``argmax_a Q_R(root, a) + omega' log pi(a|root)``."""
        q = self.search(obs)
        assert self.root is not None and self.root.logp is not None
        z = q + self.cfg.omega_prime * self.root.logp
        return int(np.argmax(z))

    # -- the four steps -------------------------------------------------------------------------
    def _simulate(self, node: _Node, depth: int) -> None:
        cfg = self.cfg
        node.n += 1
        if node.terminal or depth >= cfg.horizon:
            node.value = 0.0
            return
        if node.logp is None:  # first visit: evaluate the prior, estimate the value
            self._evaluate(node)
            node.value = self._rollout(node, depth) if cfg.rollout else 0.0
            return
        a = self._select(node)
        child = node.children.get(a)
        if child is None:
            child = self._expand(node, a)
        self._simulate(child, depth + 1)
        node.q[a] = child.reward + cfg.gamma * child.value
        node.value = float(soft_value(node.q, node.logp, cfg.omega_prime, cfg.tau))

    def _evaluate(self, node: _Node) -> None:
        node.logp = np.asarray(self.log_prior(node.obs), dtype=np.float64)
        order: list[int] = []
        p = np.exp(node.logp)
        remaining = list(range(self.n_actions))
        while remaining:  # an expansion order sampled from the prior (without replacement)
            k = self._sample(p[remaining]) if len(remaining) > 1 else 0
            order.append(remaining.pop(k))
        node.untried = order[::-1]  # pop() from the end takes the first sampled action

    def _select(self, node: _Node) -> int:
        if node.untried:
            return node.untried.pop()
        cfg = self.cfg
        lam = min(1.0, cfg.exploration * self.n_actions / math.log(node.n + 1))
        pi = soft_policy(node.q, node.logp, cfg.omega_prime, cfg.tau)
        probs = (1.0 - lam) * pi + lam / self.n_actions
        return self._sample(probs)

    def _sample(self, weights: np.ndarray) -> int:
        """An index drawn with probability proportional to ``weights`` (uniform if all 0)."""
        c = np.cumsum(weights)
        if not c[-1] > 0:
            return int(self.rng.integers(len(weights)))
        return min(
            int(np.searchsorted(c, self.rng.random() * c[-1], side="right")), len(weights) - 1
        )

    def _expand(self, node: _Node, a: int) -> _Node:
        self.model.set_state(node.state)
        obs, r, term = self.model.step(a)
        child = _Node(self.model.get_state(), np.asarray(obs), r, term, self.n_actions)
        node.children[a] = child
        return child

    def _rollout(self, node: _Node, depth: int) -> float:
        """Discounted ``r_R`` of the prior's samples from ``node`` to the horizon."""
        cfg = self.cfg
        self.model.set_state(node.state)
        obs, ret, disc = node.obs, 0.0, 1.0
        for _ in range(depth, cfg.horizon):
            logp = node.logp if disc == 1.0 else np.asarray(self.log_prior(obs))
            a = self._sample(np.exp(logp - logp.max()))
            obs, r, term = self.model.step(a)
            ret += disc * r
            disc *= cfg.gamma
            if term:
                break
        return ret
