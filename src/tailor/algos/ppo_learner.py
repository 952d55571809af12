"""PPO's learner: actor, critic, normalizers, optimizer; acting, returns and the update.

State in one small object (as rsl-rl's ``PPO`` holds its actor-critic and storage), so the loop in
:func:`tailor.algos.ppo.train` reads like pseudocode: ``learner.act``, ``learner.returns``,
``learner.update``. The losses are :func:`tailor.losses.clipped_surrogate_loss` and
:func:`tailor.losses.value_loss`; the reward is :func:`tailor.algos.ppo.method_reward`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from tailor.algos.ppo_config import PPOConfig
from tailor.algos.rollout import Rollout, TensorRollout
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
from tailor.priors import PolicyPrior
from tailor.returns import discounted_returns, gae
from tailor.reward import split_kl

__all__ = ["NonFiniteLoss", "PPOLearner", "PriorKL", "prior_kl_term"]


class NonFiniteLoss(ArithmeticError):
    """The PPO loss became NaN or infinite (the loop turns it into a TailorError with context)."""

    def __init__(self, value: float) -> None:
        super().__init__(value)
        self.value = value


@dataclass(frozen=True)
class PriorKL:
    """The loss's KL to the prior (``PPOConfig.kl_estimator="exact-loss"``).

    Attributes:
        coef: its weight, ``alpha_hat`` (times the KL controller's scale).
        mean: ``[B, A]`` the prior's mean action at the rollout's states (``B = T * N``).
        log_std: ``[B, A]`` the prior's log-std there.
    """

    coef: float
    mean: torch.Tensor
    log_std: torch.Tensor


def prior_kl_term(
    method: Method, estimator: str, buf: Rollout | TensorRollout, prior: PolicyPrior | None
) -> tuple[Method, PriorKL | None]:
    """The reward's method and the loss's KL term of a KL ``estimator``
    (:func:`tailor.reward.split_kl`): ``k1-reward`` (or no prior in the reward) keeps ``method``;
    ``exact-loss`` moves ``alpha_hat KL(pi_theta || pi_prior)`` to the loss, with the prior's
    distribution at the rollout's states ``buf.obs`` (``[T, N, D]`` -> ``[T * N, A]``)."""
    spec, coef = split_kl(method.spec, estimator)
    if coef == 0.0 or prior is None or buf.logp_prior is None:
        return method, None
    with torch.no_grad():
        mean, log_std = prior.distribution(buf.obs.reshape(-1, buf.obs.shape[-1]))
    return replace(method, spec=spec), PriorKL(coef, mean, log_std.expand_as(mean))


@dataclass
class PPOLearner:
    """Everything PPO learns or keeps between iterations.

    Attributes:
        actor: the Gaussian policy on normalized observations ``[B, D] -> ([B, A], [A] or [B, A])``.
        critic: ``V(s)`` on normalized observations ``[B, D] -> [B]``.
        obs_norm: the observation normalizer (the prior's, frozen, when customizing).
        return_norm: running variance of the discounted return ``[1]`` (reward normalization).
        return_carry: ``[N]`` discounted return of each env's running episode.
        optimizer: Adam over actor and critic.
        lr: the current learning rate (the adaptive schedule changes it per minibatch).
        gen: the generator of the action noise and the minibatch order.
        kl_scale: the multiplier of the reward's ``(omega', alpha_hat)`` that the adaptive KL
            controller (``PPOConfig.kl_target``) has reached; 1 without one.
    """

    actor: Actor
    critic: Critic
    obs_norm: EmpiricalNormalization
    return_norm: EmpiricalNormalization
    return_carry: torch.Tensor
    optimizer: torch.optim.Optimizer
    lr: float
    gen: torch.Generator
    kl_scale: float = 1.0

    @classmethod
    def build(
        cls,
        config: PPOConfig,
        obs_dim: int,
        act_dim: int,
        prior: PolicyPrior | None,
        gen: torch.Generator,
    ) -> PPOLearner:
        """Fresh networks; a customization's actor starts as an exact copy of the prior."""
        if prior is not None:
            prior.actor.requires_grad_(False).eval()
            prior.obs_norm.requires_grad_(False).eval()
            # The normalizer is the prior's, frozen, so that during the critic warm-up the
            # policy is exactly the prior.
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
        return_norm = EmpiricalNormalization(1, eps=0.0)
        params = [*actor.parameters(), *critic.parameters()]
        optimizer = torch.optim.Adam(params, lr=config.learning_rate)
        carry = torch.zeros(config.num_envs)
        return cls(
            actor, critic, obs_norm, return_norm, carry, optimizer, config.learning_rate, gen
        )

    @torch.inference_mode()
    def act(self, obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Sample actions for raw obs ``[N, D]``: ``(action, mean, log_std, logp, value)``,
        shapes ``[N, A]``, ``[N, A]``, ``[A]`` or ``[N, A]``, ``[N]``, ``[N]``."""
        nobs = self.obs_norm.normalize(obs)  # statistics fixed during the rollout
        mean, log_std = self.actor(nobs)
        noise = torch.randn(mean.shape, generator=self.gen, device=mean.device)
        action = mean + log_std.exp() * noise
        return action, mean, log_std, gaussian_log_prob(action, mean, log_std), self.critic(nobs)

    @torch.inference_mode()
    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """``V`` of raw obs ``[K, D] -> [K]``."""
        return self.critic(self.obs_norm.normalize(obs))

    def returns(
        self,
        buf: Rollout,
        last_obs: np.ndarray,
        config: PPOConfig,
        reward: Callable[[Rollout], torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reformulated rewards, advantages, value targets and the normalized observations.

        ``reward(buf) -> [T, N]`` is the method's reward (:func:`tailor.algos.ppo.method_reward`);
        with ``config.normalize_rewards`` it is divided by the running std of the discounted
        return before GAE. Returns ``(rewards [T, N], advantages [T, N], returns [T, N],
        norm_obs [T, N, D])`` and folds this rollout into the observation statistics.
        """
        # no_grad, not inference_mode: these tensors feed the update's autograd graph.
        with torch.no_grad():
            last_values = self.critic(self.obs_norm.normalize(torch.from_numpy(last_obs)))
            dones = torch.from_numpy(buf.dones)
            next_values = torch.cat([buf.values[1:], last_values[None]])
            next_values = torch.where(dones, buf.final_values, next_values)
            rewards = reward(buf)
        advantages, returns, norm_obs = self.targets(
            rewards,
            buf.values,
            next_values,
            torch.from_numpy(buf.terminated),
            dones,
            buf.obs,
            config,
        )
        return rewards, advantages, returns, norm_obs

    def targets(
        self,
        rewards: torch.Tensor,
        values: torch.Tensor,
        next_values: torch.Tensor,
        terminated: torch.Tensor,
        dones: torch.Tensor,
        obs: torch.Tensor,
        config: PPOConfig,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Advantages, value targets and normalized observations of one rollout, all tensors on
        the rollout's device (the numpy loop and :mod:`tailor.algos.tensor_ppo` share it).

        Args:
            rewards: ``[T, N]`` the method's reward; with ``config.normalize_rewards`` divided
                by the running std of the discounted return before GAE.
            values: ``[T, N]`` ``V(s_t)``.
            next_values: ``[T, N]`` ``V`` of the true next state (ignored where terminated).
            terminated: ``[T, N]`` bool, no bootstrap.
            dones: ``[T, N]`` bool, any episode end (cuts the GAE trace).
            obs: ``[T, N, D]`` raw observations; folded into the normalizer's statistics after
                they are normalized (once per rollout: every observation of a rollout is
                normalized alike, and the per-step loop stays short).

        Returns:
            ``(advantages [T, N], returns [T, N], norm_obs [T, N, D])``.
        """
        # no_grad, not inference_mode: these tensors feed the update's autograd graph.
        with torch.no_grad():
            scaled = rewards
            if config.normalize_rewards:
                g, self.return_carry = discounted_returns(
                    rewards, dones, config.gamma, self.return_carry
                )
                self.return_norm.update(g.reshape(-1, 1))
                scaled = rewards / torch.sqrt(self.return_norm.var + 1e-8)
            advantages, returns = gae(
                scaled, values, next_values, terminated, dones, config.gamma, config.lam
            )
            norm_obs = self.obs_norm.normalize(obs)
            if self.obs_norm.training:
                self.obs_norm.update(obs.reshape(-1, obs.shape[-1]))
        return advantages, returns, norm_obs

    def update(
        self,
        buf: Rollout | TensorRollout,
        norm_obs: torch.Tensor,
        advantages: torch.Tensor,
        returns: torch.Tensor,
        method: Method,
        config: PPOConfig,
        warmup: bool,
        prior_kl: PriorKL | None = None,
    ) -> dict[str, Any]:
        """Epochs x minibatches of PPO on one rollout; returns the mean stats.

        With ``prior_kl`` the loss adds ``prior_kl.coef * KL(pi_theta(.|s) || pi_prior(.|s))``
        (closed form, mean over the minibatch's states).

        In the critic warm-up only the value loss is minimised, so the actor receives no gradient
        (its ``.grad`` stays ``None`` and Adam leaves it untouched) and the learning rate is
        fixed.

        Raises:
            NonFiniteLoss: the loss became NaN or infinite (nothing was stepped with it).
        """
        lr = self.lr
        batch = config.batch_size
        b_obs = norm_obs.reshape(batch, -1)
        b_actions = buf.actions.reshape(batch, -1)
        b_mean, b_log_std = buf.mean.reshape(batch, -1), buf.log_std.reshape(batch, -1)
        b_logp, b_values = buf.logp.reshape(batch), buf.values.reshape(batch)
        b_returns, b_adv = returns.reshape(batch), advantages.reshape(batch)
        if config.normalize_advantages:
            b_adv = (b_adv - b_adv.mean()) / (b_adv.std() + 1e-8)
        mb_size = batch // config.num_minibatches
        sums = {
            "value_loss": 0.0,
            "policy_loss": 0.0,
            "entropy": 0.0,
            "kl": 0.0,
            "clip_fraction": 0.0,
        }
        n_updates = 0
        stopped = False  # target_kl: the policy moved far enough for this rollout
        for _ in range(config.num_epochs):
            if stopped:
                break
            perm = torch.randperm(batch, generator=self.gen, device=b_obs.device)
            for k in range(config.num_minibatches):
                idx = perm[k * mb_size : (k + 1) * mb_size]
                mean, log_std = self.actor(b_obs[idx])
                values = self.critic(b_obs[idx])

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
                        for group in self.optimizer.param_groups:
                            group["lr"] = lr
                    else:
                        with torch.no_grad():
                            kl_value = float(
                                gaussian_kl(b_mean[idx], b_log_std[idx], mean, log_std).mean()
                            )
                    if config.target_kl is not None and kl_value > 1.5 * config.target_kl:
                        stopped = True
                        break
                    ratio = torch.exp(
                        gaussian_log_prob(b_actions[idx], mean, log_std) - b_logp[idx]
                    )
                    policy_loss = clipped_surrogate_loss(ratio, b_adv[idx], config.clip).mean()
                    loss = (
                        policy_loss
                        + config.value_loss_coef * v_loss
                        - method.entropy_bonus * entropy
                    )
                    if prior_kl is not None:
                        to_prior = gaussian_kl(
                            mean, log_std, prior_kl.mean[idx], prior_kl.log_std[idx]
                        ).mean()
                        loss = loss + prior_kl.coef * to_prior
                    sums["policy_loss"] += float(policy_loss.detach())
                    sums["kl"] += kl_value
                    sums["clip_fraction"] += float(
                        ((ratio - 1.0).abs() > config.clip).float().mean()
                    )

                if not torch.isfinite(loss):
                    raise NonFiniteLoss(float(loss.detach()))
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(
                    [p for g in self.optimizer.param_groups for p in g["params"]],
                    config.max_grad_norm,
                )
                self.optimizer.step()
                sums["value_loss"] += float(v_loss.detach())
                sums["entropy"] += float(entropy.detach())
                n_updates += 1
        stats = {k: v / max(n_updates, 1) for k, v in sums.items()}
        if warmup:
            stats.update(policy_loss="", kl="", clip_fraction="")
        self.lr = lr
        return stats
