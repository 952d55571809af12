"""PPO for every method on a batched-tensor env, on the env's device (Isaac Lab, mjlab, ...).

The loop (:func:`train_tensor`) in rsl-rl's ``OnPolicyRunner`` shape, everything a torch tensor on
``env.device`` (no numpy round trip, no host sync per step)::

    for each iteration:
        rollout:  a ~ pi_theta(.|s); record log pi_theta(a|s), V(s) (+ log pi_prior(a|s));
                  obs, r, dones, extras = env.step(a); r = method's env reward (below)
        returns:  r' = reformulate(r, log pi_prior, log pi_theta)      (tailor.reward)
                  GAE(r', V) with time-outs bootstrapped as rsl-rl does  (tailor.returns)
        update:   PPOLearner.update: clipped surrogate + clipped value loss (tailor.losses)

The env is rsl-rl 5's ``VecEnv`` (:mod:`tailor.envs.tensor_vec`). Its reward is the method's
environment reward; with ``addon`` (a callable over the env's tensors) the env reward is the basic
reward ``r``, the callable's the add-on ``r_R``, and the method picks (``r_R`` for greedy / kl /
residual, ``r + r_R`` for full, ``r`` for the others). The acting, the update, the networks and
the hyper-parameters' meaning are the numpy loop's (:class:`~tailor.algos.ppo_learner.PPOLearner`,
:class:`~tailor.algos.ppo_config.PPOConfig`); :class:`TensorPPOConfig` holds rsl-rl-like defaults.

Time limits: ``extras["time_outs"]`` marks the ends that were truncations. The env has already
reset those envs, so the true last observation is gone; as rsl-rl does, the bootstrap value is
``V(s_t)`` of the state the last action was taken in: ``delta_t = r_t + gamma V(s_t) - V(s_t)``.

The adaptive KL controller (``TensorPPOConfig.kl_target``, as ``PPOConfig.kl_target``): after
each PPO iteration the per-step KL to the prior measured on the rollout,
``mean(log pi_theta(a|s) - log pi_prior(a|s))`` (one host read), moves the scale of
``(omega', alpha_hat)`` by :func:`tailor.algos.kl_control.adapt_scale`; the next rollout's reward
uses the scaled coefficients. For a prior of unknown temperature,
:func:`tailor.experiments.unknown_temperature.tensor_customization` picks the KL-held settings.

A run directory (``run=TensorRun(out_dir)``, :mod:`tailor.algos.tensor_ppo_state`): metrics.csv
and TensorBoard as they happen, a checkpoint every ``checkpoint_every`` iterations, an exact
``resume`` (given an env that can save its state), SIGTERM / Ctrl-C saves, and the rsl-rl
checkpoint (:mod:`tailor.algos.rsl_rl_checkpoint`) beside at the end.

Not here: an asymmetric critic (the critic reads the actor's group), recurrent policies.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch

from tailor.algos.kl_control import adapt_scale, scaled_method
from tailor.algos.ppo_config import PPOConfig
from tailor.algos.ppo_learner import NonFiniteLoss, PPOLearner, prior_kl_term
from tailor.algos.rollout import TensorRollout
from tailor.algos.tensor_ppo_state import TensorRun, TensorRunState, run_record
from tailor.envs.tensor_vec import (
    AddonFn,
    AddonInputs,
    TensorVecEnv,
    check_env,
    observation_tensor,
    step_env,
)
from tailor.errors import TailorError
from tailor.methods import Method
from tailor.nets import non_finite_state
from tailor.priors import PolicyPrior, check_spaces
from tailor.reward import reformulate
from tailor.rundir import InterruptRequest

__all__ = ["TensorPPOConfig", "TensorPPOResult", "TensorRun", "rollout_reward", "train_tensor"]


@dataclass
class TensorPPOConfig:
    """Hyper-parameters of :func:`train_tensor`; defaults as rsl-rl's PPO and Isaac Lab's.

    Attributes:
        num_iterations: rollouts + updates to run.
        num_steps_per_env: steps per env per rollout ``T`` (rsl-rl's ``num_steps_per_env``).
        num_epochs: passes over each rollout.
        num_minibatches: minibatches per epoch (must divide ``num_envs * T``).
        clip: PPO ratio clip (also the value clip).
        clip_value_loss: clip the value update around the rollout's values.
        value_loss_coef: weight of the value loss.
        gamma: discount factor.
        lam: GAE lambda.
        learning_rate: Adam learning rate (initial, with ``schedule="adaptive"``).
        schedule: ``"adaptive"`` (from the KL, ``desired_kl``) or ``"fixed"``.
        desired_kl: target KL of the adaptive schedule.
        target_kl: stop an update's epochs early when the KL exceeds ``1.5 * target_kl``.
        kl_target: customization only: hold the per-step KL to the prior,
            ``E[log pi_theta(a|s) - log pi_prior(a|s)]`` over each rollout, near this many nats
            by scaling ``omega'`` and ``alpha_hat`` together after every PPO iteration
            (``PPOConfig.kl_target``; :func:`tailor.algos.kl_control.adapt_scale`). ``None``:
            fixed coefficients.
        kl_horizon: the controller's horizon in env steps (``PPOConfig.kl_horizon``): the scale
            changes by at most a factor ``1 +- 0.2 * num_envs * num_steps_per_env /
            kl_horizon`` per iteration. ``None``: one rollout batch (at most 20% per
            iteration). Must exceed a fifth of the batch, so that the scale stays positive.
        kl_estimator: where the reward's KL term goes (``PPOConfig.kl_estimator``):
            ``"k1-reward"`` sampled in the reward, ``"exact-loss"`` in closed form in the loss.
        lr_min: lower bound of the adaptive learning rate.
        lr_max: upper bound of the adaptive learning rate.
        max_grad_norm: gradient-norm clip.
        normalize_obs: running observation normalization of a fresh policy (a customization
            keeps the prior's normalizer, frozen).
        normalize_advantages: standardize advantages over the rollout.
        normalize_rewards: divide the reformulated reward by the running std of the discounted
            return (off in rsl-rl; tailor's numpy default is on).
        hidden: hidden sizes of the critic, and of the actor when trained from scratch.
        activation: their activation (an rsl-rl name: ``"elu"``, ``"relu"``, ...).
        init_std: initial action std of a fresh actor.
        critic_warmup_fraction: customization: the first iterations fit the fresh critic alone
            (this fraction of the run; the actor stays the prior bit for bit).
        obs_group: the observation group the actor and critic read (Isaac Lab: ``"policy"``);
            ignored when the env returns a plain tensor.
        seed: seed of the networks, the action noise and the minibatch order.
    """

    num_iterations: int = 100
    num_steps_per_env: int = 24
    num_epochs: int = 5
    num_minibatches: int = 4
    clip: float = 0.2
    clip_value_loss: bool = True
    value_loss_coef: float = 1.0
    gamma: float = 0.99
    lam: float = 0.95
    learning_rate: float = 1e-3
    schedule: str = "adaptive"
    desired_kl: float = 0.01
    target_kl: float | None = None
    kl_target: float | None = None
    kl_horizon: int | None = None
    kl_estimator: str = "k1-reward"
    lr_min: float = 1e-5
    lr_max: float = 1e-2
    max_grad_norm: float = 1.0
    normalize_obs: bool = True
    normalize_advantages: bool = True
    normalize_rewards: bool = False
    hidden: tuple[int, ...] = (256, 256, 256)
    activation: str = "elu"
    init_std: float = 1.0
    critic_warmup_fraction: float = 0.05
    obs_group: str = "policy"
    seed: int = 0

    def ppo_config(self, num_envs: int) -> PPOConfig:
        """The :class:`PPOConfig` the learner reads (validated), for ``num_envs`` envs."""
        shared = {
            f: getattr(self, f)
            for f in (
                "num_epochs",
                "num_minibatches",
                "clip",
                "clip_value_loss",
                "value_loss_coef",
                "gamma",
                "lam",
                "learning_rate",
                "schedule",
                "desired_kl",
                "target_kl",
                "kl_target",
                "kl_estimator",
                "lr_min",
                "lr_max",
                "max_grad_norm",
                "normalize_obs",
                "normalize_advantages",
                "normalize_rewards",
                "hidden",
                "activation",
                "init_std",
                "critic_warmup_fraction",
                "seed",
            )
        }
        n_iter = self.num_iterations
        if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 1:
            raise TailorError(f"num_iterations must be a positive integer, got {n_iter!r}")
        batch = num_envs * self.num_steps_per_env
        horizon = batch if self.kl_horizon is None else self.kl_horizon
        cfg = PPOConfig(
            total_steps=self.num_iterations * batch,
            num_envs=num_envs,
            num_steps=self.num_steps_per_env,
            torch_threads=None,
            tensorboard=False,
            kl_horizon=horizon,
            **shared,
        )
        cfg.validate()
        if self.kl_target is not None and 5 * cfg.kl_horizon <= batch:
            raise TailorError(
                f"kl_horizon={cfg.kl_horizon} is too short for a batch of {batch} steps: "
                f"the KL controller's scale could turn negative in one iteration (it moves by "
                f"up to 0.2 * batch / kl_horizon); use kl_horizon > {batch // 5} or None (one "
                "batch)"
            )
        return cfg


@dataclass
class TensorPPOResult:
    """What :func:`train_tensor` returns.

    Attributes:
        learner: actor, critic, normalizer and optimizer (on the env's device): what
            :func:`tailor.algos.rsl_rl_checkpoint.save_rsl_rl_checkpoint` writes.
        iterations: iterations done.
        steps: env steps done (``iterations * num_envs * T``).
        metrics: one row per iteration (see :func:`train_tensor`).
        buf: the last rollout's storage (:class:`~tailor.algos.rollout.TensorRollout`).
        wall_s: seconds the call took.
        kl_scale: the KL controller's final multiplier of ``(omega', alpha_hat)`` (1 without
            ``kl_target``).
        out_dir: the run directory (``None`` without ``run``).
    """

    learner: PPOLearner
    iterations: int
    steps: int
    buf: TensorRollout
    metrics: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    kl_scale: float = 1.0
    out_dir: Any = None


@dataclass
class _Loop:
    """What the loop carries: env, learner, storage, the reward's pieces, episode sums."""

    env: TensorVecEnv
    method: Method
    config: PPOConfig
    group: str
    learner: PPOLearner
    buf: TensorRollout
    prior: PolicyPrior | None
    addon: AddonFn | None
    ep_return: torch.Tensor  # [N] running env reward sum of each env's episode
    ended: torch.Tensor  # [2] (sum of finished episodes' returns, their count) this iteration
    obs: Any = None  # what the next rollout starts from (the env's observations)


def train_tensor(
    env: TensorVecEnv,
    method: Method,
    config: TensorPPOConfig | None = None,
    *,
    prior: PolicyPrior | None = None,
    addon: AddonFn | None = None,
    callback: Callable[[dict[str, Any]], bool] | None = None,
    run: TensorRun | None = None,
) -> TensorPPOResult:
    """Train (or customize ``prior``) with PPO on a batched-tensor env, on ``env.device``.

    Args:
        env: rsl-rl 5's ``VecEnv`` contract (:mod:`tailor.envs.tensor_vec`).
        method: from :func:`tailor.methods.resolve`: the reward's two coefficients, its entropy
            bonus, which env reward (with ``addon``).
        config: hyper-parameters (:class:`TensorPPOConfig`).
        prior: the frozen prior (a Gaussian :class:`~tailor.priors.PolicyPrior`, e.g.
            ``load_prior`` of an rsl-rl checkpoint); required by customization methods. Its
            modules are moved to ``env.device``; the actor starts as a copy of it.
        addon: ``r_R`` as a callable over the step's tensors (:class:`AddonInputs` -> ``[N]``);
            ``None``: the env's reward is already the method's (e.g. an Isaac Lab reward term).
        callback: called with every iteration's row; ``True`` stops after that iteration.
        run: a run directory (:class:`~tailor.algos.tensor_ppo_state.TensorRun`: metrics.csv,
            TensorBoard, checkpoints, resume, the rsl-rl checkpoint at the end); ``None``
            writes nothing. With it, Ctrl-C / SIGTERM / SIGHUP finish the iteration, save and
            raise :class:`tailor.rundir.Stopped` (exit code ``128 + signal``).

    Returns:
        A :class:`TensorPPOResult`; each metrics row holds ``iteration``, ``steps``,
        ``reward`` (mean reformulated reward), ``env_reward`` (its env part), ``episode_return``
        (mean env-reward return of the episodes that ended, ``nan`` if none), ``episodes``,
        ``value_loss``, ``policy_loss``, ``entropy``, ``kl``, ``clip_fraction``,
        ``learning_rate``, ``kl_prior`` (the rollout's mean ``log pi_theta - log pi_prior``,
        ``nan`` when not recorded), ``kl_scale`` (the multiplier of ``(omega', alpha_hat)``
        this iteration's reward used), ``warmup``, ``steps_per_s``. On a resume, the rows of
        this call only (``iteration`` counts on from the checkpoint).

    Raises:
        TailorError: a bad env, a missing or unsuitable prior, a non-finite reward, observation,
            loss or network (the last checkpoint is kept), a run directory that is not this
            run's.
    """
    t0 = time.perf_counter()
    config = copy.deepcopy(config) if config is not None else TensorPPOConfig()
    check_env(env)
    cfg = config.ppo_config(int(env.num_envs))
    loop = _set_up(env, method, cfg, config.obs_group, prior, addon)
    hooks = None
    if run is not None:
        hooks = TensorRunState(run, run_record(config, method, env, loop.buf.obs.shape[-1], prior))
    rows: list[dict[str, Any]] = []
    with hooks.guard() if hooks is not None else nullcontext(InterruptRequest()) as interrupt:
        start = hooks.start(loop) if hooks is not None else 0
        loop.obs = env.get_observations()
        for it in range(start, config.num_iterations):
            rows.append(_iterate(loop, it))
            stop = (callback is not None and bool(callback(rows[-1]))) or interrupt.requested
            if hooks is not None:
                hooks.after_iteration(loop, rows[-1], save=stop or it + 1 == config.num_iterations)
            if stop:
                break
        n_done = start + len(rows)
        if hooks is not None:
            hooks.finish(loop, n_done)
        if interrupt.requested:  # a stop signal: after a whole iteration and its checkpoint
            raise KeyboardInterrupt(f"checkpoint at iteration {n_done} in {str(run.out_dir)!r}")
    return TensorPPOResult(
        loop.learner,
        n_done,
        n_done * cfg.batch_size,
        loop.buf,
        rows,
        time.perf_counter() - t0,
        loop.learner.kl_scale,
        None if run is None else hooks.run_dir,
    )


def _iterate(loop: _Loop, it: int) -> dict[str, Any]:
    """Iteration ``it``: rollout -> reformulated reward and GAE -> KL controller -> update;
    returns its metrics row.

    Raises:
        TailorError: a non-finite reward, observation, loss or network.
    """
    t_iter = time.perf_counter()
    cfg, learner = loop.config, loop.learner
    warmup_steps = int(cfg.critic_warmup_fraction * cfg.total_steps)
    warmup = loop.method.customization and it * cfg.batch_size < warmup_steps
    with torch.inference_mode():
        loop.obs = _collect(loop, loop.obs)  # 1. rollout
    scale = learner.kl_scale  # 2. returns, with the controller's coefficients
    method = scaled_method(loop.method, scale)
    method, prior_kl = prior_kl_term(method, cfg.kl_estimator, loop.buf, loop.prior)
    rewards, advantages, returns, norm_obs = _targets(loop, loop.obs, method)
    _check_finite(loop, rewards, it)
    kl_prior = math.nan
    if loop.buf.logp_prior is not None:  # one host read: the KL to the prior, per step
        kl_prior = float((loop.buf.logp - loop.buf.logp_prior).mean())
    if cfg.kl_target is not None and not warmup:
        learner.kl_scale = adapt_scale(
            scale, kl_prior, cfg.kl_target, cfg.batch_size, cfg.kl_horizon
        )
    try:  # 3. update
        stats = learner.update(
            loop.buf, norm_obs, advantages, returns, loop.method, cfg, warmup, prior_kl
        )
    except NonFiniteLoss as exc:
        raise TailorError(f"the PPO loss became {exc.value} at iteration {it + 1}") from None
    bad = non_finite_state({"actor": learner.actor, "critic": learner.critic})
    if bad is not None:
        raise TailorError(f"{bad} became NaN or infinite at iteration {it + 1}")
    stats = {**stats, "kl_prior": kl_prior, "kl_scale": scale}
    return _row(loop, it, rewards, stats, warmup, time.perf_counter() - t_iter)  # 4. log


def _set_up(
    env: TensorVecEnv,
    method: Method,
    cfg: PPOConfig,
    group: str,
    prior: PolicyPrior | None,
    addon: AddonFn | None,
) -> _Loop:
    """Seeds, the learner on the env's device, the storage. Fixed order: the random streams."""
    if not isinstance(method, Method):
        raise TailorError(f"method must be a tailor.methods.Method (use resolve()), got {method!r}")
    if method.customization and not isinstance(prior, PolicyPrior):
        raise TailorError(
            f"method {method.name!r} customizes a prior and needs a Gaussian PolicyPrior "
            "(tailor.priors.load_prior of an rsl-rl / tailor / SB3 PPO checkpoint)"
        )
    if not method.customization and prior is not None:
        raise TailorError(f"method {method.name!r} trains from scratch and takes no prior")
    if cfg.kl_target is not None and not method.customization:
        raise TailorError(
            f"kl_target holds the KL to a prior; method {method.name!r} trains from scratch "
            "(use a customization method: greedy, kl, residual)"
        )
    device = torch.device(env.device)
    obs = observation_tensor(env.get_observations(), group)
    obs_dim, act_dim, n = obs.shape[1], int(env.num_actions), int(env.num_envs)
    if obs.shape[0] != n:
        raise TailorError(f"the observations have {obs.shape[0]} rows for {n} envs")
    if prior is not None:
        check_spaces(prior, obs_dim, act_dim, type(env).__name__)
        prior.actor.to(device)
        prior.obs_norm.to(device)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator(device).manual_seed(cfg.seed)
    learner = PPOLearner.build(cfg, obs_dim, act_dim, prior, gen)
    for module in (learner.actor, learner.critic, learner.obs_norm, learner.return_norm):
        module.to(device)  # in place: the optimizer keeps the same (moved) parameters
    learner.return_carry = learner.return_carry.to(device)
    # log pi_prior is recorded for the reward, and for the KL controller's measurement
    with_prior = method.needs_prior_logp or (method.customization and cfg.kl_target is not None)
    buf = TensorRollout.empty(cfg.num_steps, n, obs_dim, act_dim, with_prior, device)
    zeros = torch.zeros(n, device=device)
    return _Loop(env, method, cfg, group, learner, buf, prior, addon, zeros, zeros.new_zeros(2))


def _collect(loop: _Loop, obs: Any) -> Any:
    """Fill the storage with ``T`` steps from ``obs``; returns the next observations. Call
    under ``torch.inference_mode``."""
    buf, learner = loop.buf, loop.learner
    for t in range(buf.logp.shape[0]):
        obs_t = observation_tensor(obs, loop.group)
        action, mean, log_std, logp, value = learner.act(obs_t)
        buf.obs[t], buf.actions[t], buf.mean[t] = obs_t, action, mean
        buf.log_std[t], buf.logp[t], buf.values[t] = log_std, logp, value
        if buf.logp_prior is not None:  # on the executed, unclipped action
            buf.logp_prior[t] = loop.prior.log_prob(obs_t, action)
        step = step_env(loop.env, action, loop.group)
        reward = step.reward
        if loop.addon is not None:
            inputs = AddonInputs(
                loop.env, obs_t, action, step.actor_obs, step.reward, step.dones, step.extras
            )
            reward = loop.method.env_reward(step.reward, loop.addon(inputs).reshape(-1).float())
        buf.reward[t], buf.dones[t], buf.time_outs[t] = reward, step.dones, step.time_outs
        loop.ep_return += reward
        done = step.dones.float()
        loop.ended += torch.stack([(loop.ep_return * done).sum(), done.sum()])
        loop.ep_return *= 1.0 - done
        obs = step.obs
    return obs


def rollout_reward(buf: TensorRollout, method: Method) -> torch.Tensor:
    """The method's reward of a whole rollout, ``[T, N]``: ``r + omega' log pi_prior(a|s) -
    alpha_hat log pi_theta(a|s)`` (:func:`tailor.reward.reformulate` on the storage)."""
    logp_prior = buf.logp_prior if method.spec.uses_prior else None
    return reformulate(buf.reward, logp_prior, buf.logp, method.spec)


def _targets(
    loop: _Loop, last_obs: Any, method: Method | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reformulated reward of the rollout and its GAE targets, on the env's device.

    ``r' = reformulate(r, log pi_prior, log pi_theta)``; the next values are ``V(s_{t+1})``,
    except at a time-out: ``V(s_t)`` (rsl-rl's bootstrap; module docstring); no bootstrap at a
    termination (``dones & ~time_outs``). Returns ``(r' [T, N], advantages [T, N], returns
    [T, N], norm_obs [T, N, D])`` (:meth:`PPOLearner.targets`). ``method``: the reward's
    (the KL controller's scaled one); ``None``: ``loop.method``.
    """
    buf, learner = loop.buf, loop.learner
    with torch.no_grad():
        last_values = learner.value(observation_tensor(last_obs, loop.group)).clone()
        next_values = torch.cat([buf.values[1:], last_values[None]])
        next_values = torch.where(buf.time_outs, buf.values, next_values)
        rewards = rollout_reward(buf, loop.method if method is None else method)
    terminated = buf.dones & ~buf.time_outs
    advantages, returns, norm_obs = learner.targets(
        rewards, buf.values, next_values, terminated, buf.dones, buf.obs, loop.config
    )
    return rewards, advantages, returns, norm_obs


def _check_finite(loop: _Loop, rewards: torch.Tensor, it: int) -> None:
    """One host sync per iteration: the rollout's observations and rewards are finite."""
    if bool(torch.isfinite(rewards).all()) and bool(torch.isfinite(loop.buf.obs).all()):
        return
    what = "observations" if not bool(torch.isfinite(loop.buf.obs).all()) else "method's reward"
    raise TailorError(
        f"the {what} became NaN or infinite in iteration {it + 1} (a prior that gives an "
        "action zero probability, or an env that returns NaN); training stopped"
    )


def _row(
    loop: _Loop,
    it: int,
    rewards: torch.Tensor,
    stats: dict[str, Any],
    warmup: bool,
    seconds: float,
) -> dict[str, Any]:
    """The iteration's metrics (its few host syncs happen here, once per iteration)."""
    ended_sum, ended_n = loop.ended.tolist()
    loop.ended.zero_()
    return {
        "iteration": it + 1,
        "steps": (it + 1) * loop.config.batch_size,
        "reward": float(rewards.mean()),
        "env_reward": float(loop.buf.reward.mean()),
        "episode_return": ended_sum / ended_n if ended_n else math.nan,
        "episodes": int(ended_n),
        **stats,
        "learning_rate": loop.learner.lr,
        "warmup": warmup,
        "steps_per_s": loop.config.batch_size / seconds,
    }
