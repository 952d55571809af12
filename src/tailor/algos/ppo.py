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
        save:     policy.safetensors + trainer.safetensors, atomically, every few iterations

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
import csv
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tailor.checkpoint import (
    POLICY_FILE,
    TRAINER_FILE,
    TRAINER_FORMAT,
    flatten_optimizer,
    load_policy,
    load_tensors,
    save_policy,
    save_tensors,
    unflatten_optimizer,
)
from tailor.envs import Task, VecEnv, get_task
from tailor.errors import TailorError
from tailor.losses import clipped_surrogate_loss, value_loss
from tailor.methods import Method
from tailor.nets import (
    Actor,
    Critic,
    EmpiricalNormalization,
    gaussian_entropy,
    gaussian_kl,
    gaussian_log_prob,
)
from tailor.priors import PolicyPrior, check_spaces, load_prior
from tailor.returns import discounted_returns, gae
from tailor.reward import reformulate

__all__ = [
    "METRIC_FIELDS",
    "PPOConfig",
    "TrainResult",
    "default_method",
    "method_coefficients",
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


# Columns of metrics.csv, one row per iteration. `sps` and `wall_s` are the only ones that depend
# on the machine; everything else is a deterministic function of (task, method, config, seed).
METRIC_FIELDS = (
    "iteration",  # 1-based iteration index
    "steps",  # environment steps so far (all envs)
    "phase",  # "critic-warmup" (customization, actor frozen) or "ppo"
    "episodes",  # episodes finished during this iteration
    "return_total",  # mean over the episode window of basic + add-on return
    "return_basic",  # ... of the basic return (the env's own reward)
    "return_addon",  # ... of the add-on return
    "statistic",  # ... of the per-episode mean of the task's statistic
    "episode_length",  # ... of the episode length
    "reward",  # mean reformulated reward per step in this rollout
    "logp_prior",  # mean log pi_prior(a|s) of the executed actions ("" without a prior)
    "value_loss",  # mean over minibatches
    "policy_loss",  # mean clipped-surrogate loss over minibatches ("" in critic warm-up)
    "entropy",  # mean policy entropy (nats)
    "kl",  # mean KL(behaviour || current) over minibatches ("" in warm-up)
    "clip_fraction",  # fraction of samples whose ratio was clipped ("" in warm-up)
    "learning_rate",  # learning rate at the end of the iteration
    "action_std",  # mean action standard deviation
    "sps",  # environment steps per second of this iteration (wall clock)
    "wall_s",  # seconds since the start of this training session
)


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


def method_coefficients(method: Method) -> dict[str, float]:
    """The keyword arguments of :func:`tailor.methods.resolve` that give back ``method``."""
    name, spec = method.name, method.spec
    if name == "no-entropy":
        return {}
    if name == "end-entropy":
        return {"alpha": method.entropy_bonus}
    if name in ("repeat-entropy", "soft", "full"):
        return {"alpha": spec.alpha_hat}
    if name == "greedy":
        return {"alpha_hat": spec.alpha_hat}
    if name == "kl":
        return {"beta": spec.alpha_hat}
    return {"omega_prime": spec.omega_prime, "alpha_hat": spec.alpha_hat}


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


@dataclass
class Rollout:
    """The rollout buffer of one iteration: ``T = num_steps`` steps of ``N = num_envs`` envs.

    Policy-side fields are torch tensors (filled under ``inference_mode``); env-side fields are
    numpy arrays (the env returns numpy; one conversion per rollout instead of one per step).

    Attributes:
        obs: ``[T, N, D]`` raw observations (the normalizer's statistics do not change during a
            rollout, so ``obs_norm.normalize(obs)`` is exactly what the actor and critic saw).
        actions: ``[T, N, A]`` executed actions: the raw Gaussian samples, before the env clips.
        logp: ``[T, N]`` ``log pi_theta(a_t|s_t)`` of the behaviour policy at sampling time.
        mean: ``[T, N, A]`` behaviour mean (for the KL of the adaptive learning rate).
        log_std: ``[T, N, A]`` behaviour log-std.
        values: ``[T, N]`` ``V(s_t)`` at sampling time.
        final_values: ``[T, N]`` ``V(final_obs)`` where an episode was truncated at ``t`` (the
            bootstrap value at a time limit), 0 elsewhere.
        logp_prior: ``[T, N]`` ``log pi_prior(a_t|s_t)`` when the method's reward uses the prior.
        basic: ``[T, N]`` basic (environment) reward.
        addon: ``[T, N]`` add-on reward.
        terminated: ``[T, N]`` episode ended at ``t`` by termination (no bootstrap).
        dones: ``[T, N]`` episode ended at ``t`` (termination or truncation; cuts GAE).
    """

    obs: torch.Tensor
    actions: torch.Tensor
    logp: torch.Tensor
    mean: torch.Tensor
    log_std: torch.Tensor
    values: torch.Tensor
    final_values: torch.Tensor
    logp_prior: torch.Tensor | None
    basic: np.ndarray
    addon: np.ndarray
    terminated: np.ndarray
    dones: np.ndarray

    @classmethod
    def empty(cls, t: int, n: int, d: int, a: int, with_prior: bool) -> Rollout:
        return cls(
            obs=torch.zeros(t, n, d),
            actions=torch.zeros(t, n, a),
            logp=torch.zeros(t, n),
            mean=torch.zeros(t, n, a),
            log_std=torch.zeros(t, n, a),
            values=torch.zeros(t, n),
            final_values=torch.zeros(t, n),
            logp_prior=torch.zeros(t, n) if with_prior else None,
            basic=np.zeros((t, n), np.float32),
            addon=np.zeros((t, n), np.float32),
            terminated=np.zeros((t, n), bool),
            dones=np.zeros((t, n), bool),
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
            ``tensorboard``. The envs restart fresh episodes (their state is not saved).
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
    if not isinstance(method, Method):
        raise TailorError(f"method must be a tailor.methods.Method (use resolve()), got {method!r}")
    run_dir = Path(out_dir) if out_dir is not None else None
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
    if config.torch_threads is not None:
        torch.set_num_threads(config.torch_threads)

    # ---- set-up: seeds, envs, networks, optimizer -------------------------------------------
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)  # action noise and minibatch order
    saved = _read_trainer(run_dir, config, method, task) if resume else None
    start_iter = saved["iteration"] if saved else 0
    # Fresh episodes on resume, with seeds that differ from the first session's.
    env = VecEnv(task, config.num_envs, seed=config.seed + 1_000_003 * start_iter)
    obs_dim, act_dim = env.obs_dim, env.act_dim

    if method.customization:
        assert prior is not None
        check_spaces(prior, obs_dim, act_dim, task.name)
        if not isinstance(prior, PolicyPrior):
            raise TailorError(
                "customization starts from the prior's weights, so the prior must "
                "be a tailor policy (tailor.priors.load_prior)"
            )
        prior.actor.requires_grad_(False).eval()
        prior.obs_norm.requires_grad_(False).eval()
        # The actor starts as an exact copy of the prior; the normalizer is the prior's, frozen,
        # so that during the critic warm-up the policy is exactly the prior.
        actor = copy.deepcopy(prior.actor).requires_grad_(True).train()
        obs_norm = copy.deepcopy(prior.obs_norm).eval()
    else:
        actor = Actor(
            obs_dim, act_dim, config.hidden, config.activation, config.std_type, config.init_std
        )
        # eps=0 and frozen makes the "normalizer" an exact identity when normalization is off.
        obs_norm = (
            EmpiricalNormalization(obs_dim)
            if config.normalize_obs
            else EmpiricalNormalization(obs_dim, eps=0.0).eval()
        )
    critic = Critic(obs_dim, config.hidden, config.activation)
    # Running variance of the discounted return, for reward normalization (see PPOConfig).
    return_norm = EmpiricalNormalization(1, eps=0.0)
    return_carry = torch.zeros(config.num_envs)
    params = [*actor.parameters(), *critic.parameters()]
    optimizer = torch.optim.Adam(params, lr=config.learning_rate)
    lr = config.learning_rate
    if saved:
        actor, obs_norm, lr = _restore(
            run_dir, saved, actor, obs_norm, critic, return_norm, optimizer, gen
        )
        if method.customization:
            obs_norm.eval()  # stays the prior's, frozen
    if run_dir is not None and method.customization and not resume:
        save_policy(run_dir / "prior", prior.actor, prior.obs_norm, prior.meta)

    warmup_steps = (
        int(config.critic_warmup_fraction * config.total_steps) if method.customization else 0
    )
    T, N = config.num_steps, config.num_envs
    n_iters = math.ceil(config.total_steps / config.batch_size)
    needs_prior = method.needs_prior_logp or method.customization  # log it for every custom.
    buf = Rollout.empty(T, N, obs_dim, act_dim, with_prior=needs_prior)
    meta = {
        "task": task.name,
        "env_id": task.env_id,
        "action_low": np.asarray(env.action_low, dtype=float).tolist(),
        "action_high": np.asarray(env.action_high, dtype=float).tolist(),
        "method": method.name,
        "coefficients": method_coefficients(method),
        "seed": config.seed,
        # What the customized policy started from (its full copy is in <out>/prior/).
        "prior": (
            {k: prior.meta.get(k) for k in ("task", "method", "coefficients", "steps", "seed")}
            if prior is not None
            else None
        ),
    }

    # ---- logging ----------------------------------------------------------------------------
    window = max(config.episode_window, N)
    ep_window: deque[tuple[float, float, float, float]] = deque(maxlen=window)
    ep_basic, ep_addon = np.zeros(N), np.zeros(N)
    ep_stat, ep_len = np.zeros(N), np.zeros(N, dtype=np.int64)
    metrics_file = _open_metrics(run_dir, start_iter, resume)
    tb = _tensorboard(run_dir) if config.tensorboard else None
    bar = _progress_bar(progress, config.total_steps, start_iter * config.batch_size)
    rows: list[dict[str, Any]] = []
    last_ckpt = (start_iter * config.batch_size) if saved else None

    obs = env.reset()
    it = start_iter
    try:
        for it in range(start_iter, n_iters):
            t_iter = time.perf_counter()
            steps_before = it * config.batch_size
            warmup = steps_before < warmup_steps
            episodes = 0

            # ---- 1. rollout: act, step, store ---------------------------------------------
            with torch.inference_mode():
                for t in range(T):
                    obs_t = torch.from_numpy(obs)
                    buf.obs[t] = obs_t
                    nobs = obs_norm.normalize(obs_t)  # statistics fixed during the rollout
                    mean, log_std = actor(nobs)
                    action = mean + log_std.exp() * torch.randn(mean.shape, generator=gen)
                    buf.actions[t] = action
                    buf.mean[t] = mean
                    buf.log_std[t] = log_std
                    buf.logp[t] = gaussian_log_prob(action, mean, log_std)
                    buf.values[t] = critic(nobs)
                    if buf.logp_prior is not None:
                        # On the executed, unclipped action (the env clips on its own).
                        buf.logp_prior[t] = prior.log_prob(obs_t, action)

                    step = env.step(action.numpy())

                    if not (np.isfinite(step.addon).all() and np.isfinite(step.basic).all()):
                        _raise_non_finite(step, task, it, t, steps_before + t * N)
                    buf.basic[t], buf.addon[t] = step.basic, step.addon
                    buf.terminated[t] = step.terminated
                    done = step.terminated | step.truncated
                    buf.dones[t] = done
                    buf.final_values[t] = 0.0
                    if done.any():
                        # Bootstrap value at a time limit: V of the true last observation.
                        trunc = np.flatnonzero(step.truncated & ~step.terminated)
                        if trunc.size:
                            final = torch.from_numpy(step.final_obs[trunc])
                            buf.final_values[t, trunc] = critic(obs_norm.normalize(final))
                    ep_basic += step.basic
                    ep_addon += step.addon
                    ep_stat += step.statistic
                    ep_len += 1
                    if done.any():
                        for i in np.flatnonzero(done):
                            ep_window.append(
                                (ep_basic[i], ep_addon[i], ep_stat[i] / ep_len[i], float(ep_len[i]))
                            )
                            episodes += 1
                        ep_basic[done], ep_addon[done], ep_stat[done], ep_len[done] = 0, 0, 0, 0
                    obs = step.obs

            # ---- 2. returns: reformulate the reward once, then GAE --------------------------
            # (no_grad, not inference_mode: these tensors feed the update's autograd graph)
            with torch.no_grad():
                last_values = critic(obs_norm.normalize(torch.from_numpy(obs)))
                dones = torch.from_numpy(buf.dones)
                next_values = torch.cat([buf.values[1:], last_values[None]])
                next_values = torch.where(dones, buf.final_values, next_values)
                rewards = method_reward(
                    method,
                    torch.from_numpy(buf.basic),
                    torch.from_numpy(buf.addon),
                    buf.logp,
                    buf.logp_prior,
                )
                scaled = rewards
                if config.normalize_rewards:
                    g, return_carry = discounted_returns(rewards, dones, config.gamma, return_carry)
                    return_norm.update(g.reshape(-1, 1))
                    scaled = rewards / torch.sqrt(return_norm.var + 1e-8)
                advantages, returns = gae(
                    scaled,
                    buf.values,
                    next_values,
                    torch.from_numpy(buf.terminated),
                    dones,
                    config.gamma,
                    config.lam,
                )
                # The observations as the actor saw them, then fold this rollout into the
                # normalizer's statistics (once per rollout: every observation of a rollout is
                # normalized alike, and the per-step loop stays short).
                norm_obs = obs_norm.normalize(buf.obs)
                if obs_norm.training:
                    obs_norm.update(buf.obs.reshape(-1, obs_dim))

            # ---- 3. update -------------------------------------------------------------------
            stats, lr = _update(
                actor,
                critic,
                optimizer,
                buf,
                norm_obs,
                advantages,
                returns,
                method,
                config,
                lr,
                warmup,
                gen,
                it,
                steps_before,
                last_ckpt,
            )
            steps = (it + 1) * config.batch_size

            # ---- 4. log --------------------------------------------------------------------------
            row = _metrics_row(
                it,
                steps,
                warmup,
                episodes,
                ep_window,
                rewards,
                buf,
                stats,
                lr,
                actor,
                config.batch_size / (time.perf_counter() - t_iter),
                time.perf_counter() - t_start,
            )
            rows.append(row)
            if metrics_file is not None:
                metrics_file.writerow(row)
            if tb is not None:
                for key in METRIC_FIELDS[3:]:
                    if isinstance(row[key], float):
                        tb.add_scalar(key, row[key], steps)
            if bar is not None:
                bar.update(config.batch_size)
                bar.set_postfix(
                    basic=_fmt(row["return_basic"]),
                    addon=_fmt(row["return_addon"]),
                    phase=row["phase"],
                    refresh=False,
                )

            # ---- 5. save -------------------------------------------------------------------------
            stop = callback is not None and bool(callback(row))
            if run_dir is not None and (
                (it + 1) % config.checkpoint_every == 0 or it + 1 == n_iters or stop
            ):
                _save(
                    run_dir,
                    actor,
                    obs_norm,
                    critic,
                    return_norm,
                    optimizer,
                    gen,
                    config,
                    meta,
                    it + 1,
                    steps,
                    lr,
                    method,
                    task,
                )
                last_ckpt = steps
            if stop:
                break
    finally:
        if bar is not None:
            bar.close()
        if tb is not None:
            tb.close()
        if metrics_file is not None:
            metrics_file.close()
        env.close()
    done_iters = it + 1 if rows else start_iter
    return TrainResult(
        run_dir,
        done_iters * config.batch_size,
        done_iters,
        rows,
        actor.eval(),
        obs_norm.eval(),
        time.perf_counter() - t_start,
    )


def _update(
    actor: Actor,
    critic: Critic,
    optimizer: torch.optim.Optimizer,
    buf: Rollout,
    norm_obs: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    method: Method,
    config: PPOConfig,
    lr: float,
    warmup: bool,
    gen: torch.Generator,
    it: int,
    steps: int,
    last_ckpt: int | None,
) -> tuple[dict[str, float], float]:
    """Epochs x minibatches of PPO on one rollout; returns (mean stats, learning rate).

    In the critic warm-up only the value loss is minimised, so the actor receives no gradient
    (its ``.grad`` stays ``None`` and Adam leaves it untouched) and the learning rate is fixed.
    """
    batch = config.batch_size
    b_obs = norm_obs.reshape(batch, -1)
    b_actions = buf.actions.reshape(batch, -1)
    b_mean, b_log_std = buf.mean.reshape(batch, -1), buf.log_std.reshape(batch, -1)
    b_logp, b_values = buf.logp.reshape(batch), buf.values.reshape(batch)
    b_returns, b_adv = returns.reshape(batch), advantages.reshape(batch)
    if config.normalize_advantages:
        b_adv = (b_adv - b_adv.mean()) / (b_adv.std() + 1e-8)
    mb_size = batch // config.num_minibatches
    sums = {"value_loss": 0.0, "policy_loss": 0.0, "entropy": 0.0, "kl": 0.0, "clip_fraction": 0.0}
    n_updates = 0
    for _ in range(config.num_epochs):
        perm = torch.randperm(batch, generator=gen)
        for k in range(config.num_minibatches):
            idx = perm[k * mb_size : (k + 1) * mb_size]
            mean, log_std = actor(b_obs[idx])
            values = critic(b_obs[idx])

            # Clipped value loss (rsl-rl): the value moves at most `clip` from the rollout's.
            old_values = b_values[idx] if config.clip_value_loss else None
            v_loss = value_loss(values, b_returns[idx], old_values, config.clip).mean()
            entropy = gaussian_entropy(log_std).mean()

            if warmup:
                loss = config.value_loss_coef * v_loss
            else:
                if config.schedule == "adaptive":
                    with torch.no_grad():
                        kl = gaussian_kl(b_mean[idx], b_log_std[idx], mean, log_std).mean()
                    kl_value = float(kl)
                    if kl_value > 2.0 * config.desired_kl:
                        lr = max(config.lr_min, lr / 1.5)
                    elif 0.0 < kl_value < 0.5 * config.desired_kl:
                        lr = min(config.lr_max, lr * 1.5)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                else:
                    with torch.no_grad():
                        kl_value = float(
                            gaussian_kl(b_mean[idx], b_log_std[idx], mean, log_std).mean()
                        )
                ratio = torch.exp(gaussian_log_prob(b_actions[idx], mean, log_std) - b_logp[idx])
                policy_loss = clipped_surrogate_loss(ratio, b_adv[idx], config.clip).mean()
                loss = (
                    policy_loss
                    + config.value_loss_coef * v_loss
                    - method.entropy_bonus * entropy
                )
                sums["policy_loss"] += float(policy_loss.detach())
                sums["kl"] += kl_value
                sums["clip_fraction"] += float(((ratio - 1.0).abs() > config.clip).float().mean())

            if not torch.isfinite(loss):
                kept = (
                    f"the last good checkpoint (step {last_ckpt}) is kept"
                    if last_ckpt is not None
                    else "no checkpoint had been written yet"
                )
                raise TailorError(
                    f"the loss became {float(loss.detach())} at iteration {it + 1} (after {steps} "
                    f"environment steps); training stopped, {kept}. Try a smaller learning rate "
                    "or check the rewards' scale"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(
                [p for g in optimizer.param_groups for p in g["params"]], config.max_grad_norm
            )
            optimizer.step()
            sums["value_loss"] += float(v_loss.detach())
            sums["entropy"] += float(entropy.detach())
            n_updates += 1
    stats = {k: v / n_updates for k, v in sums.items()}
    if warmup:
        stats.update(policy_loss="", kl="", clip_fraction="")
    return stats, lr


def _metrics_row(
    it: int,
    steps: int,
    warmup: bool,
    episodes: int,
    ep_window: deque,
    rewards: torch.Tensor,
    buf: Rollout,
    stats: dict,
    lr: float,
    actor: Actor,
    sps: float,
    wall_s: float,
) -> dict[str, Any]:
    if ep_window:
        ep = np.asarray(ep_window, dtype=np.float64)
        basic, addon, stat, length = (float(x) for x in ep.mean(0))
        total = float((ep[:, 0] + ep[:, 1]).mean())
    else:
        total = basic = addon = stat = length = ""
    with torch.no_grad():
        action_std = float(buf.log_std.exp().mean())
    return {
        "iteration": it + 1,
        "steps": steps,
        "phase": "critic-warmup" if warmup else "ppo",
        "episodes": episodes,
        "return_total": total,
        "return_basic": basic,
        "return_addon": addon,
        "statistic": stat,
        "episode_length": length,
        "reward": float(rewards.mean()),
        "logp_prior": float(buf.logp_prior.mean()) if buf.logp_prior is not None else "",
        **stats,
        "learning_rate": lr,
        "action_std": action_std,
        "sps": round(sps, 1),
        "wall_s": round(wall_s, 3),
    }


def _fmt(x: Any) -> str:
    return f"{x:.1f}" if isinstance(x, float) else "-"


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


def _progress_bar(enabled: bool, total: int, initial: int) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", unit_scale=True, dynamic_ncols=True)


def _tensorboard(run_dir: Path | None) -> Any:
    """A SummaryWriter in ``run_dir/tb`` (``tensorboard`` is a dependency; a trimmed install
    without it still trains, with metrics.csv only)."""
    if run_dir is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tb"))


class _CsvLog:
    """metrics.csv, appended one row per iteration and flushed (readable while training)."""

    def __init__(self, path: Path, append: bool) -> None:
        self.file = open(path, "a" if append else "w", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=METRIC_FIELDS)
        if not append:
            self.writer.writeheader()

    def writerow(self, row: dict[str, Any]) -> None:
        self.writer.writerow(row)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _open_metrics(run_dir: Path | None, start_iter: int, resume: bool) -> _CsvLog | None:
    if run_dir is None:
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "metrics.csv"
    if resume and path.is_file():
        # Drop rows written after the checkpoint we resume from (they will be redone).
        with open(path, newline="") as f:
            kept = [r for r in csv.DictReader(f) if int(r["iteration"]) <= start_iter]
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
            writer.writeheader()
            writer.writerows(kept)
        return _CsvLog(path, append=True)
    return _CsvLog(path, append=False)


# ---- checkpoints ------------------------------------------------------------------------------


def _save(
    run_dir: Path,
    actor: Actor,
    obs_norm: EmpiricalNormalization,
    critic: Critic,
    return_norm: EmpiricalNormalization,
    optimizer: torch.optim.Optimizer,
    gen: torch.Generator,
    config: PPOConfig,
    meta: dict[str, Any],
    iteration: int,
    steps: int,
    lr: float,
    method: Method,
    task: Task,
) -> None:
    """Write trainer state then policy, each atomically; both carry ``steps`` to be matched."""
    opt_tensors, opt_json = flatten_optimizer(optimizer.state_dict())
    tensors = {f"critic.{k}": v for k, v in critic.state_dict().items()}
    tensors.update({f"return_norm.{k}": v for k, v in return_norm.state_dict().items()})
    tensors.update(opt_tensors)
    tensors["rng"] = gen.get_state()
    save_tensors(
        run_dir / TRAINER_FILE,
        tensors,
        {
            "format": TRAINER_FORMAT,
            "iteration": iteration,
            "steps": steps,
            "learning_rate": lr,
            "config": config.to_json(),
            "task": task.name,
            "method": method.name,
            "coefficients": method_coefficients(method),
            "optimizer": opt_json,
        },
    )
    save_policy(run_dir, actor, obs_norm, {**meta, "steps": steps, "iteration": iteration})


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """The saved description of a run, for resuming it: ``task``, ``method``,
    ``coefficients``, ``config`` (a :class:`PPOConfig`), ``iteration``, ``steps``.

    Raises:
        TailorError: no or unreadable trainer checkpoint in ``run_dir``.
    """
    path = Path(run_dir) / TRAINER_FILE
    if not path.is_file():
        raise TailorError(
            f"cannot resume {str(run_dir)!r}: it has no {TRAINER_FILE} (not a "
            "tailor run directory, or no checkpoint was written yet)"
        )
    _, meta = load_tensors(path, TRAINER_FORMAT)
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
        raise TailorError(f"{str(path)!r}: incomplete trainer metadata ({exc})") from None


def _read_trainer(run_dir: Path, config: PPOConfig, method: Method, task: Task) -> dict[str, Any]:
    info = read_run(run_dir)
    if info["task"] != task.name or info["method"] != method.name:
        raise TailorError(
            f"cannot resume {str(run_dir)!r}: it trains {info['method']!r} on {info['task']!r}, "
            f"not {method.name!r} on {task.name!r}"
        )
    if info["coefficients"] != method_coefficients(method):
        raise TailorError(
            f"cannot resume {str(run_dir)!r}: it was trained with coefficients "
            f"{info['coefficients']}, not {method_coefficients(method)}"
        )
    mutable = {"total_steps", "checkpoint_every", "tensorboard"}
    old, new = info["config"].to_json(), config.to_json()
    diff = [k for k in new if k not in mutable and old.get(k) != new[k]]
    if diff:
        raise TailorError(
            f"cannot resume {str(run_dir)!r} with a different config: "
            + ", ".join(f"{k}={new[k]!r} (saved {old.get(k)!r})" for k in diff)
        )
    return info


def _restore(
    run_dir: Path,
    info: dict[str, Any],
    actor: Actor,
    obs_norm: EmpiricalNormalization,
    critic: Critic,
    return_norm: EmpiricalNormalization,
    optimizer: torch.optim.Optimizer,
    gen: torch.Generator,
) -> tuple[Actor, EmpiricalNormalization, float]:
    tensors, meta = load_tensors(run_dir / TRAINER_FILE, TRAINER_FORMAT)
    saved_actor, saved_norm, policy_meta = load_policy(run_dir / POLICY_FILE)
    if policy_meta.get("steps") != meta["steps"]:
        raise TailorError(
            f"cannot resume {str(run_dir)!r}: {POLICY_FILE} is at step {policy_meta.get('steps')} "
            f"but {TRAINER_FILE} at step {meta['steps']} (interrupted while saving?)"
        )
    try:
        actor.load_state_dict(saved_actor.state_dict())
        obs_norm.load_state_dict(saved_norm.state_dict())
        critic.load_state_dict(
            {k[len("critic.") :]: v for k, v in tensors.items() if k.startswith("critic.")}
        )
        return_norm.load_state_dict(
            {
                k[len("return_norm.") :]: v
                for k, v in tensors.items()
                if k.startswith("return_norm.")
            }
        )
        optimizer.load_state_dict(unflatten_optimizer(tensors, meta["optimizer"]))
        gen.set_state(tensors["rng"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise TailorError(
            f"cannot resume {str(run_dir)!r}: checkpoint does not match the config ({exc})"
        ) from None
    actor.train()
    if obs_norm.eps > 0:  # a real normalizer keeps learning; the identity one stays frozen
        obs_norm.train()
    return actor, obs_norm, float(meta["learning_rate"])


def default_method(task: Task | str, name: str, **overrides: float) -> Method:
    """``resolve(name, **coefficients)`` with the task's paper coefficients as defaults."""
    return get_task(task).method(name, **overrides)
