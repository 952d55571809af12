"""Soft DQN (prior training) and residual soft DQN (customization), one loop for both.

* Prior training (``method`` ``soft``, basic reward) or a from-scratch baseline (``full``,
  basic + add-on reward): soft Q-learning at temperature ``alpha``, target
  ``r + gamma (1-d) alpha logsumexp(Q_target(s', .) / alpha)``, acting by sampling
  ``softmax(Q / alpha)``.
* Customization (``method`` ``residual``, add-on reward only): a fresh residual network ``Q_R``
  and a frozen prior Q-network whose Boltzmann policy ``pi = softmax(Q_prior / alpha_prior)``
  enters the target ``r_R + gamma (1-d) alpha_hat logsumexp((Q_R'(s', .) + omega' log pi(.|s'))
  / alpha_hat)`` and the acting rule ``softmax((Q_R + omega' log pi) / alpha_hat)``.

Both are :func:`tailor.losses.soft_q_target` with different coefficients, which the method
(:func:`tailor.methods.resolve`) supplies. Evaluation acts greedily (``alpha_hat = 0``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tailor.algos.configs import COUNT, NONNEGATIVE, POSITIVE, UNIT, check_config
from tailor.algos.finite import check_acting, check_reward, check_trained
from tailor.algos.logs import episode_summary, log_line
from tailor.algos.replay import ReplayBuffer
from tailor.envs import Task, get_task, make_env
from tailor.errors import TailorError
from tailor.losses import soft_policy, soft_q_target
from tailor.methods import Method
from tailor.nets import mlp
from tailor.priors import QPrior
from tailor.rundir import InterruptRequest

__all__ = ["KL_HELD_STEPS", "SoftDQNConfig", "held_kl", "train_soft_dqn"]

KL_HELD_STEPS = 5000  # a run's "KL held": its final policy on its last this many states


@dataclass
class SoftDQNConfig:
    """Hyper-parameters of (residual) soft DQN.

    Attributes:
        total_steps: environment steps.
        gamma: discount.
        lr: Adam learning rate.
        batch_size: transitions per gradient step.
        buffer_size: replay capacity.
        learning_starts: steps collected before the first gradient step.
        train_freq: environment steps between learning phases.
        gradient_steps: gradient steps per learning phase (more than 1 pays off when the
            simulator is much slower than an update, e.g. highway-env).
        target_update_interval: environment steps between hard copies to the target network.
        hidden: hidden layer sizes of the Q-network.
        epsilon_start: probability of a uniformly random action at step 0 (on top of the
            Boltzmann sampling); decays linearly to ``epsilon_end``. 0 disables it (a residual
            run explores with the prior's own stochasticity).
        epsilon_end: final random-action probability.
        epsilon_fraction: fraction of ``total_steps`` over which epsilon decays.
        max_grad_norm: gradient clipping norm.
        zero_init: start the Q-network's output layer at zero. For a residual run this makes
            ``Q_R = 0`` at the start, so the customized policy starts as
            ``softmax(omega' log pi / alpha_hat)`` (the prior itself when ``omega' = alpha_hat``).
        basic_weight: the weight ``omega`` of the basic reward for a method trained on both
            rewards (``full``: ``omega r + r_R``, the from-scratch baseline of a customization
            with ``omega' = omega * alpha``); ignored by the other methods.
        seed: seed of the network init, env resets, action sampling and replay sampling.
        log_interval: steps between progress lines (0: silent).
    """

    total_steps: int = 50_000
    gamma: float = 0.99
    lr: float = 1e-3
    batch_size: int = 64
    buffer_size: int = 50_000
    learning_starts: int = 1_000
    train_freq: int = 1
    gradient_steps: int = 1
    target_update_interval: int = 500
    hidden: tuple[int, ...] = (64, 64)
    epsilon_start: float = 1.0
    epsilon_end: float = 0.02
    epsilon_fraction: float = 0.2
    max_grad_norm: float = 10.0
    zero_init: bool = False
    basic_weight: float = 1.0
    seed: int = 0
    log_interval: int = 10_000

    def __post_init__(self) -> None:
        check_config(self, _DQN_BOUNDS)


_DQN_BOUNDS = {
    **dict.fromkeys(
        ("total_steps", "batch_size", "buffer_size", "train_freq", "gradient_steps"), COUNT
    ),
    "target_update_interval": COUNT,
    **dict.fromkeys(("gamma", "epsilon_start", "epsilon_end", "epsilon_fraction"), UNIT),
    **dict.fromkeys(("lr", "max_grad_norm"), POSITIVE),
    **dict.fromkeys(("learning_starts", "log_interval"), NONNEGATIVE),
}


def _weighted(method: Method, cfg: SoftDQNConfig, basic: float) -> float:
    """The basic reward times ``cfg.basic_weight`` for a method that sees both rewards."""
    return cfg.basic_weight * basic if method.reward == "both" else basic


def _epsilon(cfg: SoftDQNConfig, step: int) -> float:
    span = max(1.0, cfg.epsilon_fraction * cfg.total_steps)
    frac = min(1.0, step / span)
    return cfg.epsilon_start + frac * (cfg.epsilon_end - cfg.epsilon_start)


def train_soft_dqn(
    task: Task | str,
    method: Method,
    config: SoftDQNConfig,
    prior: QPrior | None = None,
    log: Callable[[str], None] | None = print,
    *,
    interrupt: InterruptRequest | None = None,
) -> tuple[nn.Module, dict]:
    """Train a (residual) soft Q-network on a task with a discrete action space.

    Args:
        task: the task (its env must have a ``Discrete`` action space).
        method: ``soft`` or ``full`` (training from scratch: ``omega' = 0``, temperature
            ``alpha_hat = alpha``) or ``residual`` (customization; needs ``prior``).
        config: hyper-parameters.
        prior: the frozen prior for a customization method.
        log: where progress lines go (``None``: silent).

    Returns:
        ``(qnet, stats)``: the trained network (``Q`` or ``Q_R``) and a dict with
        ``wall_s``, ``episodes``, and the last 20 episodes' mean ``basic``/``addon`` returns;
        a customization's ``kl_held``, :func:`held_kl` on the states of its last
        :data:`KL_HELD_STEPS` steps (the frontier's "KL held").

    Raises:
        TailorError: a continuous action space, a customization method without a prior, or
            a loss that is not finite.
    """
    task = get_task(task)
    if method.customization and prior is None:
        raise TailorError(f"method {method.name!r} customizes a prior; pass the prior Q-network")
    if not method.customization:
        prior = None
    omega, alpha_hat = method.spec.omega_prime, method.spec.alpha_hat
    cfg = config
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    env = make_env(task)
    if not hasattr(env.action_space, "n"):
        raise TailorError(
            f"soft DQN needs a discrete action space; task {task.name!r} has "
            f"{env.action_space} (use --algo sac)"
        )
    obs_dim, n_act = int(np.prod(env.observation_space.shape)), int(env.action_space.n)
    qnet = mlp([obs_dim, *cfg.hidden, n_act], zero_last=cfg.zero_init)
    target = mlp([obs_dim, *cfg.hidden, n_act])
    target.load_state_dict(qnet.state_dict())
    opt = torch.optim.Adam(qnet.parameters(), lr=cfg.lr)
    buf = ReplayBuffer(obs_dim, (), min(cfg.buffer_size, cfg.total_steps))
    learner = _SoftQ(qnet, target, opt, prior, omega, alpha_hat, cfg)

    t0 = time.perf_counter()
    obs, _ = env.reset(seed=cfg.seed)
    ep_basic = ep_addon = 0.0
    history: list[tuple[float, float, int]] = []
    ep_len = 0
    loss_value = float("nan")
    for step in range(cfg.total_steps):
        # -- act: sample the (customized) Boltzmann policy, epsilon-mixed with uniform --------
        obs_t = torch.as_tensor(obs, dtype=torch.float32)[None]
        with torch.no_grad():
            probs = soft_policy(qnet(obs_t), learner.log_pi(obs_t), omega, alpha_hat)[0]
        check_acting("soft DQN", probs, {"q": qnet}, step)
        if rng.random() < _epsilon(cfg, step):
            action = int(rng.integers(n_act))
        else:
            action = int(torch.multinomial(probs, 1, generator=gen))
        next_obs, _, terminated, truncated, info = env.step(action)
        r = method.env_reward(_weighted(method, cfg, info["basic_reward"]), info["addon_reward"])
        check_reward("soft DQN", r, step)
        # Only a true termination stops bootstrapping; a time-limit truncation does not.
        buf.add(obs, action, r, next_obs, terminated)
        ep_basic += info["basic_reward"]
        ep_addon += info["addon_reward"]
        ep_len += 1
        obs = next_obs
        if terminated or truncated:
            history.append((ep_basic, ep_addon, ep_len))
            ep_basic = ep_addon = 0.0
            ep_len = 0
            obs, _ = env.reset()

        # -- learn: TD steps on the residual soft target --------------------------------------
        if step >= cfg.learning_starts and step % cfg.train_freq == 0:
            loss_value = learner.td_steps(buf, rng, step)
        if step % cfg.target_update_interval == 0:
            target.load_state_dict(qnet.state_dict())
        if log is not None and cfg.log_interval and (step + 1) % cfg.log_interval == 0:
            log(
                log_line(
                    "dqn", method, step + 1, cfg.total_steps, history, f"loss {loss_value:.4f}", t0
                )
            )
        if interrupt is not None and interrupt.requested:  # Ctrl-C: stop after a whole step
            break
    env.close()
    check_trained("soft DQN", {"q": qnet})
    stats = {"wall_s": time.perf_counter() - t0, **episode_summary(history)}
    if prior is not None and len(buf):
        stats["kl_held"] = held_kl(learner, _recent_obs(buf, KL_HELD_STEPS))
    if interrupt is not None and interrupt.requested:
        stats["interrupted_at_step"] = step + 1
    return qnet.eval(), stats


def held_kl(learner: _SoftQ, obs: torch.Tensor) -> float:
    """The mean over ``obs`` ``[N, D]`` of ``KL(pi_hat(.|s) || pi(.|s))``, the customized acting
    policy ``softmax((Q_R + omega' log pi) / alpha_hat)`` against the prior: exact for the
    categorical, computed once after training (not in the acting loop)."""
    with torch.no_grad():
        log_pi = learner.log_pi(obs)
        probs = soft_policy(learner.qnet(obs), log_pi, learner.omega, learner.alpha_hat)
        kl = (torch.special.xlogy(probs, probs) - probs * log_pi).sum(-1)
    return float(kl.clamp_min(0.0).mean())  # >= 0 but for rounding


def _recent_obs(buf: ReplayBuffer, n: int) -> torch.Tensor:
    """The observations of the last ``n`` stored transitions ``[min(n, len), D]``."""
    idx = (buf.ptr - 1 - np.arange(min(n, len(buf)))) % buf.size
    return torch.from_numpy(buf.obs[idx])


@dataclass
class _SoftQ:
    """The soft Q-network, its target copy and optimizer, and the terms of the residual soft
    target (``omega'``, ``alpha_hat``, the prior)."""

    qnet: nn.Module
    target: nn.Module
    opt: torch.optim.Optimizer
    prior: QPrior | None
    omega: float
    alpha_hat: float
    cfg: SoftDQNConfig

    def log_pi(self, o: torch.Tensor) -> torch.Tensor | None:
        """The prior's ``log pi(.|s)`` ``[B, A]`` for observations ``[B, D]`` (``None``: none)."""
        return self.prior.log_probs(o) if self.prior is not None else None

    def td_steps(self, buf: ReplayBuffer, rng: np.random.Generator, step: int) -> float:
        """``cfg.gradient_steps`` TD steps on replay samples; returns the last loss.

        Raises:
            TailorError: a loss that is not finite (``step``: the environment step).
        """
        cfg, qnet = self.cfg, self.qnet
        loss_value = float("nan")
        for _ in range(cfg.gradient_steps):
            b = buf.sample(cfg.batch_size, rng)
            with torch.no_grad():
                y = soft_q_target(
                    b["rew"],
                    b["done"],
                    cfg.gamma,
                    self.target(b["next_obs"]),
                    self.log_pi(b["next_obs"]),
                    self.omega,
                    self.alpha_hat,
                )
            q_sa = qnet(b["obs"]).gather(1, b["act"][:, None]).squeeze(1)
            loss = torch.nn.functional.mse_loss(q_sa, y)
            if not torch.isfinite(loss):
                raise TailorError(
                    f"soft DQN loss is {loss.item()} at step {step}; lower the "
                    f"learning rate or check the task's rewards"
                )
            self.opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(qnet.parameters(), cfg.max_grad_norm)
            self.opt.step()
            loss_value = loss.item()
        return loss_value
