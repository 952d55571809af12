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
from dataclasses import dataclass, field
from typing import Protocol

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from tailor.algos.configs import COUNT, NONNEGATIVE, POSITIVE, UNIT, check_config
from tailor.algos.finite import check_acting, check_reward, check_trained
from tailor.algos.kl_control import adapt_scale
from tailor.algos.logs import episode_summary, log_line
from tailor.algos.replay import ReplayBuffer
from tailor.algos.soft_dqn import _weighted
from tailor.envs import Task, get_task, make_env
from tailor.errors import TailorError
from tailor.losses import SacNext, sac_actor_loss, sac_critic_target
from tailor.methods import Method
from tailor.nets import SquashedGaussianActor, mlp, obs_affine
from tailor.rundir import InterruptRequest

__all__ = ["KL_HELD_WINDOWS", "SACConfig", "train_sac"]

KL_HELD_WINDOWS = 5  # the controller updates a run's "KL held" averages (the last ones)


class TwinCritic(nn.Module):
    """The two critics ``Q_1, Q_2`` as one network with stacked weights:
    ``(obs [B, D], act [B, A]) -> [2, B]`` (row ``k`` is ``Q_{k+1}``).

    Layer ``l`` holds ``weights.l`` ``[2, in, out]`` and ``biases.l`` ``[2, 1, out]``, and one
    ``baddbmm`` runs it for both critics. A small network's gradient step is bound by the number
    of ops dispatched, not by arithmetic, so one module of half the ops (and half the autograd
    nodes, and half the tensors for Adam and the Polyak update) is what makes it faster. Each
    critic starts as :func:`tailor.nets.mlp` initialises one (``zero_last``: its output layer at
    zero, so ``Q = 0`` everywhere), ``Q_1`` drawn first. Observations are scaled like the
    actor's, ``(obs - obs_bias) / obs_scale``.
    """

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
        sizes = [obs_dim + act_dim, *hidden, 1]
        nets = [mlp(sizes, zero_last=zero_last) for _ in range(2)]
        layers = [[m for m in net if isinstance(m, nn.Linear)] for net in nets]
        pairs = list(zip(*layers, strict=True))
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([lin.weight.detach().T for lin in pair])) for pair in pairs
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([lin.bias.detach()[None] for lin in pair])) for pair in pairs
        )
        self.register_buffer("obs_scale", obs_scale.clone())
        self.register_buffer("obs_bias", obs_bias.clone())

    def forward(self, obs: torch.Tensor, act: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """``[2, B]``. ``frozen``: no gradient for the critics' own parameters (the actor loss
        needs ``dQ/da`` only; this skips the weight gradients an optimizer would discard)."""
        x = torch.cat([(obs - self.obs_bias) / self.obs_scale, act], dim=-1)
        weights, biases = list(self.weights), list(self.biases)
        if frozen:
            weights, biases = [w.detach() for w in weights], [b.detach() for b in biases]
        return twin_mlp(x, weights, biases)


def twin_mlp(
    x: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Two ReLU MLPs with stacked layers on the same input: ``x [B, in]`` -> ``[2, B]``.

    ``weights[l]`` ``[2, in_l, out_l]``, ``biases[l]`` ``[2, 1, out_l]``; the last ``out`` is 1.
    """
    h = x.expand(2, *x.shape)
    last = len(weights) - 1
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        h = torch.baddbmm(b, h, w)
        if i < last:
            h = torch.relu(h)
    return h.squeeze(-1)


@dataclass
class SACConfig:
    """Hyper-parameters of (residual) SAC.

    Attributes:
        total_steps: environment steps, summed over the ``n_envs`` envs (rounded up to a
            multiple of ``n_envs``).
        n_envs: copies of the task's env stepped together (env ``i`` first reset with seed
            ``seed + i``); the actor acts for all of them in one forward pass and every env's
            transition is stored. ``learning_starts``, ``warm_start_steps`` and
            ``critic_warmup_steps`` count environment steps; ``train_freq`` counts vector steps
            (as Stable-Baselines3 does: 4 envs with ``train_freq=1`` and ``gradient_steps=1``
            take one gradient step per 4 environment steps).
        gamma: discount.
        actor_lr: Adam learning rate of the actor.
        critic_lr: Adam learning rate of the two critics.
        batch_size: transitions per gradient step.
        buffer_size: replay capacity.
        learning_starts: steps before the first gradient step. A run without a prior acts
            with random exploration actions until then; a residual run acts with its actor
            (which starts as the prior).
        train_freq: vector steps (environment steps of each env) between learning phases.
        gradient_steps: gradient steps per learning phase (their batches drawn together).
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
        kl_target: residual runs only: hold the KL to the prior per step, ``E[log pi_theta(a|s)
            - log pi_prior(a|s)]`` (nats) measured on the actor's own samples at replay
            states, near this value by scaling ``omega'`` and ``alpha_hat`` together (RLHF's
            adaptive KL controller, :func:`tailor.algos.kl_control.adapt_scale`). The scale
            starts at 1 once the warm start and the critic warm-up are over; at scale ``s`` the
            run solves ``omega * r + r_R / s`` at the run's own ``alpha_hat`` (``omega = omega'
            / alpha``): a KL below the target gives the add-on reward more weight. 0: fixed
            coefficients.
        kl_horizon: the controller's horizon in environment steps (the scale moves by at most
            ``20% * kl_every / kl_horizon`` per update).
        kl_every: environment steps between the controller's updates; the KL is averaged over
            the actor updates between them.
        kl_scale_max: the controller's scale never exceeds this (1: the add-on reward never
            weighs less than at the run's own coefficients; ``None``: no bound).
        basic_weight: the weight ``omega`` of the basic reward for a method trained on both
            rewards (``full``: ``omega r + r_R``, the from-scratch baseline of a customization
            with ``omega' = omega * alpha``); ignored by the other methods.
        seed: seed of initialization, env resets, exploration and replay sampling.
        log_interval: steps between progress lines (0: silent).
    """

    total_steps: int = 30_000
    n_envs: int = 1
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
    kl_target: float = 0.0
    kl_horizon: int = 4096
    kl_every: int = 1000
    kl_scale_max: float | None = None
    basic_weight: float = 1.0
    seed: int = 0
    log_interval: int = 10_000

    def __post_init__(self) -> None:
        check_config(self, _SAC_BOUNDS)


_SAC_BOUNDS = {
    **dict.fromkeys(
        (
            "total_steps",
            "n_envs",
            "batch_size",
            "buffer_size",
            "train_freq",
            "gradient_steps",
            "kl_horizon",
            "kl_every",
        ),
        COUNT,
    ),
    **dict.fromkeys(("gamma", "tau"), UNIT),
    **dict.fromkeys(("actor_lr", "critic_lr", "kl_scale_max"), POSITIVE),
    **dict.fromkeys(
        (
            "learning_starts",
            "explore_hold",
            "warm_start_steps",
            "warm_start_factor",
            "critic_warmup_steps",
            "her_k",
            "kl_target",
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


# torch's fused Adam kernel (what ``torch.optim.Adam(fused=True)`` calls); private, hence looked up
# once and replaced by the public optimizer where it is missing or its signature changed.
_FUSED_ADAM = getattr(torch, "_fused_adam_", None)


class _Adam:
    """Adam with torch's defaults (betas 0.9 / 0.999, eps 1e-8), the same update as
    ``torch.optim.Adam(fused=True)`` bit for bit, as one ``torch._fused_adam_`` call.

    :meth:`step` takes the loss and gets the gradients from ``torch.autograd.grad``: no
    ``.grad`` to zero or accumulate, and none of ``Optimizer.step``'s per-call Python (about
    0.1 ms each, a tenth of a small network's gradient step).
    """

    def __init__(self, params: Sequence[nn.Parameter], lr: float) -> None:
        self.params, self.lr = list(params), lr
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self._step = torch.zeros(())  # one counter for all tensors (the kernel only reads it)
        # ``_fused_adam_`` is private: a torch without it (or with another signature) gets the
        # public fused optimizer, the same numbers at a little more Python per step.
        self._public: torch.optim.Adam | None = None
        if _FUSED_ADAM is None:
            self._public = torch.optim.Adam(self.params, lr=lr, fused=True)

    def step(self, loss: torch.Tensor) -> None:
        grads = torch.autograd.grad(loss, self.params)
        if self._public is None:
            try:
                self._fused(grads)
                return
            except TypeError:  # another signature (fails at the first call, before any state)
                self._public = torch.optim.Adam(self.params, lr=self.lr, fused=True)
        for p, g in zip(self.params, grads, strict=True):
            p.grad = g
        self._public.step()

    def _fused(self, grads: Sequence[torch.Tensor]) -> None:
        _FUSED_ADAM(
            self.params,
            list(grads),
            self.exp_avg,
            self.exp_avg_sq,
            [],
            [self._step + 1] * len(self.params),
            lr=self.lr,
            beta1=0.9,
            beta2=0.999,
            weight_decay=0.0,
            eps=1e-8,
            amsgrad=False,
            maximize=False,
        )
        self._step += 1


class _Learner:
    """The actor, the twin critic and its Polyak target, their optimizers: SAC's gradient steps.

    Built for few dispatched ops per step (a small network's step costs mostly dispatch,
    not FLOPs): one :class:`TwinCritic` module, fused Adam (one kernel for all tensors of a
    network), one ``_foreach_lerp_`` for the Polyak update, no critic weight gradients in the
    actor loss, and one finiteness check (one sync) per learning phase.
    """

    def __init__(
        self,
        actor: SquashedGaussianActor,
        critic: TwinCritic,
        prior: SquashedGaussianActor | LogProbPrior | None,
        cfg: SACConfig,
        alpha_hat: float,
        gen: torch.Generator,
    ) -> None:
        self.actor, self.critic, self.prior, self.cfg = actor, critic, prior, cfg
        self.alpha_hat, self.gen = alpha_hat, gen
        self.critic_t = copy.deepcopy(critic).requires_grad_(False)
        self.actor_opt = _Adam(list(actor.parameters()), cfg.actor_lr)
        self.critic_opt = _Adam(list(critic.parameters()), cfg.critic_lr)
        self._params = list(critic.parameters())
        self._params_t = list(self.critic_t.parameters())
        self._no_loss = torch.zeros(())
        self.scale = 1.0  # the KL controller's multiplier of omega' and alpha_hat
        self.measure_kl = False  # sum log pi_theta - log pi_prior of the actor's samples
        self._kl_sum, self._kl_count = torch.zeros(()), 0

    def take_kl(self) -> float:
        """The mean KL per step measured since the last call (nan if none), and a reset."""
        kl = self._kl_sum.item() / self._kl_count if self._kl_count else float("nan")
        self._kl_sum, self._kl_count = torch.zeros(()), 0
        return kl

    def phase(
        self, batch: dict[str, torch.Tensor], w: float, update_actor: bool, step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``cfg.gradient_steps`` gradient steps, step ``k`` on the ``k``-th ``batch_size``
        rows of ``batch``; returns the last step's ``(critic loss, actor loss)``.

        Raises:
            TailorError: a loss of the phase is not finite (``step``: the environment step).
        """
        n, steps = self.cfg.batch_size, self.cfg.gradient_steps
        # One batch needs no slicing (each slice is an op, and this runs every gradient step).
        batches = [batch] if steps == 1 else [
            {k: v[i * n : (i + 1) * n] for k, v in batch.items()} for i in range(steps)
        ]  # fmt: skip
        losses = [self._step(b, w, update_actor) for b in batches]
        flat = torch.stack([x for pair in losses for x in pair])
        if not bool(torch.isfinite(flat).all()):
            bad = next(pair for pair in losses if not bool(torch.isfinite(torch.stack(pair)).all()))
            raise TailorError(
                f"SAC loss is not finite at step {step} (critic {bad[0].item()}, actor "
                f"{bad[1].item()})"
            )
        return losses[-1]

    def _step(
        self, b: dict[str, torch.Tensor], w: float, update_actor: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        actor, critic, prior, gen = self.actor, self.critic, self.prior, self.gen
        obs, next_obs = b["obs"], b["next_obs"]
        alpha_hat = self.alpha_hat * self.scale
        with torch.no_grad():
            a2, logp2 = actor.sample(next_obs, gen)
            q_next = self.critic_t(next_obs, a2)
            nxt = SacNext(
                q_next[0],
                q_next[1],
                logp2,
                prior.log_prob(next_obs, a2) if prior is not None else None,
            )
            y = sac_critic_target(b["rew"], b["done"], self.cfg.gamma, nxt, w, alpha_hat)
        q = critic(obs, b["act"])
        # The sum of the two critics' mean squared errors.
        critic_loss = 2.0 * nn.functional.mse_loss(q, y.expand_as(q))
        self.critic_opt.step(critic_loss)

        actor_loss = self._no_loss
        if update_actor:
            a_new, logp = actor.sample(obs, gen)
            lp_prior = None
            if prior is not None:
                # Gradient flows through a_new into the prior's log-density (frozen).
                lp_prior = prior.log_prob(obs, a_new)
            q_new = critic(obs, a_new, frozen=True)
            actor_loss = sac_actor_loss(logp, q_new[0], q_new[1], lp_prior, w, alpha_hat)
            self.actor_opt.step(actor_loss)
            if self.measure_kl and lp_prior is not None:
                self._kl_sum += (logp - lp_prior).detach().mean()
                self._kl_count += 1
        with torch.no_grad():
            torch._foreach_lerp_(self._params_t, self._params, self.cfg.tau)
        return critic_loss.detach(), actor_loss.detach()


@dataclass
class _Slot:
    """One env of the vector and what the loop carries for it from step to step."""

    env: gym.Env
    obs: np.ndarray
    held: np.ndarray  # the random warm-up's held action and the steps it has left
    hold_left: int = 0
    basic: float = 0.0  # this episode's returns and length so far
    addon: float = 0.0
    length: int = 0
    episode: list[tuple] = field(default_factory=list)  # (obs, action, addon, next_obs, info)


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
        ``basic``/``addon`` returns and lengths; with ``kl_target``, the controller's final
        ``kl_scale`` and ``kl_held``, the KL per step measured over its last
        :data:`KL_HELD_WINDOWS` updates (the frontier's "KL held").

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
    run = _SACRun.build(task, method, cfg, prior, actor_init)
    t0 = time.perf_counter()
    run.reset()
    losses = (torch.tensor(float("nan")), torch.tensor(float("nan")))
    n, total = cfg.n_envs, run.vector_steps * cfg.n_envs
    step = 0  # environment steps taken before this vector step (env 0's step index)
    for v in range(run.vector_steps):
        step = v * n
        run.step_envs(run.act(step), step)  # act (all envs at once), then step and store each
        if step >= cfg.learning_starts and v % cfg.train_freq == 0:
            losses = run.learn(step)
        done = step + n
        if (
            log is not None
            and cfg.log_interval
            and done // cfg.log_interval > step // cfg.log_interval
        ):
            losses_text = f"critic {losses[0].item():.3f}  actor {losses[1].item():.3f}"
            losses_text += run.kl_text()
            log(log_line("sac", method, done, total, run.history, losses_text, t0))
        if interrupt is not None and interrupt.requested:  # Ctrl-C: stop after a whole step
            break
    for env in run.envs:
        env.close()
    check_trained("SAC", {"actor": run.actor, "critic": run.learner.critic})
    stats = {"wall_s": time.perf_counter() - t0, **episode_summary(run.history)}
    if run.prior is not None and cfg.kl_target:
        recent = run.kl_history[-KL_HELD_WINDOWS:]
        held = float(np.mean(recent)) if recent else float("nan")
        stats.update(kl_scale=run.learner.scale, kl_held=held)
    if interrupt is not None and interrupt.requested:
        stats["interrupted_at_step"] = step + n
    return run.actor.eval(), stats


@dataclass
class _SACRun:
    """What :func:`train_sac`'s loop carries: envs, networks, replay buffer, random streams."""

    task: Task
    method: Method
    cfg: SACConfig
    envs: list[gym.Env]
    low: np.ndarray  # [A] the action bounds
    high: np.ndarray
    actor: SquashedGaussianActor
    prior: SquashedGaussianActor | LogProbPrior | None  # None: from scratch
    learner: _Learner
    buf: ReplayBuffer
    rng: np.random.Generator  # warm-up actions, replay sampling, hindsight goals
    gen: torch.Generator  # the actor's action noise
    vector_steps: int
    slots: list[_Slot] = field(default_factory=list)
    history: list[tuple[float, float, int]] = field(default_factory=list)  # finished episodes
    kl_history: list[float] = field(default_factory=list)  # the KL of each controller update
    next_kl_update: int = 0  # the environment step of the controller's next update

    @classmethod
    def build(
        cls,
        task: Task,
        method: Method,
        cfg: SACConfig,
        prior: SquashedGaussianActor | LogProbPrior | None,
        actor_init: SquashedGaussianActor | None,
    ) -> _SACRun:
        """Seeds, envs, actor (from the prior's weights for a customization), twin critic,
        replay buffer. The order of the steps fixes the random streams: do not reorder."""
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        envs = [make_env(task) for _ in range(cfg.n_envs)]
        space = envs[0].action_space
        if not hasattr(space, "low") or len(space.shape) != 1:
            raise TailorError(
                f"SAC needs a 1-D Box action space; task {task.name!r} has {space} (use --algo dqn)"
            )
        if cfg.her_k and task.relabel_goal is None:
            raise TailorError(
                f"her_k={cfg.her_k} needs a goal-conditioned task with relabel_goal; task "
                f"{task.name!r} has none (set her_k=0)"
            )
        ospace = envs[0].observation_space
        obs_dim, act_dim = int(np.prod(ospace.shape)), int(space.shape[0])
        low, high = space.low.astype(np.float64), space.high.astype(np.float64)
        start = prior if isinstance(prior, SquashedGaussianActor) else actor_init
        if prior is not None and start is not None and cfg.init_actor_from_prior:
            actor = copy.deepcopy(start).requires_grad_(True)  # our copy trains
        else:
            actor = SquashedGaussianActor(
                obs_dim, act_dim, cfg.hidden, (low, high), (ospace.low, ospace.high)
            )
        if isinstance(prior, nn.Module):
            prior = copy.deepcopy(prior).eval().requires_grad_(False)
        # The critics scale observations by the env's bounds (an imported actor may scale its
        # own inputs by a normalizer's statistics instead).
        o_scale, o_bias = obs_affine(obs_dim, ospace.low, ospace.high)
        critic = TwinCritic(obs_dim, act_dim, cfg.hidden, o_scale, o_bias, cfg.critic_zero_init)
        learner = _Learner(actor, critic, prior, cfg, method.spec.alpha_hat, gen)
        vector_steps = -(-cfg.total_steps // cfg.n_envs)
        buf = ReplayBuffer(
            obs_dim, (act_dim,), min(cfg.buffer_size, vector_steps * cfg.n_envs * (1 + cfg.her_k))
        )
        return cls(
            task, method, cfg, envs, low, high, actor, prior, learner, buf, rng, gen, vector_steps
        )

    def reset(self) -> None:
        """Reset every env (env ``i`` with seed ``cfg.seed + i``)."""
        act_dim = self.low.shape[0]
        self.slots = [
            _Slot(env, env.reset(seed=self.cfg.seed + i)[0], np.zeros(act_dim))
            for i, env in enumerate(self.envs)
        ]

    def act(self, step: int) -> list[np.ndarray]:
        """One action ``[A]`` per env: random (held) during a from-scratch warm-up, else sampled
        from the actor for all envs at once."""
        cfg, slots = self.cfg, self.slots
        if self.prior is None and step < cfg.learning_starts:
            return [_explore(s, self.low, self.high, cfg.explore_hold, self.rng) for s in slots]
        with torch.no_grad():
            obs_t = torch.as_tensor(np.stack([s.obs for s in slots]), dtype=torch.float32)
            a_t, _ = self.actor.sample(obs_t, self.gen)
        check_acting("SAC", a_t, {"actor": self.actor}, step)
        return list(a_t.numpy().astype(np.float64))

    def step_envs(self, actions: list[np.ndarray], step: int) -> None:
        """Step each env, store the transition (and, with HER, the finished episode's
        relabelled ones), keep the episode returns; an ended episode restarts."""
        cfg, method = self.cfg, self.method
        for i, (slot, action) in enumerate(zip(self.slots, actions, strict=True)):
            next_obs, _, terminated, truncated, info = slot.env.step(action.astype(np.float32))
            r = method.env_reward(
                _weighted(method, cfg, info["basic_reward"]), info["addon_reward"]
            )
            check_reward("SAC", r, step + i)
            self.buf.add(slot.obs, action, r, next_obs, terminated)
            if cfg.her_k:
                slot.episode.append((slot.obs, action, info["addon_reward"], next_obs, info))
            slot.basic += info["basic_reward"]
            slot.addon += info["addon_reward"]
            slot.length += 1
            slot.obs = next_obs
            if terminated or truncated:
                self.history.append((slot.basic, slot.addon, slot.length))
                if cfg.her_k:
                    _store_hindsight(self.buf, slot.episode, self.task, method, cfg, self.rng)
                    slot.episode = []
                slot.basic = slot.addon = 0.0
                slot.length = 0
                slot.obs, _ = slot.env.reset()

    def learn(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One learning phase on a replay sample; returns its last ``(critic, actor)`` loss.

        A customization weighs the prior's log-density by ``warm_start_factor`` for its first
        ``warm_start_steps`` and trains the critic alone for ``critic_warmup_steps``."""
        cfg, learner = self.cfg, self.learner
        warm = self.prior is not None and step - cfg.learning_starts < cfg.warm_start_steps
        w = self.method.spec.omega_prime * learner.scale * (cfg.warm_start_factor if warm else 1.0)
        update_actor = step - cfg.learning_starts >= cfg.critic_warmup_steps
        batch = self.buf.sample(cfg.batch_size * cfg.gradient_steps, self.rng)
        losses = learner.phase(batch, w, update_actor, step)
        if self.prior is not None and cfg.kl_target > 0:
            self._control_kl(step)
        return losses

    def _control_kl(self, step: int) -> None:
        """The adaptive KL controller: from the end of the warm start and critic warm-up, every
        ``kl_every`` steps, the scale of ``omega'`` and ``alpha_hat`` follows the KL measured
        since the last update (:func:`~tailor.algos.kl_control.adapt_scale`)."""
        cfg, learner = self.cfg, self.learner
        start = cfg.learning_starts + max(cfg.warm_start_steps, cfg.critic_warmup_steps)
        if step < start:
            return
        if not learner.measure_kl:  # the first phase after the warm-ups: measure from here
            learner.measure_kl, self.next_kl_update = True, step + cfg.kl_every
            return
        if step >= self.next_kl_update:
            kl = learner.take_kl()
            self.kl_history.append(kl)
            scale = adapt_scale(learner.scale, kl, cfg.kl_target, cfg.kl_every, cfg.kl_horizon)
            cap = cfg.kl_scale_max
            learner.scale = scale if cap is None else min(scale, cap)
            self.next_kl_update += cfg.kl_every

    def kl_text(self) -> str:
        """The controller's state for a progress line (empty when it is off)."""
        if self.prior is None or not self.cfg.kl_target:
            return ""
        kl = self.kl_history[-1] if self.kl_history else float("nan")
        return f"  KL {kl:.3f} (target {self.cfg.kl_target:g})  scale {self.learner.scale:.3g}"


def _explore(
    slot: _Slot, low: np.ndarray, high: np.ndarray, hold: int, rng: np.random.Generator
) -> np.ndarray:
    """The random warm-up's action of one env: uniform in ``[low, high]``, each drawn action
    held for ``hold`` steps (at least 1)."""
    if slot.hold_left == 0:
        slot.held, slot.hold_left = rng.uniform(low, high), max(1, hold)
    slot.hold_left -= 1
    return slot.held
