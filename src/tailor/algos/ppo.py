"""PPO for every method: one loop for training from scratch and for customizing a prior.

The loop (:func:`train`) reads like pseudocode::

    for each iteration:
        rollout:  act (sample a ~ pi_theta, record log pi_theta(a|s) and V(s)),
                  step the vectorized env, store (basic reward, add-on reward, ends, ...)
        returns:  r = reformulate(method.env_reward(basic, addon), log pi_prior, log pi_theta)
                  advantages, value targets = GAE(r, V, V(true next state))
        update:   epochs x minibatches of clipped-surrogate + clipped value loss
                  - method.entropy_bonus * entropy, adaptive learning rate from the KL
        log:      metrics.csv (+ TensorBoard if installed), progress bar
        save:     policy + trainer state as one crash-consistent checkpoint every few
                  iterations (and after the iteration a Ctrl-C interrupts)

The state lives in a few small objects: the :class:`~tailor.algos.rollout.Rollout` buffer, the
:class:`~tailor.algos.ppo_learner.PPOLearner` (actor, critic, normalizers, optimizer; acting,
returns, update), the :class:`~tailor.algos.logs.RunLog`; checkpoints and resume are
:mod:`tailor.algos.ppo_state`. The losses are :mod:`tailor.losses`'.

Methods differ only in what :func:`tailor.methods.resolve` says: which environment reward
(``basic``/``addon``/both), the two coefficients of :func:`tailor.reward.reformulate`, and the
loss's entropy bonus. Customization methods additionally start the actor from the prior's
weights, keep the prior (actor and observation normalizer) frozen, and fit a fresh critic alone
for the first ``critic_warmup_fraction`` of the steps (reference section 2).

The design follows CleanRL's ``ppo_continuous_action.py`` (one loop) and rsl-rl's PPO (clipped
value loss, adaptive learning rate from the Gaussian KL, empirical observation normalization).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tailor.algos import ppo_state
from tailor.algos.kl_control import adapt_scale, scaled_method
from tailor.algos.logs import METRIC_FIELDS, IterationStats, RunLog, metrics_row
from tailor.algos.ppo_config import PPOConfig
from tailor.algos.ppo_learner import NonFiniteLoss, PPOLearner, prior_kl_term
from tailor.algos.rollout import EpisodeStats, Rollout
from tailor.envs import Task, VecEnv, get_task
from tailor.errors import TailorError
from tailor.methods import Method
from tailor.nets import Actor, EmpiricalNormalization, non_finite_state
from tailor.policyfile import save_policy
from tailor.priors import PolicyPrior, check_spaces, load_prior
from tailor.reward import reformulate
from tailor.rundir import stop_on_interrupt

__all__ = [
    "METRIC_FIELDS",
    "PPOConfig",
    "TrainResult",
    "method_reward",
    "read_run",
    "train",
]


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        out_dir: the run directory (``None`` if nothing was written).
        steps: environment steps trained in total (including before a resume).
        iterations: iterations done in total.
        metrics: the rows of ``metrics.csv`` written by this call (dicts keyed by
            :data:`METRIC_FIELDS`).
        actor: the trained actor (eval mode).
        obs_norm: its observation normalizer (eval mode).
        wall_s: seconds this call took.
        kl_scale: the final multiplier of ``(omega', alpha_hat)`` of the adaptive KL controller
            (``PPOConfig.kl_target``; 1 without one).
    """

    out_dir: Path | None
    steps: int
    iterations: int
    metrics: list[dict[str, Any]] = field(default_factory=list)
    actor: Actor | None = None
    obs_norm: EmpiricalNormalization | None = None
    wall_s: float = 0.0
    kl_scale: float = 1.0


def method_reward(
    method: Method,
    basic: torch.Tensor,
    addon: torch.Tensor,
    logp: torch.Tensor,
    logp_prior: torch.Tensor | None,
) -> torch.Tensor:
    """The reward PPO maximises for ``method``, for a whole rollout at once.

    ``r_t = env_reward(basic_t, addon_t) + omega' * log pi_prior(a_t|s_t) - alpha_hat *
    log pi_theta(a_t|s_t)``, where ``env_reward`` is the method's choice of basic, add-on or both
    and ``log pi_theta`` the behaviour log-prob recorded at sampling time. All shapes ``[T, N]``;
    ``logp_prior`` may be ``None`` when the method does not use the prior.
    """
    env_reward = method.env_reward(basic, addon)
    return reformulate(
        env_reward, logp_prior if method.needs_prior_logp else None, logp, method.spec
    )


def train(
    task: Task | str,
    method: Method,
    config: PPOConfig | None = None,
    out_dir: str | Path | None = None,
    *,
    prior: PolicyPrior | None = None,
    resume: bool = False,
    progress: bool = False,
    callback: Callable[[dict[str, Any]], bool] | None = None,
) -> TrainResult:
    """Train (or customize) a Gaussian policy with PPO.

    Args:
        task: a :class:`tailor.envs.Task` or its registered name.
        method: from :func:`tailor.methods.resolve`; decides the reward and the loss bonus.
        config: hyper-parameters (defaults: :class:`PPOConfig`).
        out_dir: run directory for ``policy.safetensors``, ``trainer.safetensors``,
            ``metrics.csv`` (and ``tb/``); ``None`` writes nothing.
        prior: the frozen prior, required by customization methods (``method.customization``)
            and refused otherwise. On resume it is read from ``out_dir/prior`` when not given.
        resume: continue the run saved in ``out_dir`` until ``config.total_steps``. The config
            must equal the saved one except ``total_steps``, ``checkpoint_every``,
            ``tensorboard``. The run continues exactly where its checkpoint left it (envs,
            episodes, return normalization; see :mod:`tailor.algos.ppo_state`), except on the
            gymnasium-loop fallback, whose envs restart fresh episodes.
        progress: show a tqdm progress bar.
        callback: called with every iteration's metrics row (the columns of ``metrics.csv``);
            returning ``True`` stops training after that iteration (a checkpoint is written).

    Returns:
        A :class:`TrainResult`.

    Raises:
        TailorError: a customization method without a prior (or a training method with one), a
            prior whose spaces do not match the task, a non-finite reward from the env (names the
            step), a loss that turns NaN/inf (training stops, the last checkpoint is kept), a bad
            config or an unreadable checkpoint on resume.
    """
    t_start = time.perf_counter()
    config = copy.deepcopy(config) if config is not None else PPOConfig()
    config.validate()
    task = get_task(task)
    run_dir = Path(out_dir) if out_dir is not None else None
    prior = _check_inputs(method, run_dir, prior, resume)
    if config.torch_threads is not None:
        torch.set_num_threads(config.torch_threads)
    run = _set_up(_Session(task, method, config, run_dir, prior, resume, progress, t_start))
    obs = run.env.reset() if run.obs is None else run.obs
    rows: list[dict[str, Any]] = []
    it = run.start_iter
    notice = "finishing this iteration and writing a checkpoint (Ctrl-C again to stop at once)"
    with stop_on_interrupt(f"interrupted: {notice}") as interrupt:
        try:
            for it in range(run.start_iter, run.n_iters):
                obs, row = _iterate(run, it, obs)  # 1. rollout, 2. returns, 3. update
                rows.append(row)  # 4. log
                run.log.write(row, config.batch_size)
                stop = callback is not None and bool(callback(row))  # 5. save
                last = (it + 1) % config.checkpoint_every == 0 or it + 1 == run.n_iters or stop
                if run_dir is not None and (last or interrupt.requested):
                    _save(run, it)
                if interrupt.requested:  # a stop signal: after a whole iteration and its save
                    steps = (it + 1) * config.batch_size
                    saved = f"checkpoint at step {steps} in {str(run_dir)!r}" if run_dir else ""
                    raise KeyboardInterrupt(saved)
                if stop:
                    break
        finally:
            run.log.close()
            run.env.close()
    done_iters = it + 1 if rows else run.start_iter
    return TrainResult(
        run_dir,
        done_iters * config.batch_size,
        done_iters,
        rows,
        run.learner.actor.eval(),
        run.learner.obs_norm.eval(),
        time.perf_counter() - t_start,
        run.learner.kl_scale,
    )


@dataclass
class _Session:
    """The checked inputs of one :func:`train` call."""

    task: Task
    method: Method
    config: PPOConfig
    run_dir: Path | None
    prior: PolicyPrior | None
    resume: bool
    progress: bool
    t_start: float  # perf_counter() at the call, for the rows' wall_s


@dataclass
class _Run:
    """What :func:`train`'s loop carries across iterations (besides the observations)."""

    session: _Session
    env: VecEnv
    learner: PPOLearner
    episodes: EpisodeStats
    buf: Rollout  # [T, N] storage, refilled every iteration
    log: RunLog
    saved: ppo_state.RunRecord  # what every checkpoint records about the run
    start_iter: int
    n_iters: int
    warmup_steps: int  # critic-only steps at the start of a customization
    last_ckpt: int | None  # the step of the last checkpoint written (for error messages)
    obs: torch.Tensor | None  # [N, D] restored observations on an exact resume, else None


def _set_up(s: _Session) -> _Run:
    """Seeds, envs, learner (networks, optimizer), rollout buffer and logs; on resume restores
    the checkpoint's state. The order of the steps fixes the random streams: do not reorder."""
    config, method, task, run_dir, prior = s.config, s.method, s.task, s.run_dir, s.prior
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)  # action noise and minibatch order
    saved = _read_trainer(run_dir, config, method, task) if s.resume else None
    start_iter = saved["iteration"] if saved else 0
    # Fresh episodes on resume, with seeds that differ from the first session's.
    env = VecEnv(
        task,
        config.num_envs,
        seed=config.seed + 1_000_003 * start_iter,
        num_workers=config.num_workers,
    )
    obs_dim, act_dim = env.obs_dim, env.act_dim
    if prior is not None:
        check_spaces(prior, obs_dim, act_dim, task.name)
        if not isinstance(prior, PolicyPrior):
            raise TailorError(
                "customization starts from the prior's weights, so the prior must "
                "be a tailor policy (tailor.priors.load_prior)"
            )
    learner = PPOLearner.build(config, obs_dim, act_dim, prior, gen)
    n_envs = config.num_envs
    episodes = EpisodeStats.empty(n_envs, max(config.episode_window, n_envs))
    obs = None
    if saved:
        # The envs, episodes and return carry continue exactly where the checkpoint left them
        # when it has their state (else: fresh episodes).
        obs = ppo_state.restore(run_dir, learner, env, episodes)
        if method.customization:
            learner.obs_norm.eval()  # stays the prior's, frozen
    if run_dir is not None and method.customization and not s.resume:
        save_policy(run_dir / "prior", prior.actor, prior.obs_norm, prior.meta)
    warmup_steps = (
        int(config.critic_warmup_fraction * config.total_steps) if method.customization else 0
    )
    needs_prior = method.needs_prior_logp or method.customization  # log it for every custom.
    buf = Rollout.empty(config.num_steps, n_envs, obs_dim, act_dim, with_prior=needs_prior)
    record = ppo_state.RunRecord(
        config.to_json(), _policy_meta(task, env, method, config, prior), method, task
    )
    initial = start_iter * config.batch_size
    log = RunLog(
        run_dir, start_iter, s.resume, config.tensorboard, s.progress, config.total_steps, initial
    )
    return _Run(
        session=s,
        env=env,
        learner=learner,
        episodes=episodes,
        buf=buf,
        log=log,
        saved=record,
        start_iter=start_iter,
        n_iters=math.ceil(config.total_steps / config.batch_size),
        warmup_steps=warmup_steps,
        last_ckpt=initial if saved else None,
        obs=obs,
    )


def _iterate(run: _Run, it: int, obs: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
    """Iteration ``it``: rollout -> returns -> update -> its metrics row.

    Returns the observations ``[N, D]`` the next rollout starts from and the row.

    Raises:
        TailorError: a non-finite reward, loss or network (the last checkpoint is kept).
    """
    s, learner, buf = run.session, run.learner, run.buf
    config = s.config
    t_iter = time.perf_counter()
    steps_before = it * config.batch_size
    warmup = steps_before < run.warmup_steps

    # ---- 1. rollout: act, step, store -------------------------------------------------------
    with torch.inference_mode():
        obs, finished = _collect(run.env, learner, buf, s.prior, run.episodes, obs, s.task, it)

    # ---- 2. returns: reformulate the reward once, then GAE ------------------------------------
    method = scaled_method(s.method, learner.kl_scale)
    method, prior_kl = prior_kl_term(method, config.kl_estimator, buf, s.prior)
    rewards, advantages, returns, norm_obs = learner.returns(
        buf, obs, config, lambda b: _rollout_reward(method, b)
    )
    _check_rewards(rewards, it, steps_before, run.last_ckpt)
    if config.kl_target is not None and buf.logp_prior is not None and not warmup:
        kl = float((buf.logp - buf.logp_prior).mean())  # per step, on the policy's own actions
        learner.kl_scale = adapt_scale(
            learner.kl_scale, kl, config.kl_target, config.batch_size, config.kl_horizon
        )

    # ---- 3. update -----------------------------------------------------------------------------
    try:
        stats = learner.update(
            buf, norm_obs, advantages, returns, s.method, config, warmup, prior_kl
        )
    except NonFiniteLoss as exc:
        raise _loss_error(exc.value, it, steps_before, run.last_ckpt) from None
    _check_state(learner, it, steps_before, run.last_ckpt)

    # ---- 4. the metrics row --------------------------------------------------------------------
    done = IterationStats(it, (it + 1) * config.batch_size, warmup, finished, rewards, stats)
    sps = config.batch_size / (time.perf_counter() - t_iter)
    wall_s = time.perf_counter() - s.t_start
    return obs, metrics_row(done, run.episodes.window, buf, learner.lr, sps, wall_s)


def _save(run: _Run, it: int) -> None:
    """Commit policy + trainer state (+ the loop's state) after iteration ``it``."""
    steps = (it + 1) * run.session.config.batch_size
    loop = ppo_state.loop_tensors(run.env, run.episodes, run.learner)
    ppo_state.save_checkpoint(run.session.run_dir, run.learner, run.saved, it + 1, steps, loop=loop)
    run.last_ckpt = steps


def _collect(
    env: VecEnv,
    learner: PPOLearner,
    buf: Rollout,
    prior: PolicyPrior | None,
    episodes: EpisodeStats,
    obs: np.ndarray,
    task: Task,
    it: int,
) -> tuple[np.ndarray, int]:
    """Fill ``buf`` with ``T`` steps of every env from ``obs``; returns the next observations
    and the number of episodes that finished. Call under ``torch.inference_mode``."""
    T, N = buf.logp.shape
    finished = 0
    for t in range(T):
        obs_t = torch.from_numpy(obs)
        buf.obs[t] = obs_t
        action, mean, log_std, logp, value = learner.act(obs_t)
        buf.actions[t] = action
        buf.mean[t] = mean
        buf.log_std[t] = log_std
        buf.logp[t] = logp
        buf.values[t] = value
        if buf.logp_prior is not None:
            # On the executed, unclipped action (the env clips on its own).
            buf.logp_prior[t] = prior.log_prob(obs_t, action)

        step = env.step(action.numpy())

        if not (np.isfinite(step.addon).all() and np.isfinite(step.basic).all()):
            _raise_non_finite(step, task, it, t, it * T * N + t * N)
        buf.basic[t], buf.addon[t] = step.basic, step.addon
        buf.terminated[t] = step.terminated
        done = step.terminated | step.truncated
        buf.dones[t] = done
        buf.final_values[t] = 0.0
        if done.any():
            # Bootstrap value at a time limit: V of the true last observation.
            trunc = np.flatnonzero(step.truncated & ~step.terminated)
            if trunc.size:
                buf.final_values[t, trunc] = learner.value(torch.from_numpy(step.final_obs[trunc]))
        finished += episodes.add(step.basic, step.addon, step.statistic, done)
        obs = step.obs
    return obs, finished


def _rollout_reward(method: Method, buf: Rollout) -> torch.Tensor:
    return method_reward(
        method, torch.from_numpy(buf.basic), torch.from_numpy(buf.addon), buf.logp, buf.logp_prior
    )


def _check_inputs(
    method: Method, run_dir: Path | None, prior: PolicyPrior | None, resume: bool
) -> PolicyPrior | None:
    if not isinstance(method, Method):
        raise TailorError(f"method must be a tailor.methods.Method (use resolve()), got {method!r}")
    if resume and run_dir is None:
        raise TailorError("resume needs the run directory (out_dir)")
    if resume and prior is None and method.customization:
        prior = load_prior(run_dir / "prior")
    if method.customization and prior is None:
        raise TailorError(
            f"method {method.name!r} customizes a prior policy and needs one: pass a run "
            "directory or policy.safetensors as the prior"
        )
    if not method.customization and prior is not None:
        raise TailorError(
            f"method {method.name!r} trains from scratch and takes no prior; "
            "customization methods are greedy, kl, residual"
        )
    return prior


def _policy_meta(
    task: Task, env: VecEnv, method: Method, config: PPOConfig, prior: PolicyPrior | None
) -> dict[str, Any]:
    """What the saved policy records about its run (besides its architecture and steps)."""
    return {
        "kind": "ppo",
        "task": task.name,
        "env_id": task.env_id,
        "action_low": np.asarray(env.action_low, dtype=float).tolist(),
        "action_high": np.asarray(env.action_high, dtype=float).tolist(),
        "method": method.name,
        "coefficients": dict(method.coefficients),
        "coefficient_sources": dict(method.sources),
        "seed": config.seed,
        # What the customized policy started from (its full copy is in <out>/prior/).
        "prior": (
            {k: prior.meta.get(k) for k in ("task", "method", "coefficients", "steps", "seed")}
            if prior is not None
            else None
        ),
    }


def _kept(last_ckpt: int | None) -> str:
    if last_ckpt is not None:
        return f"the last good checkpoint (step {last_ckpt}) is kept"
    return "no checkpoint had been written yet"


def _check_rewards(rewards: torch.Tensor, it: int, steps: int, last_ckpt: int | None) -> None:
    """Raise when the reformulated reward (env reward + log-prob terms) is not finite."""
    if bool(torch.isfinite(rewards).all()):
        return
    bad = rewards[~torch.isfinite(rewards)][0].item()
    raise TailorError(
        f"the method's reward became {bad} at iteration {it + 1} (after {steps} environment "
        f"steps; a prior that gives an action zero probability, or rewards too large to "
        f"add up); training stopped, {_kept(last_ckpt)}"
    )


def _check_state(learner: PPOLearner, it: int, steps: int, last_ckpt: int | None) -> None:
    """Raise when an update left a NaN/inf in a network or a normalizer's statistics."""
    modules = {
        "actor": learner.actor,
        "critic": learner.critic,
        "obs_norm": learner.obs_norm,
        "return_norm": learner.return_norm,
    }
    name = non_finite_state(modules)
    if name is None and not math.isfinite(learner.lr):
        name = "learning_rate"
    if name is not None:
        raise TailorError(
            f"{name} became NaN or infinite during iteration {it + 1} (after {steps} "
            f"environment steps); training stopped, {_kept(last_ckpt)}. Try a smaller "
            "learning rate or check the rewards' scale"
        )


def _loss_error(value: float, it: int, steps: int, last_ckpt: int | None) -> TailorError:
    kept = _kept(last_ckpt)
    return TailorError(
        f"the loss became {value} at iteration {it + 1} (after {steps} "
        f"environment steps); training stopped, {kept}. Try a smaller learning rate "
        "or check the rewards' scale"
    )


def _raise_non_finite(step: Any, task: Task, it: int, t: int, steps_before: int) -> None:
    for name, values in (("add-on", step.addon), ("basic", step.basic)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            i = int(bad[0])
            raise TailorError(
                f"task {task.name!r} returned a non-finite {name} reward ({values[i]}) at step "
                f"{t + 1} of iteration {it + 1} (after {steps_before} environment steps), env "
                f"{i}; rewards must be finite numbers"
            )


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """The saved description of a run, for resuming it: ``task``, ``method``,
    ``coefficients``, ``config`` (a :class:`PPOConfig`), ``iteration``, ``steps``.

    Raises:
        TailorError: no or unreadable trainer checkpoint in ``run_dir``.
    """
    meta = ppo_state.read_trainer_meta(run_dir)
    try:
        return {
            "task": meta["task"],
            "method": meta["method"],
            "coefficients": dict(meta["coefficients"]),
            "config": PPOConfig.from_json(meta["config"]),
            "iteration": int(meta["iteration"]),
            "steps": int(meta["steps"]),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise TailorError(
            f"{str(run_dir)!r}: incomplete trainer metadata in its checkpoint ({exc})"
        ) from None


def _read_trainer(run_dir: Path, config: PPOConfig, method: Method, task: Task) -> dict[str, Any]:
    info = read_run(run_dir)
    ppo_state.check_resumable(run_dir, info, config.to_json(), method, task)
    return info
