"""SAC (prior training) and residual SAC (customization), one loop for both.

Twin critics with Polyak-averaged targets and a tanh-squashed Gaussian actor, at a *fixed*
temperature (the prior's ``log pi`` is only meaningful for a max-entropy policy at a known
temperature, so no automatic tuning). With the method's coefficients (``resolve``)::

    critic target  r + gamma (1-d) [min Q_targ(s', a') + omega' log pi(a'|s')
                                    - alpha_hat log pi_theta(a'|s')]
    actor loss     alpha_hat log pi_theta(a|s) - min Q(s, a) - omega' log pi(a|s)

``omega' = 0`` is plain SAC at temperature ``alpha_hat`` (prior training with ``soft`` on the
basic reward, the from-scratch baseline with ``full`` on basic + add-on). A ``residual`` run
optimises the add-on reward only, with ``log pi`` from the frozen prior actor; its actor starts
from the prior's weights and its critic from scratch. The public code's warm start multiplies
``omega'`` by 10 for the first steps (``warm_start_steps``, ``warm_start_factor``).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tailor.envs import Task, get_task, make_env
from tailor.errors import TailorError
from tailor.methods import Method
from tailor.rql.soft_dqn import ReplayBuffer, _weighted, episode_summary, log_line, mlp
from tailor.rql.targets import sac_actor_loss, sac_critic_target

__all__ = ["SACConfig", "SquashedGaussianActor", "train_sac"]

_LOG_STD_MIN, _LOG_STD_MAX = -5.0, 2.0
_EPS = 1e-6


class SquashedGaussianActor(nn.Module):
    """``a = low + (tanh(u) + 1)/2 * (high - low)``, ``u ~ N(mu(s), sigma(s))``.

    Args:
        obs_dim, act_dim: sizes.
        hidden: hidden layer sizes of the shared trunk.
        low, high: action bounds ``[act_dim]`` (finite).
        obs_low, obs_high: observation bounds used to scale inputs to ``[-1, 1]`` where finite
            (unbounded dimensions are passed through).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int],
        low: np.ndarray,
        high: np.ndarray,
        obs_low: np.ndarray | None = None,
        obs_high: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.hidden = obs_dim, act_dim, tuple(int(h) for h in hidden)
        self.trunk = mlp(obs_dim, 2 * act_dim, hidden)
        self.register_buffer("scale", torch.as_tensor((high - low) / 2.0, dtype=torch.float32))
        self.register_buffer("bias", torch.as_tensor((high + low) / 2.0, dtype=torch.float32))
        o_scale, o_bias = _obs_affine(obs_dim, obs_low, obs_high)
        self.register_buffer("obs_scale", o_scale)
        self.register_buffer("obs_bias", o_bias)

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.obs_bias) / self.obs_scale

    def _dist(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_std = self.trunk(self.normalize(obs)).chunk(2, dim=-1)
        return mu, log_std.clamp(_LOG_STD_MIN, _LOG_STD_MAX)

    def sample(
        self, obs: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterized sample ``(action [B, act_dim], log pi(action|s) [B])``."""
        mu, log_std = self._dist(obs)
        eps = torch.randn(mu.shape, generator=generator)
        u = mu + log_std.exp() * eps
        return self._squash(u), self._log_prob_u(u, mu, log_std)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``log pi(action|s)`` ``[B]`` of given (in-bounds) actions ``[B, act_dim]``."""
        mu, log_std = self._dist(obs)
        y = ((action - self.bias) / self.scale).clamp(-1.0 + _EPS, 1.0 - _EPS)
        return self._log_prob_u(torch.atanh(y), mu, log_std)

    def mean_action(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action ``squash(mu(s))`` used for evaluation."""
        return self._squash(self._dist(obs)[0])

    def _squash(self, u: torch.Tensor) -> torch.Tensor:
        return self.bias + self.scale * torch.tanh(u)

    def _log_prob_u(self, u: torch.Tensor, mu: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
        # Gaussian log-density of u, minus log|da/du| = log(scale * (1 - tanh(u)^2)), written
        # with softplus for stability: log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)).
        z = (u - mu) / log_std.exp()
        gauss = -0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)
        log_det = 2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))
        return (gauss - log_det - torch.log(self.scale)).sum(-1)


def _obs_affine(
    obs_dim: int, low: np.ndarray | None, high: np.ndarray | None
) -> tuple[torch.Tensor, torch.Tensor]:
    scale, bias = torch.ones(obs_dim), torch.zeros(obs_dim)
    if low is not None and high is not None:
        low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
        ok = np.isfinite(low) & np.isfinite(high) & (high > low)
        scale[ok] = torch.as_tensor((high[ok] - low[ok]) / 2.0, dtype=torch.float32)
        bias[ok] = torch.as_tensor((high[ok] + low[ok]) / 2.0, dtype=torch.float32)
    return scale, bias


class Critic(nn.Module):
    """``Q(s, a)`` ``[B]`` from observations (scaled like the actor's) and actions."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int],
        obs_scale: torch.Tensor,
        obs_bias: torch.Tensor,
        zero_last: bool = False,
    ) -> None:
        super().__init__()
        self.net = mlp(obs_dim + act_dim, 1, hidden, zero_last=zero_last)
        self.register_buffer("obs_scale", obs_scale.clone())
        self.register_buffer("obs_bias", obs_bias.clone())

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        x = torch.cat([(obs - self.obs_bias) / self.obs_scale, act], dim=-1)
        return self.net(x).squeeze(-1)


@dataclass
class SACConfig:
    """Hyper-parameters of (residual) SAC.

    Attributes:
        total_steps: environment steps.
        gamma: discount.
        actor_lr: Adam learning rate of the actor.
        critic_lr: Adam learning rate of the two critics.
        batch_size: transitions per gradient step.
        buffer_size: replay capacity.
        learning_starts: steps before the first gradient step. A run without a prior acts
            with random exploration actions until then; a residual run acts with its actor
            (which starts as the prior).
        train_freq: environment steps between learning phases.
        gradient_steps: gradient steps per learning phase.
        tau: Polyak coefficient of the target critics.
        hidden: hidden layer sizes of actor and critics.
        explore_hold: during the random warm-up, each random action in ``[low, high]`` is held
            for this many steps (1: i.i.d. uniform). Holding makes the random walk travel far
            enough to find a sparse goal (MountainCar), as temporally correlated noise does.
        warm_start_steps: residual runs only: for the first steps the prior weight is
            ``omega' * warm_start_factor`` (the public code's warm start), keeping the new
            critic's policy near the prior while it learns. 0 disables it.
        warm_start_factor: the multiplier during the warm start (10 in the public code).
        critic_warmup_steps: for this many steps after ``learning_starts`` only the critics
            learn and the actor stays as it is (a residual run keeps acting as the prior while
            its fresh ``Q_R`` fits, as the PPO customization's critic warm-up does). 0: none.
        init_actor_from_prior: residual runs only: start the actor from the prior's weights.
        critic_zero_init: start the critics' output layers at zero, so that ``Q = 0``
            everywhere (as residual soft DQN's ``Q_R``). For a residual run whose actor starts
            as the prior with ``omega' = alpha_hat``, that pair is the exact solution for a
            zero add-on, so the critic adds no noise of its own to the actor's first updates
            (the actor's own per-sample gradient noise remains; results/rql/README.md).
        her_k: hindsight experience replay for goal-conditioned tasks (``Task.relabel_goal``):
            at the end of each episode, every transition is also stored ``her_k`` times with
            the goal achieved at a uniformly drawn later step of the episode ("future"
            strategy) and the basic reward and termination under that goal. 0 disables it.
        basic_weight: the weight ``omega`` of the basic reward for a method trained on both
            rewards (``full``: ``omega r + r_R``, the from-scratch baseline of a customization
            with ``omega' = omega * alpha``); ignored by the other methods.
        seed: seed of initialization, env resets, exploration and replay sampling.
        log_interval: steps between progress lines (0: silent).
    """

    total_steps: int = 30_000
    gamma: float = 0.99
    actor_lr: float = 3e-4
    critic_lr: float = 1e-3
    batch_size: int = 128
    buffer_size: int = 100_000
    learning_starts: int = 5_000
    train_freq: int = 2
    gradient_steps: int = 1
    tau: float = 0.01
    hidden: tuple[int, ...] = (64, 64)
    explore_hold: int = 30
    warm_start_steps: int = 2_000
    warm_start_factor: float = 10.0
    critic_warmup_steps: int = 0
    init_actor_from_prior: bool = True
    critic_zero_init: bool = False
    her_k: int = 0
    basic_weight: float = 1.0
    seed: int = 0
    log_interval: int = 10_000


def _store_hindsight(
    buf: ReplayBuffer,
    episode: list[tuple],
    task: Task,
    method: Method,
    cfg: SACConfig,
    rng: np.random.Generator,
) -> None:
    """Store ``cfg.her_k`` relabelled copies of each transition of a finished episode, each with
    the goal achieved at a uniformly drawn step ``j >= t`` of the same episode."""
    steps = len(episode)
    t = np.repeat(np.arange(steps), cfg.her_k)
    j = rng.integers(t, steps)  # a later (or the same) step of the episode
    obs, act, addon, next_obs, infos = (list(x) for x in zip(*episode, strict=True))
    next_arr = np.asarray(next_obs)
    o, n, basic, term = task.relabel_goal(
        np.asarray(obs)[t], next_arr[t], next_arr[j], [infos[i] for i in t]
    )
    for k, i in enumerate(t):
        r = method.env_reward(_weighted(method, cfg, float(basic[k])), addon[i])
        buf.add(o[k], act[i], r, n[k], bool(term[k]))


def train_sac(
    task: Task | str,
    method: Method,
    config: SACConfig,
    prior: SquashedGaussianActor | None = None,
    log: Callable[[str], None] | None = print,
) -> tuple[SquashedGaussianActor, dict]:
    """Train a (residual) SAC actor on a task with a continuous (Box) action space.

    Args:
        task: the task.
        method: ``soft``/``full`` (from scratch, ``omega' = 0``) or a customization method
            (``residual``; needs ``prior``).
        config: hyper-parameters.
        prior: the frozen prior actor for a customization method.
        log: where progress lines go (``None``: silent).

    Returns:
        ``(actor, stats)`` with ``wall_s``, ``episodes`` and the last 20 episodes' mean
        ``basic``/``addon`` returns and lengths.

    Raises:
        TailorError: a discrete action space, a customization without a prior, or a non-finite
            loss.
    """
    task = get_task(task)
    cfg = config
    if method.customization and prior is None:
        raise TailorError(f"method {method.name!r} customizes a prior; pass the prior actor")
    if not method.customization:
        prior = None
    omega, alpha_hat = method.spec.omega_prime, method.spec.alpha_hat
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    env = make_env(task)
    space = env.action_space
    if not hasattr(space, "low") or len(space.shape) != 1:
        raise TailorError(
            f"SAC needs a 1-D Box action space; task {task.name!r} has {space} (use --algo dqn)"
        )
    if cfg.her_k and task.relabel_goal is None:
        raise TailorError(
            f"her_k={cfg.her_k} needs a goal-conditioned task with relabel_goal; task "
            f"{task.name!r} has none (set her_k=0)"
        )
    obs_dim, act_dim = int(np.prod(env.observation_space.shape)), int(space.shape[0])
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    ospace = env.observation_space
    if prior is not None and cfg.init_actor_from_prior:
        actor = copy.deepcopy(prior)
    else:
        actor = SquashedGaussianActor(
            obs_dim, act_dim, cfg.hidden, low, high, ospace.low, ospace.high
        )
    if prior is not None:
        prior = copy.deepcopy(prior).eval().requires_grad_(False)
    q1, q2 = (
        Critic(obs_dim, act_dim, cfg.hidden, actor.obs_scale, actor.obs_bias, cfg.critic_zero_init)
        for _ in range(2)
    )
    q1_t, q2_t = copy.deepcopy(q1), copy.deepcopy(q2)
    actor_opt = torch.optim.Adam(actor.parameters(), lr=cfg.actor_lr)
    critic_opt = torch.optim.Adam([*q1.parameters(), *q2.parameters()], lr=cfg.critic_lr)
    buf = ReplayBuffer(obs_dim, (act_dim,), min(cfg.buffer_size, cfg.total_steps * (1 + cfg.her_k)))
    episode: list[tuple] = []  # this episode's (obs, action, addon, next_obs, info), for HER

    def prior_logp(o: torch.Tensor, a: torch.Tensor) -> torch.Tensor | None:
        return prior.log_prob(o, a) if prior is not None else None

    t0 = time.perf_counter()
    obs, _ = env.reset(seed=cfg.seed)
    held, hold_left = np.zeros(act_dim), 0
    history: list[tuple[float, float, int]] = []
    ep_basic = ep_addon = 0.0
    ep_len = 0
    losses = (float("nan"), float("nan"))
    for step in range(cfg.total_steps):
        # -- act ------------------------------------------------------------------------------
        if prior is None and step < cfg.learning_starts:
            if hold_left == 0:
                held, hold_left = rng.uniform(low, high), max(1, cfg.explore_hold)
            action, hold_left = held, hold_left - 1
        else:
            with torch.no_grad():
                a_t, _ = actor.sample(torch.as_tensor(obs, dtype=torch.float32)[None], gen)
            action = a_t[0].numpy().astype(np.float64)
        next_obs, _, terminated, truncated, info = env.step(action.astype(np.float32))
        r = method.env_reward(_weighted(method, cfg, info["basic_reward"]), info["addon_reward"])
        buf.add(obs, action, r, next_obs, terminated)
        if cfg.her_k:
            episode.append((obs, action, info["addon_reward"], next_obs, info))
        ep_basic += info["basic_reward"]
        ep_addon += info["addon_reward"]
        ep_len += 1
        obs = next_obs
        if terminated or truncated:
            history.append((ep_basic, ep_addon, ep_len))
            if cfg.her_k:
                _store_hindsight(buf, episode, task, method, cfg, rng)
                episode = []
            ep_basic = ep_addon = 0.0
            ep_len = 0
            obs, _ = env.reset()

        # -- learn ----------------------------------------------------------------------------
        if step >= cfg.learning_starts and step % cfg.train_freq == 0:
            for _ in range(cfg.gradient_steps):
                warm = prior is not None and step - cfg.learning_starts < cfg.warm_start_steps
                w = omega * (cfg.warm_start_factor if warm else 1.0)
                b = buf.sample(cfg.batch_size, rng)
                with torch.no_grad():
                    a2, logp2 = actor.sample(b["next_obs"], gen)
                    y = sac_critic_target(
                        b["rew"],
                        b["done"],
                        cfg.gamma,
                        q1_t(b["next_obs"], a2),
                        q2_t(b["next_obs"], a2),
                        logp2,
                        prior_logp(b["next_obs"], a2),
                        w,
                        alpha_hat,
                    )
                critic_loss = nn.functional.mse_loss(
                    q1(b["obs"], b["act"]), y
                ) + nn.functional.mse_loss(q2(b["obs"], b["act"]), y)
                critic_opt.zero_grad()
                critic_loss.backward()
                critic_opt.step()

                actor_loss = torch.zeros(())
                if step - cfg.learning_starts >= cfg.critic_warmup_steps:
                    a_new, logp = actor.sample(b["obs"], gen)
                    lp_prior = None
                    if prior is not None:
                        # Gradient flows through a_new into the prior's log-density (frozen).
                        lp_prior = prior.log_prob(b["obs"], a_new)
                    actor_loss = sac_actor_loss(
                        logp, q1(b["obs"], a_new), q2(b["obs"], a_new), lp_prior, w, alpha_hat
                    )
                    actor_opt.zero_grad()
                    actor_loss.backward()
                    actor_opt.step()
                if not (torch.isfinite(critic_loss) and torch.isfinite(actor_loss)):
                    raise TailorError(
                        f"SAC loss is not finite at step {step} (critic "
                        f"{critic_loss.item()}, actor {actor_loss.item()})"
                    )
                with torch.no_grad():
                    for net, targ in ((q1, q1_t), (q2, q2_t)):
                        for p, pt in zip(net.parameters(), targ.parameters(), strict=True):
                            pt.mul_(1.0 - cfg.tau).add_(p, alpha=cfg.tau)
                losses = (critic_loss.item(), actor_loss.item())
        if log is not None and cfg.log_interval and (step + 1) % cfg.log_interval == 0:
            log(
                log_line(
                    "sac",
                    method,
                    step + 1,
                    cfg.total_steps,
                    history,
                    f"critic {losses[0]:.3f}  actor {losses[1]:.3f}",
                    t0,
                )
            )
    env.close()
    stats = {"wall_s": time.perf_counter() - t0, **episode_summary(history)}
    return actor.eval(), stats
