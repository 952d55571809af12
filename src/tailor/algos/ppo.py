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

import contextlib
import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tailor.algos import ppo_state
from tailor.algos.configs import COUNT, NONNEGATIVE, POSITIVE, check_config
from tailor.algos.logs import METRIC_FIELDS, RunLog, metrics_row
from tailor.algos.ppo_learner import NonFiniteLoss, PPOLearner
from tailor.algos.rollout import EpisodeStats, Rollout
from tailor.envs import Task, VecEnv, get_task
from tailor.errors import TailorError
from tailor.methods import Method
from tailor.nets import ACTIVATIONS, Actor, EmpiricalNormalization, non_finite_state
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
class PPOConfig:
    """Hyper-parameters of :func:`train`. Defaults are tuned for CPU throughput on MuJoCo tasks.

    Close to rsl-rl's PPO (clip 0.2, clipped value loss, GAE lambda 0.95, adaptive learning rate
    with desired KL 0.01, max grad norm 1, 5 epochs, empirical observation normalization), with
    four changes for one CPU core, each measured on HalfCheetah (``bench/throughput.py``):
    ReLU instead of ELU and 64-64 instead of 256-256-128 networks (on this CPU ELU's kernel costs
    about three times ReLU's: a 64-64 actor+critic update took 5.3 us/sample/epoch with ELU and
    1.6 with ReLU); 64 envs x 64 steps with 2 minibatches of 2048 (few, large matrix products);
    reward normalization (the critic's targets stay O(1)); initial std 0.5 (HalfCheetah reached
    a return of 1500 in about 260k steps with it, about 450k with std 1).

    Attributes:
        total_steps: environment steps to train for, summed over all parallel envs. Rounded up to
            whole iterations of ``num_envs * num_steps``.
        num_envs: parallel environments. Many envs amortise the per-step Python and network
            overhead over a batch (the dominant cost on a CPU after physics).
        num_steps: steps per env per rollout (rollout length ``T``); batch = ``num_envs *
            num_steps`` transitions per iteration.
        num_epochs: passes over each batch. Few, because every pass costs a full
            forward/backward over the batch while the env waits.
        num_minibatches: minibatches per epoch (batch split evenly; must divide the batch).
        clip: PPO ratio clip ``epsilon`` (0.2, as in the paper's rsl-rl pipeline).
        clip_value_loss: clip the value update to ``clip`` around the rollout's values (rsl-rl).
        value_loss_coef: weight of the value loss.
        gamma: discount factor.
        lam: GAE lambda (0.95, rsl-rl).
        learning_rate: Adam learning rate (initial value when ``schedule="adaptive"``).
        schedule: ``"adaptive"`` (rsl-rl: divide the lr by 1.5 when the minibatch KL between the
            behaviour and the current Gaussian exceeds ``2 * desired_kl``, multiply by 1.5 when it
            is below ``desired_kl / 2``, within ``[lr_min, lr_max]``) or ``"fixed"``.
        desired_kl: target KL of the adaptive schedule (0.01, rsl-rl).
        lr_min: lower bound of the adaptive learning rate.
        lr_max: upper bound of the adaptive learning rate.
        max_grad_norm: global gradient-norm clip (1.0, rsl-rl).
        normalize_obs: empirical observation normalization (running mean/std, rsl-rl). During
            customization the prior's normalizer is used and frozen instead.
        normalize_advantages: standardize advantages over the batch.
        normalize_rewards: divide the (reformulated) reward by the running standard deviation of
            the discounted return (SB3 ``VecNormalize``, CleanRL ``NormalizeReward``), with the
            statistics updated once per rollout. A positive constant scale changes neither the
            optimal policy nor (with normalized advantages) the policy update; it keeps the
            critic's targets O(1), so that a critic (a fresh one in customization especially)
            fits returns of hundreds or thousands within a few updates.
        hidden: hidden layer sizes of actor and critic. Small on purpose: on one CPU core the
            update's cost grows with the square of the width, and the update competes with the
            physics for the same core.
            Customization keeps the prior's actor architecture and uses this for the critic.
        activation: ``"relu"`` (default; the cheapest on a CPU), ``"elu"`` (rsl-rl) or
            ``"tanh"``.
        init_std: initial action standard deviation.
        std_type: ``"global"`` (one learned log-std vector; the paper's default) or ``"state"``
            (a state-dependent log-std head; the paper's ablation).
        critic_warmup_fraction: customization only: fraction of ``total_steps`` at the start during
            which only the fresh critic is trained and the actor is left bit-identical (0.05, the
            paper). Ignored when training from scratch.
        checkpoint_every: write a checkpoint every this many iterations (and at the end).
        episode_window: episode returns in the metrics are averaged over the last
            ``max(episode_window, num_envs)`` finished episodes (so that envs that end together
            are counted together).
        seed: seed of the networks' initialization, action noise, minibatch order and envs.
        torch_threads: ``torch.set_num_threads`` for the run (process-wide). 1 is fastest for
            these small networks and makes runs reproducible; ``None`` leaves it alone.
        tensorboard: also write TensorBoard logs to ``<out>/tb`` when ``tensorboard`` is installed.
    """

    total_steps: int = 1_000_000
    num_envs: int = 64
    num_steps: int = 64
    num_epochs: int = 5
    num_minibatches: int = 2
    clip: float = 0.2
    clip_value_loss: bool = True
    value_loss_coef: float = 1.0
    gamma: float = 0.99
    lam: float = 0.95
    learning_rate: float = 1e-3
    schedule: str = "adaptive"
    desired_kl: float = 0.01
    lr_min: float = 1e-5
    lr_max: float = 1e-2
    max_grad_norm: float = 1.0
    normalize_obs: bool = True
    normalize_advantages: bool = True
    normalize_rewards: bool = True
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "relu"
    init_std: float = 0.5
    std_type: str = "global"
    critic_warmup_fraction: float = 0.05
    checkpoint_every: int = 50
    episode_window: int = 10
    seed: int = 0
    torch_threads: int | None = 1
    tensorboard: bool = True

    @property
    def batch_size(self) -> int:
        """Transitions per iteration, ``num_envs * num_steps``."""
        return self.num_envs * self.num_steps

    def validate(self) -> None:
        """Raise :class:`TailorError` for a value that cannot work."""
        positive = (
            "total_steps",
            "num_envs",
            "num_steps",
            "num_epochs",
            "num_minibatches",
            "checkpoint_every",
            "episode_window",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TailorError(f"PPOConfig.{name} must be a positive integer, got {value!r}")
        if self.batch_size % self.num_minibatches:
            raise TailorError(
                f"num_minibatches={self.num_minibatches} must divide the batch num_envs * "
                f"num_steps = {self.batch_size}"
            )
        if self.schedule not in ("adaptive", "fixed"):
            raise TailorError(f"schedule must be 'adaptive' or 'fixed', got {self.schedule!r}")
        if self.std_type not in ("global", "state"):
            raise TailorError(f"std_type must be 'global' or 'state', got {self.std_type!r}")
        for name in ("clip", "learning_rate", "init_std", "max_grad_norm", "desired_kl"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise TailorError(f"PPOConfig.{name} must be a finite number > 0, got {value!r}")
        for name in ("gamma", "lam", "critic_warmup_fraction"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise TailorError(f"PPOConfig.{name} must be in [0, 1], got {value!r}")
        # Every field's type, the seed's range and the bounds of the fields not checked above.
        check_config(self, _PPO_BOUNDS)
        if self.activation not in ACTIVATIONS:
            raise TailorError(
                f"PPOConfig.activation must be one of {', '.join(ACTIVATIONS)}, "
                f"got {self.activation!r}"
            )
        if self.lr_min > self.lr_max:
            raise TailorError(f"PPOConfig.lr_min={self.lr_min} exceeds lr_max={self.lr_max}")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["hidden"] = list(self.hidden)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> PPOConfig:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in obj.items() if k in known}
        if "hidden" in kwargs:
            kwargs["hidden"] = tuple(int(h) for h in kwargs["hidden"])
        return cls(**kwargs)


_PPO_BOUNDS = {
    "value_loss_coef": NONNEGATIVE,
    "lr_min": POSITIVE,
    "lr_max": POSITIVE,
    "torch_threads": COUNT,
}


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
    """

    out_dir: Path | None
    steps: int
    iterations: int
    metrics: list[dict[str, Any]] = field(default_factory=list)
    actor: Actor | None = None
    obs_norm: EmpiricalNormalization | None = None
    wall_s: float = 0.0


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

    # ---- set-up: seeds, envs, learner (networks, optimizer) ---------------------------------
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)  # action noise and minibatch order
    saved = _read_trainer(run_dir, config, method, task) if resume else None
    start_iter = saved["iteration"] if saved else 0
    # Fresh episodes on resume, with seeds that differ from the first session's.
    env = VecEnv(task, config.num_envs, seed=config.seed + 1_000_003 * start_iter)
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
    if run_dir is not None and method.customization and not resume:
        save_policy(run_dir / "prior", prior.actor, prior.obs_norm, prior.meta)

    warmup_steps = (
        int(config.critic_warmup_fraction * config.total_steps) if method.customization else 0
    )
    T, N = config.num_steps, config.num_envs
    n_iters = math.ceil(config.total_steps / config.batch_size)
    needs_prior = method.needs_prior_logp or method.customization  # log it for every custom.
    buf = Rollout.empty(T, N, obs_dim, act_dim, with_prior=needs_prior)
    meta = _policy_meta(task, env, method, config, prior)
    log = RunLog(
        run_dir,
        start_iter,
        resume,
        config.tensorboard,
        progress,
        config.total_steps,
        start_iter * config.batch_size,
    )
    rows: list[dict[str, Any]] = []
    last_ckpt = (start_iter * config.batch_size) if saved else None

    if obs is None:
        obs = env.reset()
    it = start_iter
    stack = contextlib.ExitStack()  # the loop's Ctrl-C handler, removed in `finally`
    interrupt = stack.enter_context(
        stop_on_interrupt(
            "interrupted: finishing this iteration and writing a checkpoint "
            "(Ctrl-C again to stop at once)"
        )
    )
    try:
        for it in range(start_iter, n_iters):
            t_iter = time.perf_counter()
            steps_before = it * config.batch_size
            warmup = steps_before < warmup_steps

            # ---- 1. rollout: act, step, store ---------------------------------------------
            with torch.inference_mode():
                obs, finished = _collect(env, learner, buf, prior, episodes, obs, task, it)

            # ---- 2. returns: reformulate the reward once, then GAE --------------------------
            rewards, advantages, returns, norm_obs = learner.returns(
                buf, obs, config, lambda b: _rollout_reward(method, b)
            )
            _check_rewards(rewards, it, steps_before, last_ckpt)

            # ---- 3. update -------------------------------------------------------------------
            try:
                stats = learner.update(buf, norm_obs, advantages, returns, method, config, warmup)
            except NonFiniteLoss as exc:
                raise _loss_error(exc.value, it, steps_before, last_ckpt) from None
            _check_state(learner, it, steps_before, last_ckpt)
            steps = (it + 1) * config.batch_size

            # ---- 4. log ----------------------------------------------------------------------
            row = metrics_row(
                it,
                steps,
                warmup,
                finished,
                episodes.window,
                rewards,
                buf,
                stats,
                learner.lr,
                config.batch_size / (time.perf_counter() - t_iter),
                time.perf_counter() - t_start,
            )
            rows.append(row)
            log.write(row, config.batch_size)

            # ---- 5. save ---------------------------------------------------------------------
            stop = callback is not None and bool(callback(row))
            last = (it + 1) % config.checkpoint_every == 0 or it + 1 == n_iters or stop
            if run_dir is not None and (last or interrupt.requested):
                args = (config.to_json(), meta, it + 1, steps, method, task)
                loop = ppo_state.loop_tensors(env, episodes, learner)
                ppo_state.save_checkpoint(run_dir, learner, *args, loop=loop)
                last_ckpt = steps
            if interrupt.requested:  # Ctrl-C: stop after a whole iteration and its checkpoint
                saved_note = f"checkpoint at step {steps} in {str(run_dir)!r}" if run_dir else ""
                raise KeyboardInterrupt(saved_note)
            if stop:
                break
    finally:
        stack.close()
        log.close()
        env.close()
    done_iters = it + 1 if rows else start_iter
    return TrainResult(
        run_dir,
        done_iters * config.batch_size,
        done_iters,
        rows,
        learner.actor.eval(),
        learner.obs_norm.eval(),
        time.perf_counter() - t_start,
    )


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
