"""Every loss and target of tailor as a small pure function (in the manner of rlax).

Each function states its formula and tensor shapes; the training loops in :mod:`tailor.algos`
only call them. Three families:

* **PPO** (MuJoCo PPO and token-level PPO call the same two functions), and the group-relative
  advantages and k3 KL of token-level GRPO / RLOO::

      policy loss  max(-A * rho, -A * clip(rho, 1 - eps, 1 + eps))       rho = pi_theta / pi_old
      value loss   max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2)
      GRPO         A_i = (R_i - mean_group R) / (std_group R + eps)
      RLOO         A_i = R_i - mean_{j != i in the group} R_j
      k3           exp(d) - d - 1,  d = log pi_prior - log pi_theta

* **Residual Q-Learning** (reference section 4). The prior ``pi`` is fixed; the customized
  policy never sees the basic reward, only ``r_R`` and ``log pi``. With ``omega' = omega * alpha``::

      V_R(s')    = alpha_hat * logsumexp_a' ((Q_R(s', a') + omega' log pi(a'|s')) / alpha_hat)
      Q_R(s, a) <- r_R + gamma * (1 - d) * V_R(s')
      pi_hat     = softmax((Q_R + omega' log pi) / alpha_hat)

  ``omega' = 0`` is plain soft Q-learning (how a prior is trained), ``alpha_hat = 0`` the hard
  max (ordinary Q-learning, greedy policy). The same soft value is the node value of residual
  max-entropy MCTS (there ``alpha_hat`` is the search temperature ``tau``). These functions work
  element-wise on numpy arrays *or* torch tensors (same type out as in), so the deep algorithms
  (torch), the tabular exactness bridge and the tree search (numpy) call the very same target
  code. Shapes: ``B`` is any batch shape (possibly empty), ``A`` the number of actions.

* **The offline (preference) family** on sequence log-probabilities. Appendix V-B of the Residual
  Policy Gradient paper reads DPO as the offline form of KL PPO at the token level: the policy's
  log-ratio to the prior *is* the reward. Decoupling the two coefficients (``omega'`` on the
  prior, ``alpha_hat`` on the policy) gives eq. 25, whose optimum under a Bradley-Terry model of
  ``r_R`` is the same target as Residual PPO::

      pi_hat(y|x)  ∝  pi_prior(y|x) ** (omega' / alpha_hat) * exp(r_R(x, y) / alpha_hat)

  Every DPO function takes *sequence* log-probabilities ``log pi(y|x) = sum_t log pi(y_t|x,
  y_<t)`` (torch tensors of shape ``[B]``) and returns the per-example loss to MINIMISE, shape
  ``[B]``; reduce it (``.mean()``) yourself. All use ``F.logsigmoid`` so large margins neither
  overflow nor lose the gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Generic, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from tailor.errors import TailorError
from tailor.numerics import logsumexp as _np_logsumexp

__all__ = [
    "SacNext",
    "ce_dpo_loss",
    "clipped_surrogate_loss",
    "decoupled_dpo_loss",
    "dpo_loss",
    "grpo_advantages",
    "k3_kl",
    "prior_log_probs",
    "residual_logits",
    "rloo_advantages",
    "sac_actor_loss",
    "sac_critic_target",
    "soft_policy",
    "soft_q_target",
    "soft_value",
    "value_loss",
]

# ---- PPO ----------------------------------------------------------------------------------------


def clipped_surrogate_loss(
    ratio: torch.Tensor, advantages: torch.Tensor, clip: float
) -> torch.Tensor:
    """PPO's clipped surrogate as a loss to minimise, per element::

        max(-A * rho, -A * clip(rho, 1 - eps, 1 + eps))

    Args:
        ratio: ``rho = pi_theta(a|s) / pi_old(a|s)``, any shape ``[...]``.
        advantages: ``A``, same shape.
        clip: ``eps > 0``.

    Returns:
        ``[...]``; reduce it yourself (a mean over samples, or over the generated tokens).
    """
    return torch.max(-advantages * ratio, -advantages * ratio.clamp(1.0 - clip, 1.0 + clip))


def value_loss(
    values: torch.Tensor,
    returns: torch.Tensor,
    old_values: torch.Tensor | None = None,
    clip: float | None = None,
) -> torch.Tensor:
    """Squared value error per element, clipped as in rsl-rl / PPO2 when ``old_values`` is given::

        (V - R)^2                                                   (no old_values)
        max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2)  (old_values, clip = eps)

    The clipped form moves the value at most ``eps`` away from the rollout's ``V_old`` per update.
    All tensors share one shape ``[...]``; returns ``[...]``.
    """
    if old_values is None:
        return (values - returns).square()
    if clip is None:
        raise TailorError("value_loss: a clipped value loss needs clip")
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    return torch.max((values - returns).square(), (clipped - returns).square())


def _groups(fn: str, returns: torch.Tensor, group_size: int) -> torch.Tensor:
    """``returns [B]`` as ``[B / k, k]``: consecutive rows are one group."""
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2:
        raise TailorError(f"{fn}: group_size must be an integer >= 2, got {group_size!r}")
    if not isinstance(returns, torch.Tensor) or returns.ndim != 1:
        raise TailorError(f"{fn}: returns must be a torch tensor of shape [B]")
    if returns.shape[0] % group_size:
        raise TailorError(
            f"{fn}: {returns.shape[0]} returns do not split into groups of {group_size}"
        )
    return returns.reshape(-1, group_size)


def grpo_advantages(returns: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """GRPO's group-relative advantage of each completion (DeepSeekMath; TRL's ``GRPOTrainer``)::

        A_i = (R_i - mean_j R_j) / (std_j R_j + eps)      j over the group of i

    with the unbiased (``k - 1``) standard deviation, as TRL computes it.

    Args:
        returns: ``R``, one return per completion, ``[B]``; the ``k`` completions of one prompt
            are consecutive (``B = G * k``).
        group_size: ``k >= 2``.
        eps: added to the std (a group of equal returns gets advantage 0, not NaN).

    Returns:
        ``[B]``.
    """
    r = _groups("grpo_advantages", returns, group_size)
    centred = r - r.mean(1, keepdim=True)
    return (centred / (r.std(1, keepdim=True) + eps)).reshape(-1)


def rloo_advantages(returns: torch.Tensor, group_size: int) -> torch.Tensor:
    """REINFORCE leave-one-out advantage (Kool et al. 2019; Ahmadian et al. 2024)::

        A_i = R_i - mean_{j != i} R_j  =  k / (k - 1) * (R_i - mean_j R_j)

    an unbiased baseline (it does not depend on ``R_i``), no division by a std.

    Args:
        returns: ``[B]``, the ``k`` completions of one prompt consecutive (``B = G * k``).
        group_size: ``k >= 2``.

    Returns:
        ``[B]``.
    """
    r = _groups("rloo_advantages", returns, group_size)
    others = (r.sum(1, keepdim=True) - r) / (group_size - 1)
    return (r - others).reshape(-1)


def k3_kl(logp: torch.Tensor, logp_prior: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of ``KL(pi_theta || pi_prior)`` (Schulman's "approximating KL"; the
    KL loss of TRL's GRPO and verl's ``low_var_kl``), for tokens sampled from ``pi_theta``::

        k3 = exp(d) - d - 1,    d = log pi_prior(y_t|s_t) - log pi_theta(y_t|s_t)

    Non-negative, 0 where the two agree, unbiased for the KL in value. ``logp`` carries the
    gradient; same shape ``[...]`` in and out.
    """
    d = logp_prior - logp
    return d.exp() - d - 1.0


# ---- Residual Q-Learning ------------------------------------------------------------------------


Array = TypeVar("Array", np.ndarray, torch.Tensor)


def _check_temperature(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise TailorError(f"{name} must be a number >= 0, got {value!r}")
    if not (np.isfinite(value) and value >= 0):
        raise TailorError(f"{name} is a temperature and must be finite and >= 0, got {value!r}")
    return float(value)


def _check_omega(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise TailorError(f"omega_prime must be a real number, got {value!r}")
    if not np.isfinite(value):
        raise TailorError(f"omega_prime must be finite, got {value!r}")
    return float(value)


def residual_logits(q: Array, log_prior: Array | None, omega_prime: float) -> Array:
    """``Q_R + omega' * log pi``, the unnormalized customized preferences.

    Args:
        q: residual q-values ``[B..., A]``.
        log_prior: ``log pi(.|s)`` of the prior ``[B..., A]``; ignored (may be ``None``) when
            ``omega' == 0``, so that ``0 * log 0`` never produces NaN.
        omega_prime: weight of the prior's log-probabilities.

    Returns:
        ``[B..., A]``, same type as ``q``.
    """
    omega_prime = _check_omega(omega_prime)
    if omega_prime == 0.0:
        return q + 0.0
    if log_prior is None:
        raise TailorError(f"omega_prime={omega_prime} needs the prior's log-probabilities")
    if tuple(q.shape) != tuple(log_prior.shape):
        raise TailorError(
            f"q has shape {tuple(q.shape)} but log_prior has shape {tuple(log_prior.shape)}"
        )
    return q + omega_prime * log_prior


def soft_value(
    q: Array, log_prior: Array | None = None, omega_prime: float = 0.0, alpha_hat: float = 1.0
) -> Array:
    """Soft state value ``alpha_hat * logsumexp((Q_R + omega' log pi) / alpha_hat)`` over actions.

    ``alpha_hat = 0`` gives ``max_a (Q_R + omega' log pi)`` (the limit). This is the residual
    soft DQN bootstrap (``Q_R`` from the target network at ``s'``) and the residual max-entropy
    MCTS node value (``Q_R`` of the children, ``alpha_hat = tau``).

    Args:
        q: ``[B..., A]``.
        log_prior: ``[B..., A]`` or ``None`` when ``omega' == 0``.
        omega_prime: weight of ``log pi``.
        alpha_hat: temperature ``>= 0``.

    Returns:
        ``[B...]``.
    """
    alpha_hat = _check_temperature("alpha_hat", alpha_hat)
    z = residual_logits(q, log_prior, omega_prime)
    if isinstance(z, torch.Tensor):
        if alpha_hat == 0.0:
            return z.max(dim=-1).values
        return alpha_hat * torch.logsumexp(z / alpha_hat, dim=-1)
    z = np.asarray(z, dtype=np.float64)
    if alpha_hat == 0.0:
        return np.max(z, axis=-1)
    return alpha_hat * _np_logsumexp(z / alpha_hat, axis=-1)


def soft_policy(
    q: Array, log_prior: Array | None = None, omega_prime: float = 0.0, alpha_hat: float = 1.0
) -> Array:
    """Acting distribution ``softmax((Q_R + omega' log pi) / alpha_hat)``, shape ``[B..., A]``.

    ``alpha_hat = 0`` gives the greedy policy with ties split evenly (unique, comparable).
    """
    alpha_hat = _check_temperature("alpha_hat", alpha_hat)
    z = residual_logits(q, log_prior, omega_prime)
    if isinstance(z, torch.Tensor):
        if alpha_hat == 0.0:
            best = (z >= z.max(dim=-1, keepdim=True).values).to(z.dtype)
            return best / best.sum(dim=-1, keepdim=True)
        return torch.softmax(z / alpha_hat, dim=-1)
    z = np.asarray(z, dtype=np.float64)
    if alpha_hat == 0.0:
        best = (z >= np.max(z, axis=-1, keepdims=True)).astype(np.float64)
        return best / best.sum(axis=-1, keepdims=True)
    v = alpha_hat * _np_logsumexp(z / alpha_hat, axis=-1)
    p = np.exp((z - v[..., None]) / alpha_hat)
    return p / p.sum(axis=-1, keepdims=True)


def prior_log_probs(q_prior: Array, alpha: float) -> Array:
    """``log pi(.|s) = log_softmax(Q_prior / alpha)``: the Boltzmann policy of a soft Q-network.

    A soft-DQN prior trained at temperature ``alpha`` acts with this distribution; its log-probs
    are what enters the residual target. ``alpha`` must be ``> 0`` (a greedy prior has no
    usable log-probabilities).

    Args:
        q_prior: the prior's q-values ``[B..., A]``.
        alpha: the prior's temperature ``> 0``.

    Returns:
        ``[B..., A]``.
    """
    alpha = _check_temperature("alpha", alpha)
    if alpha == 0.0:
        raise TailorError("the prior's temperature alpha must be > 0 to define log pi")
    if isinstance(q_prior, torch.Tensor):
        return torch.log_softmax(q_prior / alpha, dim=-1)
    z = np.asarray(q_prior, dtype=np.float64) / alpha
    return z - _np_logsumexp(z, axis=-1)[..., None]


def _check_same(name: str, ref: Array, other: Array) -> None:
    if tuple(ref.shape) != tuple(other.shape):
        raise TailorError(
            f"{name} has shape {tuple(other.shape)}, expected {tuple(ref.shape)} (the reward's)"
        )


def soft_q_target(
    r: Array,
    done: Array,
    gamma: float,
    q_next: Array,
    log_prior_next: Array | None = None,
    omega_prime: float = 0.0,
    alpha_hat: float = 1.0,
) -> Array:
    """Residual soft DQN target::

        r + gamma (1-d) alpha_hat logsumexp((Q_R(s', .) + omega' log pi(.|s')) / alpha_hat)

    ``omega' = 0``: plain soft DQN target (prior training). ``alpha_hat = 0``: DQN's hard max.

    Args:
        r: reward of the transition ``[B]`` (``r_R`` when customizing).
        done: 1.0 where ``s'`` is terminal (not for a time-limit truncation) ``[B]``.
        gamma: discount in ``[0, 1]``.
        q_next: target-network residual q-values at ``s'`` ``[B, A]``.
        log_prior_next: ``log pi(.|s')`` ``[B, A]`` (``None`` when ``omega' == 0``).
        omega_prime: weight of ``log pi``.
        alpha_hat: temperature ``>= 0``.

    Returns:
        ``[B]``.
    """
    _check_same("done", r, done)
    v_next = soft_value(q_next, log_prior_next, omega_prime, alpha_hat)
    _check_same("the next-state value", r, v_next)
    return r + gamma * (1.0 - done) * v_next


@dataclass(frozen=True)
class SacNext(Generic[Array]):
    """What the residual SAC critic target reads at ``(s', a')``, ``a' ~ pi_theta(.|s')``.

    Attributes:
        q1, q2: target critics at ``(s', a')`` ``[B]``.
        logp: ``log pi_theta(a'|s')`` ``[B]``.
        log_prior: ``log pi(a'|s')`` of the prior ``[B]`` (``None`` when ``omega' == 0``).
    """

    q1: Array
    q2: Array
    logp: Array
    log_prior: Array | None = None


def sac_critic_target(
    r: Array,
    done: Array,
    gamma: float,
    next_: SacNext[Array],
    omega_prime: float = 0.0,
    alpha_hat: float = 1.0,
) -> Array:
    """Residual SAC critic target, ``a' ~ pi_theta(.|s')``::

        r + gamma (1-d) [min(Q1', Q2') + omega' log pi(a'|s') - alpha_hat log pi_theta(a'|s')]

    ``omega' = 0`` is plain SAC's target at fixed temperature ``alpha_hat``.

    Args:
        r, done: ``[B]`` (``done`` 1.0 for a true termination only).
        gamma: discount.
        next_: ``Q1'``, ``Q2'``, ``log pi_theta(a'|s')`` and ``log pi(a'|s')`` (or ``None``), each
            ``[B]`` (:class:`SacNext`).
        omega_prime, alpha_hat: coefficients (``alpha_hat >= 0``).

    Returns:
        ``[B]``.
    """
    alpha_hat = _check_temperature("alpha_hat", alpha_hat)
    for name, x in (
        ("done", done),
        ("q1_next", next_.q1),
        ("q2_next", next_.q2),
        ("logp_next", next_.logp),
    ):
        _check_same(name, r, x)
    q_min = (
        torch.minimum(next_.q1, next_.q2)
        if isinstance(r, torch.Tensor)
        else np.minimum(next_.q1, next_.q2)
    )
    soft = residual_logits(q_min, next_.log_prior, omega_prime) - alpha_hat * next_.logp
    return r + gamma * (1.0 - done) * soft


def sac_actor_loss(
    logp: Array,
    q1: Array,
    q2: Array,
    log_prior: Array | None = None,
    omega_prime: float = 0.0,
    alpha_hat: float = 1.0,
) -> Array:
    """Residual SAC actor loss, mean over the batch, ``a ~ pi_theta(.|s)`` reparameterized::

        mean[ alpha_hat log pi_theta(a|s) - min(Q1, Q2)(s, a) - omega' log pi(a|s) ]

    Args:
        logp: ``log pi_theta(a|s)`` ``[B]``.
        q1, q2: critics at ``(s, a)`` ``[B]``.
        log_prior: ``log pi(a|s)`` of the prior ``[B]`` (``None`` when ``omega' == 0``).
        omega_prime, alpha_hat: coefficients.

    Returns:
        A scalar (0-d tensor / numpy float).
    """
    alpha_hat = _check_temperature("alpha_hat", alpha_hat)
    for name, x in (("q1", q1), ("q2", q2)):
        _check_same(name, logp, x)
    q_min = torch.minimum(q1, q2) if isinstance(logp, torch.Tensor) else np.minimum(q1, q2)
    per_sample = alpha_hat * logp - residual_logits(q_min, log_prior, omega_prime)
    return per_sample.mean()


# ---- the offline (preference) family ------------------------------------------------------------


def dpo_loss(
    logp_w: torch.Tensor,
    logp_l: torch.Tensor,
    ref_w: torch.Tensor,
    ref_l: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """DPO loss (eq. 22, negated)::

        loss = -log sigmoid(beta * [(logp_w - ref_w) - (logp_l - ref_l)])

    Args:
        logp_w: ``log pi_theta(y_w|x)`` of the chosen responses, shape ``[B]``.
        logp_l: ``log pi_theta(y_l|x)`` of the rejected responses, shape ``[B]``.
        ref_w: ``log pi_prior(y_w|x)`` (the frozen reference), shape ``[B]``.
        ref_l: ``log pi_prior(y_l|x)``, shape ``[B]``.
        beta: KL coefficient, finite and ``> 0``.

    Returns:
        Per-example loss, shape ``[B]``; ``log 2`` where the margin is zero.
    """
    _check_positive("dpo_loss", "beta", beta)
    _check_tensors("dpo_loss", logp_w=logp_w, logp_l=logp_l, ref_w=ref_w, ref_l=ref_l)
    # DPO *is* the decoupled loss with omega' = alpha_hat = beta; computing it through the same
    # arithmetic makes that identity exact to the last bit rather than merely up to rounding.
    return _decoupled(logp_w, logp_l, ref_w, ref_l, float(beta), float(beta))


def ce_dpo_loss(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    label: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Cross-entropy DPO loss (eq. 24, negated): one labelled response per example::

        m    = beta * (logp - ref_logp)
        loss = -(label * log sigmoid(m) + (1 - label) * log sigmoid(-m))

    ``log sigmoid(-m) = log(1 - sigmoid(m))`` is the paper's second term written stably. A label
    of 1 (a good response) pushes ``logp`` up, a label of 0 pushes it down.

    Args:
        logp: ``log pi_theta(y|x)``, shape ``[B]``.
        ref_logp: ``log pi_prior(y|x)``, shape ``[B]``.
        label: 1 for a good response, 0 for a bad one; float, int or bool tensor, shape ``[B]``.
        beta: coefficient, finite and ``> 0``.

    Returns:
        Per-example loss, shape ``[B]``.
    """
    _check_positive("ce_dpo_loss", "beta", beta)
    _check_tensors("ce_dpo_loss", logp=logp, ref_logp=ref_logp, label=label)
    lab = label.detach()
    if not bool(((lab == 0) | (lab == 1)).all()):
        bad = lab[(lab != 0) & (lab != 1)].flatten()[:3].tolist()
        raise TailorError(f"ce_dpo_loss: label must contain only 0 and 1, got values such as {bad}")
    lab = label.to(logp.dtype)
    m = float(beta) * (logp - ref_logp)
    return -(lab * F.logsigmoid(m) + (1.0 - lab) * F.logsigmoid(-m))


def decoupled_dpo_loss(
    logp_w: torch.Tensor,
    logp_l: torch.Tensor,
    prior_w: torch.Tensor,
    prior_l: torch.Tensor,
    omega_prime: float,
    alpha_hat: float,
) -> torch.Tensor:
    """Decoupled DPO loss (eq. 25, negated)::

        loss = -log sigmoid(alpha_hat * (logp_w - logp_l) - omega' * (prior_w - prior_l))

    With ``omega' = alpha_hat = beta`` it is :func:`dpo_loss` exactly. Under Bradley-Terry
    preferences ``P(y1 > y2) = sigmoid(r_R(y1) - r_R(y2))`` its expected value is minimised by
    ``pi_theta ∝ pi_prior ** (omega'/alpha_hat) * exp(r_R / alpha_hat)``.

    Args:
        logp_w: ``log pi_theta(y_w|x)``, shape ``[B]``.
        logp_l: ``log pi_theta(y_l|x)``, shape ``[B]``.
        prior_w: ``log pi_prior(y_w|x)``, shape ``[B]``.
        prior_l: ``log pi_prior(y_l|x)``, shape ``[B]``.
        omega_prime: weight of the prior's log-ratio; any finite real (0 ignores the prior).
        alpha_hat: weight of the policy's log-ratio (its temperature), finite and ``> 0``.

    Returns:
        Per-example loss, shape ``[B]``.
    """
    _check_finite("decoupled_dpo_loss", "omega_prime", omega_prime)
    _check_positive("decoupled_dpo_loss", "alpha_hat", alpha_hat)
    _check_tensors(
        "decoupled_dpo_loss", logp_w=logp_w, logp_l=logp_l, prior_w=prior_w, prior_l=prior_l
    )
    return _decoupled(logp_w, logp_l, prior_w, prior_l, float(omega_prime), float(alpha_hat))


def _decoupled(
    logp_w: torch.Tensor,
    logp_l: torch.Tensor,
    prior_w: torch.Tensor,
    prior_l: torch.Tensor,
    omega_prime: float,
    alpha_hat: float,
) -> torch.Tensor:
    margin = alpha_hat * (logp_w - logp_l) - omega_prime * (prior_w - prior_l)
    return -F.logsigmoid(margin)


def _check_finite(fn: str, name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TailorError(f"{fn}: {name} must be a real number, got {value!r}")
    if not math.isfinite(float(value)):
        raise TailorError(f"{fn}: {name} must be finite, got {value!r}")


def _check_positive(fn: str, name: str, value: object) -> None:
    _check_finite(fn, name, value)
    if float(value) <= 0:  # type: ignore[arg-type]
        raise TailorError(f"{fn}: {name} must be > 0, got {value!r}")


def _check_tensors(fn: str, **tensors: object) -> None:
    shape = None
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TailorError(
                f"{fn}: {name} must be a torch tensor of shape [B], got {type(t).__name__}"
            )
        if name != "label" and not t.is_floating_point():
            raise TailorError(
                f"{fn}: {name} holds log-probabilities and must be a floating-point "
                f"tensor, got dtype {t.dtype}"
            )
        if t.ndim != 1:
            raise TailorError(
                f"{fn}: {name} must have shape [B] (one value per example), got "
                f"shape {tuple(t.shape)}"
            )
        if shape is None:
            shape = tuple(t.shape)
        elif tuple(t.shape) != shape:
            first = next(iter(tensors))
            raise TailorError(
                f"{fn}: {name} has shape {tuple(t.shape)} but {first} has shape "
                f"{shape}; all inputs must have the same shape [B]"
            )
