"""SAC (prior training) and residual SAC (customization), one loop for both.

Twin critics with Polyak-averaged targets and a tanh-squashed Gaussian actor, at a *fixed*
temperature (the prior's ``log pi`` is only meaningful for a max-entropy policy at a known
temperature, so no automatic tuning). With the method's coefficients (``resolve``)::

    critic target  r + gamma (1-d) [min Q_targ(s', a') + omega' log pi(a'|s')
                                    - alpha_hat log pi_theta(a'|s')]
    actor loss     alpha_hat log pi_theta(a|s) - min Q(s, a) - omega' log pi(a|s)

``omega' = 0`` is plain SAC at temperature ``alpha_hat`` (prior training with ``soft`` on the
basic reward, the from-scratch baseline with ``full`` on basic + add-on). A ``residual`` run
optimises the add-on reward only, with ``log pi`` from the frozen prior (a tailor actor, or any
object with ``log_prob``: an imported SB3 SAC/TQC policy); its actor starts from the prior's
weights (``actor_init`` for an imported one) and its critic from scratch. The public code's
warm start multiplies ``omega'`` by 10 for the first steps (``warm_start_steps``,
``warm_start_factor``).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from tailor.algos.configs import COUNT, NONNEGATIVE, POSITIVE, UNIT, check_config
from tailor.algos.finite import check_acting, check_reward, check_trained
from tailor.algos.logs import episode_summary, log_line
from tailor.algos.replay import ReplayBuffer
from tailor.algos.soft_dqn import _weighted
from tailor.envs import Task, get_task, make_env
from tailor.errors import TailorError
from tailor.losses import sac_actor_loss, sac_critic_target
from tailor.methods import Method
from tailor.nets import SquashedGaussianActor, mlp, obs_affine
from tailor.rundir import InterruptRequest

__all__ = ["SACConfig", "train_sac"]


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
        self.net = mlp([obs_dim + act_dim, *hidden, 1], zero_last=zero_last)
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

    def __post_init__(self) -> None:
        check_config(self, _SAC_BOUNDS)


_SAC_BOUNDS = {
    **dict.fromkeys(
        ("total_steps", "batch_size", "buffer_size", "train_freq", "gradient_steps"), COUNT
    ),
    **dict.fromkeys(("gamma", "tau"), UNIT),
    **dict.fromkeys(("actor_lr", "critic_lr"), POSITIVE),
    **dict.fromkeys(
        (
            "learning_starts",
            "explore_hold",
            "warm_start_steps",
            "warm_start_factor",
            "critic_warmup_steps",
            "her_k",
            "log_interval",
        ),
        NONNEGATIVE,
    ),
}


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


class LogProbPrior(Protocol):
    """What the loop asks of a prior: ``log pi(a|s)`` ``[B]``, differentiable in ``a``."""

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor: ...


def train_sac(
    task: Task | str,
    method: Method,
    config: SACConfig,
    prior: SquashedGaussianActor | LogProbPrior | None = None,
    log: Callable[[str], None] | None = print,
    *,
    actor_init: SquashedGaussianActor | None = None,
    interrupt: InterruptRequest | None = None,
) -> tuple[SquashedGaussianActor, dict]:
    """Train a (residual) SAC actor on a task with a continuous (Box) action space.

    The loop asks the prior for one thing, ``prior.log_prob(obs, action)`` of actions the actor
    sampled (in the critic target, and in the actor loss with the gradient flowing through the
    action into the frozen density). A tailor actor is copied and frozen; any other prior (an
    imported SB3 SAC/TQC policy, :class:`tailor.priors.policies.SquashedGaussianPrior`) must
    already be frozen and is used as it is.

    Args:
        task: the task.
        method: ``soft``/``full`` (from scratch, ``omega' = 0``) or a customization method
            (``residual``; needs ``prior``).
        config: hyper-parameters.
        prior: the frozen prior for a customization method: a tailor actor, or any object with
            ``log_prob`` (:class:`LogProbPrior`).
        log: where progress lines go (``None``: silent).
        actor_init: the actor a residual run starts from when ``prior`` is not itself a tailor
            actor (``SquashedGaussianPrior.to_actor()``); without it (and for
            ``init_actor_from_prior=False``) the actor starts from scratch.

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
    start = prior if isinstance(prior, SquashedGaussianActor) else actor_init
    if prior is not None and start is not None and cfg.init_actor_from_prior:
        actor = copy.deepcopy(start)
    else:
        actor = SquashedGaussianActor(
            obs_dim, act_dim, cfg.hidden, low, high, ospace.low, ospace.high
        )
    if isinstance(prior, nn.Module):
        prior = copy.deepcopy(prior).eval().requires_grad_(False)
    # The critics scale observations by the env's bounds (an imported actor may scale its own
    # inputs by a normalizer's statistics instead).
    o_scale, o_bias = obs_affine(obs_dim, ospace.low, ospace.high)
    q1, q2 = (
        Critic(obs_dim, act_dim, cfg.hidden, o_scale, o_bias, cfg.critic_zero_init)
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
            check_acting("SAC", a_t, {"actor": actor}, step)
            action = a_t[0].numpy().astype(np.float64)
        next_obs, _, terminated, truncated, info = env.step(action.astype(np.float32))
        r = method.env_reward(_weighted(method, cfg, info["basic_reward"]), info["addon_reward"])
        check_reward("SAC", r, step)
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
        if interrupt is not None and interrupt.requested:  # Ctrl-C: stop after a whole step
            break
    env.close()
    check_trained("SAC", {"actor": actor, "q1": q1, "q2": q2})
    stats = {"wall_s": time.perf_counter() - t0, **episode_summary(history)}
    if interrupt is not None and interrupt.requested:
        stats["interrupted_at_step"] = step + 1
    return actor.eval(), stats
