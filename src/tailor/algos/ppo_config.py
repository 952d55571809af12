"""The hyper-parameters of PPO (:class:`PPOConfig`), in a file of their own so that the loop
(:mod:`tailor.algos.ppo`), the learner and the checkpoints can all read them without importing
one another."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from tailor.algos.configs import COUNT, NONNEGATIVE, POSITIVE, check_config
from tailor.errors import TailorError
from tailor.nets import ACTIVATIONS

__all__ = ["PPOConfig"]


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
        target_kl: stop an update's epochs at the first minibatch whose KL between the
            rollout's policy and the current one exceeds ``1.5 * target_kl`` (SB3's
            ``target_kl``), so that no update moves the policy far; ``None``: never. Set by the
            safe-step rule for priors whose temperature is unknown (``tailor customize``).
        kl_target: customization only: hold the per-step KL between the policy and the prior,
            ``E[log pi_theta(a|s) - log pi_prior(a|s)]`` over each rollout, near this many nats
            by scaling the reward's two coefficients ``omega'`` and ``alpha_hat`` together after
            every iteration (RLHF's adaptive KL controller: :func:`tailor.algos.kl_control.
            adapt_scale`); their ratio ``omega = omega' / alpha_hat`` is kept. ``None``: fixed
            coefficients. Set by the rule for priors whose temperature is unknown.
        kl_horizon: the controller's horizon in environment steps (10,000, as TRL's): the scale
            changes by at most a factor ``1 +- 0.2 * batch_size / kl_horizon`` per iteration.
        kl_estimator: where the reward's KL part ``-alpha_hat (log pi_theta - log pi_prior)``
            goes (:func:`tailor.reward.split_kl`): ``"k1-reward"`` (default, the paper's form)
            samples it in the reward; ``"exact-loss"`` adds ``alpha_hat KL(pi_theta(.|s) ||
            pi_prior(.|s))``, in closed form for the two Gaussians at the rollout's states, to
            the PPO loss (no sampling noise; ``(omega' - alpha_hat) log pi_prior`` stays in the
            reward), as TRL and verl put the KL in the loss. Set by the rule for priors whose
            temperature is unknown.
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
        select_episodes: customization only: after the run, evaluate the prior and the last
            iterate on this many deterministic episodes; if the last fails more of them than
            the prior (the task's success rule), the run's policy becomes the latest checkpoint
            that does not, or the prior (:mod:`tailor.experiments.selection`); 0 (default) keeps
            the last iterate unchecked. Set by the rule for priors whose temperature is unknown.
        episode_window: episode returns in the metrics are averaged over the last
            ``max(episode_window, num_envs)`` finished episodes (so that envs that end together
            are counted together).
        seed: seed of the networks' initialization, action noise, minibatch order and envs.
        torch_threads: ``torch.set_num_threads`` for the run (process-wide). 1 is fastest for
            these small networks and makes runs reproducible; ``None`` leaves it alone.
        num_workers: threads that step the MuJoCo envs during a rollout (they take chunks of
            the ``num_envs`` in turn; see :class:`tailor.envs.VecEnv`). It changes the speed
            only, never the numbers, so a resume may change it. At most the machine's idle
            cores: on a busy machine the extra threads wait for the cores and slow the run.
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
    target_kl: float | None = None
    kl_target: float | None = None
    kl_horizon: int = 10_000
    kl_estimator: str = "k1-reward"
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
    select_episodes: int = 0
    episode_window: int = 10
    seed: int = 0
    torch_threads: int | None = 1
    num_workers: int = 1
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
            "num_workers",
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
        if self.kl_estimator not in ("k1-reward", "exact-loss"):
            raise TailorError(
                f"PPOConfig.kl_estimator must be 'k1-reward' or 'exact-loss', "
                f"got {self.kl_estimator!r}"
            )
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
        if (
            not isinstance(self.select_episodes, int)
            or isinstance(self.select_episodes, bool)
            or (self.select_episodes < 0)
        ):
            raise TailorError(
                f"PPOConfig.select_episodes must be an integer >= 0, got {self.select_episodes!r}"
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
    "target_kl": POSITIVE,
    "kl_target": POSITIVE,
    "kl_horizon": COUNT,
    "value_loss_coef": NONNEGATIVE,
    "lr_min": POSITIVE,
    "lr_max": POSITIVE,
    "torch_threads": COUNT,
}
