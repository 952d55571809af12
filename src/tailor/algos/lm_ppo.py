"""Token-level PPO for the customization methods ``residual``, ``kl`` and ``greedy``.

The token-level MDP: the state ``s_t`` is the prompt plus the tokens generated so far, the action
is the next token, an episode ends at eos (or after ``max_new_tokens``). The add-on reward
``r_R(prompt, completion)`` arrives at the last generated token and is 0 elsewhere. Every method
is plain PPO on ONE reformulated per-token reward, the same function the MuJoCo PPO uses::

    r_t = reformulate(r_R 1[t = last], log pi_prior(y_t|s_t), log pi_old(y_t|s_t), spec)
        = r_R 1[t = last] + omega' log pi_prior(y_t|s_t) - alpha_hat log pi_old(y_t|s_t)

with ``spec`` from :func:`tailor.methods.resolve` (``kl``: ``omega' = alpha_hat = beta``, the
per-token reward of classic RLHF; ``greedy``: ``omega' = 0``). ``log pi_old`` is the behaviour
log-prob recorded while sampling; ``log pi_prior`` comes from the frozen prior. The policy starts
from the prior's weights. Advantages by GAE (gamma 1, lambda 0.95) with a value head (a small MLP
on the policy's detached last hidden states, so value regression never moves the language
model); clipped surrogate; padding after eos masked out. As in the paper, the fresh value head is
fitted alone for the first ``critic_warmup`` fraction of the iterations.

Dropout is off (``eval()`` mode) for sampling and updates so that the PPO ratio is exactly 1 at
the first epoch.

**Scale** (:class:`tailor.lm.policy.PolicyPair`, given as ``prior``): a LoRA policy on the frozen
prior (the prior's log-probs are the adapter-off model's), half-precision priors with float32
trained weights, gradient checkpointing, and gradient accumulation (each minibatch in
``grad_accum`` micro-batches, every token-mean divided by the whole minibatch's token count, so
the summed gradient is the minibatch's).

Prompts (:class:`PromptSchedule`): a list no longer than the batch is cycled over every batch; a
longer one is read in shuffled epochs (the run's generator), each iteration taking the next
prompts, so every prompt is used.

**Advantage estimators** (``LMPPOConfig.advantage``), all of the same token-level reward and the
same clipped update:

* ``gae`` (default): the value head and GAE above;
* ``grpo`` / ``rloo``: ``group_size`` = k completions are sampled per prompt (``batch_size / k``
  prompts per iteration). A completion's return is its reformulated reward summed over its
  tokens, ``R = r_R + sum_t (omega' log pi_prior - alpha_hat log pi_old)``; its advantage, on
  every one of its tokens, is ``(R - mean_group R) / (std_group R + eps)`` (GRPO) or ``R - mean
  of the other k - 1`` (RLOO; :func:`tailor.losses.grpo_advantages`, ``rloo_advantages``). No
  value head is trained (and there is no critic warm-up).

**KL estimators** (``LMPPOConfig.kl_estimator``). Every method maximises ``E[r_R] + omega'
E[log pi_prior] + alpha_hat H(pi)`` = ``E[r_R] - alpha_hat KL(pi || pi_prior) + (omega' -
alpha_hat) E[log pi_prior]``; the two estimators put the KL part in different places:

* ``k1-reward`` (default): all of it in the per-token reward, as above (the sampled log-ratio,
  "k1", as a reward: classic RLHF PPO and this module's default);
* ``k3-loss``: the reward keeps ``r_R + (omega' - alpha_hat) log pi_prior`` and the loss adds
  ``alpha_hat * k3`` per token, ``k3 = exp(d) - d - 1`` with ``d = log pi_prior - log pi_theta``
  (:func:`tailor.losses.k3_kl`), as TRL's ``GRPOTrainer`` and verl (``use_kl_loss``,
  ``low_var_kl``) do. k3's value is unbiased for the KL, but its gradient is in expectation that
  of ``KL(pi_prior || pi_theta)`` at each state, so the run settles away from the closed-form
  target that ``k1-reward`` reaches (measured on the enumerable toy, tests/test_lm_toy.py).

Side by side with TRL: TRL's ``beta`` is the coefficient of that per-token k3 loss, so TRL's
GRPO objective ``E[r] - beta KL(pi || pi_ref)`` is the method ``kl`` with ``beta``, i.e.
``omega' = alpha_hat = beta``, under ``advantage="grpo", kl_estimator="k3-loss"`` (the leftover
``(omega' - alpha_hat) log pi_prior`` is 0). ``residual`` (``omega' != alpha_hat``) is TRL's
``beta = alpha_hat`` plus ``(omega' - alpha_hat) log pi_prior`` in the reward (a prior
sharpened by ``omega' / alpha_hat``), ``greedy`` is ``beta = alpha_hat`` with ``- alpha_hat log
pi_prior`` in the reward (entropy regularisation alone). TRL's ``beta = 0`` (no KL term) is
``omega' = alpha_hat = 0``: the add-on reward alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tailor.algos.configs import COUNT, check_config
from tailor.algos.finite import check_trained
from tailor.algos.logs import LoopControl
from tailor.errors import TailorError
from tailor.lm.policy import PolicyPair, as_policy_pair
from tailor.lm.rewards import RewardFn, evaluate_reward
from tailor.lm.sampling import Samples, sample, token_logprobs
from tailor.losses import (
    clipped_surrogate_loss,
    grpo_advantages,
    k3_kl,
    rloo_advantages,
    value_loss,
)
from tailor.methods import Method, resolve
from tailor.returns import gae
from tailor.reward import reformulate, split_kl

if TYPE_CHECKING:
    from tailor.algos.lm_ppo_state import LMRunState, LoopParts

__all__ = [
    "ADVANTAGES",
    "KL_ESTIMATORS",
    "PPO_METHODS",
    "LMPPOConfig",
    "PromptSchedule",
    "ValueHead",
    "customize_ppo",
    "last_token_rewards",
    "masked_mean",
    "token_advantages",
]

PPO_METHODS = ("residual", "kl", "greedy")
ADVANTAGES = ("gae", "grpo", "rloo")
KL_ESTIMATORS = ("k1-reward", "k3-loss")


@dataclass(frozen=True)
class LMPPOConfig:
    """Token-level PPO settings (defaults tuned for the ~0.8M-parameter character GPT-2).

    Attributes:
        steps: PPO iterations; each samples ``batch_size`` sequences and updates on them.
        batch_size: sequences sampled per iteration.
        max_new_tokens: longest completion (eos included).
        epochs: passes over each batch.
        minibatch_size: sequences per gradient step.
        lr: Adam learning rate of the language model.
        value_lr: Adam learning rate of the value head.
        clip: PPO ratio clip ``epsilon``.
        gamma: discount (1: the sequence reward is not discounted).
        lam: GAE lambda.
        max_grad_norm: gradient-norm clip of the language model.
        value_hidden: hidden width of the value head MLP.
        critic_warmup: fraction of the iterations (rounded up) in which only the value head is
            trained (the paper fits a fresh critic alone for the first 5%).
        advantage: ``"gae"`` (a value head and GAE), ``"grpo"`` (each completion's return minus
            its group's mean, over the group's std) or ``"rloo"`` (minus the mean of the other
            completions of its group); see the module docstring. ``grpo`` and ``rloo`` train no
            value head and ignore ``gamma``, ``lam``, ``value_lr``, ``value_hidden`` and
            ``critic_warmup``.
        group_size: completions sampled per prompt by ``grpo`` and ``rloo`` (>= 2; ``batch_size``
            must be a multiple of it); ``gae`` samples one per prompt slot and ignores it.
        kl_estimator: ``"k1-reward"`` (the prior and entropy terms in the per-token reward) or
            ``"k3-loss"`` (``alpha_hat`` times the k3 estimate of ``KL(pi_theta || pi_prior)`` per
            token in the loss, as TRL and verl do; see the module docstring).
        seed: seeds the sampler, the prompt order, the minibatch order and the value head.
    """

    steps: int = 60
    batch_size: int = 64
    max_new_tokens: int = 16
    epochs: int = 4
    minibatch_size: int = 32
    lr: float = 2e-4
    value_lr: float = 1e-3
    clip: float = 0.2
    gamma: float = 1.0
    lam: float = 0.95
    max_grad_norm: float = 1.0
    value_hidden: int = 64
    critic_warmup: float = 0.05
    advantage: str = "gae"
    group_size: int = 4
    kl_estimator: str = "k1-reward"
    seed: int = 0

    def __post_init__(self) -> None:
        check_config(self, {"value_hidden": COUNT})  # types, seed; the ranges below
        names = ("steps", "batch_size", "max_new_tokens", "epochs", "minibatch_size", "group_size")
        for name in names:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise TailorError(f"LMPPOConfig.{name} must be an integer >= 1, got {v!r}")
        for name in ("lr", "value_lr", "clip", "max_grad_norm"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise TailorError(f"LMPPOConfig.{name} must be finite and > 0, got {v!r}")
        for name in ("gamma", "lam", "critic_warmup"):
            v = getattr(self, name)
            if not (0.0 <= v <= 1.0):
                raise TailorError(f"LMPPOConfig.{name} must be in [0, 1], got {v!r}")
        for name, allowed in (("advantage", ADVANTAGES), ("kl_estimator", KL_ESTIMATORS)):
            if getattr(self, name) not in allowed:
                raise TailorError(
                    f"LMPPOConfig.{name} must be one of {', '.join(allowed)}, "
                    f"got {getattr(self, name)!r}"
                )
        if self.advantage != "gae":
            if self.group_size < 2:
                raise TailorError(
                    f"LMPPOConfig.group_size must be >= 2 for {self.advantage} (its advantage "
                    f"compares the completions of one prompt), got {self.group_size}"
                )
            if self.batch_size % self.group_size:
                raise TailorError(
                    f"LMPPOConfig.batch_size ({self.batch_size}) must be a multiple of "
                    f"group_size ({self.group_size}) for {self.advantage}"
                )

    @property
    def group(self) -> int:
        """Completions per prompt: ``group_size`` for grpo / rloo, 1 for gae."""
        return 1 if self.advantage == "gae" else self.group_size


class ValueHead(torch.nn.Module):
    """``V(s_t)`` from the policy's last hidden state: ``[B, T, H] -> [B, T]`` (2-layer MLP)."""

    def __init__(self, hidden_size: int, width: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(hidden_size, width), torch.nn.Tanh(), torch.nn.Linear(width, 1)
        )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.net(hidden).squeeze(-1)


def masked_mean(
    x: torch.Tensor, mask: torch.Tensor, count: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean of ``x`` over the positions where ``mask`` is 1 (same shapes).

    ``count``: divide by this token count instead of ``mask``'s (a micro-batch's share of its
    minibatch's mean: the shares sum to the minibatch's mean).
    """
    m = mask.to(x.dtype)
    return (x * m).sum() / (m.sum().clamp(min=1.0) if count is None else count)


def last_token_rewards(r_seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Place the sequence reward on the last generated token: ``[B] -> [B, T]``, 0 elsewhere.

    The last token is the eos when there is one, else the ``max_new_tokens``-th token.
    """
    lengths = mask.sum(1)
    if bool((lengths < 1).any()):
        raise TailorError("every sequence needs at least one generated token")
    out = torch.zeros(mask.shape, dtype=r_seq.dtype)
    out[torch.arange(mask.shape[0]), lengths - 1] = r_seq
    return out


def token_advantages(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over generated tokens: ``(advantages [B, T], returns [B, T])``, 0 on padding.

    Each sequence terminates at its last generated token (no bootstrap after it):
    ``delta_t = r_t + gamma V(s_{t+1}) - V(s_t)`` inside a sequence, ``r_t - V(s_t)`` at its end.
    Uses :func:`tailor.returns.gae` on the time-major transpose.
    """
    m = mask.bool()
    lengths = mask.sum(1)
    t_idx = torch.arange(mask.shape[1])[None, :]
    end = t_idx == (lengths - 1)[:, None]  # the last real token of each row
    v = torch.where(m, values, torch.zeros_like(values))
    next_v = torch.cat([v[:, 1:], torch.zeros_like(v[:, :1])], dim=1)
    # Padding positions are "done" too, so nothing flows across or out of them.
    done = end | ~m
    adv, ret = gae(rewards.T.to(v.dtype), v.T, next_v.T, done.T, done.T, gamma=gamma, lam=lam)
    adv, ret = adv.T, ret.T
    return torch.where(m, adv, torch.zeros_like(adv)), torch.where(m, ret, torch.zeros_like(ret))


class PromptSchedule:
    """The prompts of each iteration: ``slots`` prompts, each repeated ``repeats`` times in a row
    (a group of completions of one prompt is ``repeats`` consecutive rows of the batch).

    A list of at most ``slots`` prompts is cycled from its start every iteration (every prompt is
    in every batch). A longer list is read in shuffled epochs: a permutation drawn with
    ``generator`` each time the list is used up, each iteration taking the next ``slots``
    prompts (an iteration may take the end of one epoch and the start of the next), so every
    prompt is used once per epoch and the order is fixed by the seed.
    """

    def __init__(
        self,
        prompts: Sequence[str],
        slots: int,
        repeats: int = 1,
        generator: torch.Generator | None = None,
    ) -> None:
        self.prompts = list(prompts) or [""]
        self.slots, self.repeats, self.generator = slots, repeats, generator
        self._queue: list[int] = []

    def next(self) -> list[str]:
        """The ``slots * repeats`` prompts of the next iteration."""
        n = len(self.prompts)
        if n <= self.slots:
            idx = [i % n for i in range(self.slots)]
        else:
            while len(self._queue) < self.slots:
                self._queue += torch.randperm(n, generator=self.generator).tolist()
            idx, self._queue = self._queue[: self.slots], self._queue[self.slots :]
        return [self.prompts[i] for i in idx for _ in range(self.repeats)]


def customize_ppo(
    prior: torch.nn.Module | PolicyPair,
    tokenizer: Any,
    reward: str | RewardFn,
    method: Method | str,
    config: LMPPOConfig = LMPPOConfig(),  # frozen dataclass: an immutable default
    prompts: Sequence[str] = ("",),
    control: LoopControl | None = None,
    hooks: LMRunState | None = None,
    **coefficients: float,
) -> tuple[torch.nn.Module, list[dict[str, float]]]:
    """Customize ``prior`` to the add-on ``reward`` with token-level PPO.

    Args:
        prior: the prior causal LM; it is frozen (eval mode, no gradients) and a deep copy of it
            becomes the policy. A :class:`~tailor.lm.policy.PolicyPair` around it sets LoRA
            (the prior is then wrapped in place, no copy), gradient checkpointing and
            accumulation; a ``peft.PeftModel`` trains its adapter only, its base is the prior.
        tokenizer: the prior's tokenizer.
        reward: add-on reward name or function ``(prompt, completion) -> float``.
        method: ``residual``, ``kl`` or ``greedy`` (a :class:`~tailor.methods.Method` or a name,
            then ``coefficients`` go to :func:`tailor.methods.resolve`).
        config: PPO settings.
        prompts: prompts as text (default: the empty prompt, i.e. just bos); a list no longer
            than the batch's prompt slots is cycled over every batch, a longer one read in
            shuffled epochs (:class:`PromptSchedule`).
        control: progress bar and the stop request polled before every iteration (a stopped
            run returns the model and history so far).
        hooks: the run directory (:class:`tailor.algos.lm_ppo_state.LMRunState`: metrics,
            checkpoints, resume), called before, after each and after all iterations.

    Returns:
        ``(policy, history)``: the customized model (eval mode) and one dict of metrics per
        iteration (``addon``, ``success``, ``kl_to_prior``, ``length``, ``return``, ``entropy``,
        ``policy_loss``, ``value_loss``, ``approx_kl``, ``clip_frac``).
    """
    if isinstance(method, str):
        if method not in PPO_METHODS:
            raise TailorError(
                f"token-level PPO runs the methods {', '.join(PPO_METHODS)}, got {method!r}"
            )
        method = resolve(method, **coefficients)
    elif coefficients:
        raise TailorError("pass coefficients only with a method name, not a resolved Method")
    if method.name not in PPO_METHODS:
        raise TailorError(
            f"token-level PPO runs the methods {', '.join(PPO_METHODS)}, got {method.name!r}"
        )
    c = config
    pair = as_policy_pair(prior)
    policy = pair.start(c.seed)  # dropout off: see the module docstring
    g = torch.Generator().manual_seed(c.seed)
    g_tokens = pair.sampler_generator(g, c.seed)
    torch.manual_seed(c.seed)
    value_head = ValueHead(policy.config.hidden_size, c.value_hidden).to(pair.device)
    opt = torch.optim.Adam(pair.params, lr=c.lr)
    vopt = torch.optim.Adam(value_head.parameters(), lr=c.value_lr)
    spec, kl_coef = split_kl(method.spec, c.kl_estimator)
    learner = _Learner(pair, value_head, opt, vopt, c, g, kl_coef, g_tokens)
    gae_run = c.advantage == "gae"
    warmup_iters = math.ceil(c.critic_warmup * c.steps) if gae_run else 0
    schedule = PromptSchedule(prompts, c.batch_size // c.group, c.group, g)
    parts = learner.parts(schedule)  # what a checkpoint of the run (hooks) holds
    start, history = hooks.start(parts) if hooks is not None else (0, [])

    control = control or LoopControl()
    bar = control.bar(c.steps, f"ppo {method.name}", "it")
    for it in range(start, c.steps):
        if control.stop():
            break
        with pair.autocast():
            batch = sample(policy, tokenizer, schedule.next(), c.max_new_tokens, g_tokens)
        r_seq = _float32_rewards(evaluate_reward(reward, batch.prompts, batch.completions), it)
        with torch.no_grad(), pair.reference() as prior_model:
            prior_tok, _ = token_logprobs(
                prior_model, batch.prompt_ids, batch.prompt_mask, batch.tokens, batch.mask
            )
        prior_tok = prior_tok.cpu()  # the loop's bookkeeping is on the CPU (a no-op there)
        r_tok = last_token_rewards(r_seq, batch.mask)
        # THE reward of every method (tailor.reward.reformulate), token by token.
        rewards = reformulate(r_tok, prior_tok, batch.logp, spec)
        rewards = torch.where(batch.mask.bool(), rewards, torch.zeros_like(rewards))
        if gae_run:
            adv, ret = _gae_advantages(learner, batch, rewards)
        else:
            adv, ret = _group_advantages(c, rewards, batch.mask), None

        train_policy = it >= warmup_iters
        if not bool(torch.isfinite(rewards).all()):
            raise TailorError(
                f"LM PPO: the reformulated reward is not finite at iteration {it + 1} (the "
                "log-probability terms overflowed); nothing was saved"
            )
        stats = _update(learner, batch, adv, ret, prior_tok, train_policy)
        seq_kl = (batch.logp - prior_tok).sum(1)
        row = {
            "iteration": float(it),
            "addon": float(r_seq.mean()),
            "success": float((r_seq >= 1.0).float().mean()),
            "kl_to_prior": float(seq_kl.mean()),
            "length": float(batch.lengths.float().mean()),
            "return": float(rewards.sum(1).mean()),
            "entropy": float(-batch.seq_logp.mean()),
            **stats,
        }
        history.append(row)
        if hooks is not None:
            hooks.after_iteration(parts, history)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(addon=f"{row['addon']:.2f}", kl=f"{row['kl_to_prior']:.2f}")
    if bar is not None:
        bar.close()
    check_trained("LM PPO", {"policy": policy, **({"value_head": value_head} if gae_run else {})})
    if hooks is not None:
        hooks.finish(parts, history)
    return pair.finish(), history


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _float32_rewards(values: np.ndarray, it: int) -> torch.Tensor:
    """The sequence rewards as float32, refusing those float32 cannot hold (``1e308`` is a
    finite float64 but an infinite float32, which would turn the whole update into NaN)."""
    big = np.flatnonzero(np.abs(values) > _FLOAT32_MAX)
    if big.size:
        raise TailorError(
            f"LM PPO: the add-on reward {values[big[0]]:g} at iteration {it + 1} is too large "
            f"(|reward| must be below {_FLOAT32_MAX:.3g}, the float32 range); nothing was saved"
        )
    return torch.as_tensor(values, dtype=torch.float32)


def _gae_advantages(
    learner: _Learner, batch: Samples, rewards: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE advantages (normalised over the batch's tokens) and returns, ``[B, T]`` each, from the
    value head on the policy's hidden states."""
    c = learner.c
    with torch.no_grad():
        with learner.pair.autocast():
            _, hidden = token_logprobs(
                learner.pair.policy, batch.prompt_ids, batch.prompt_mask, batch.tokens,
                batch.mask, True,
            )  # fmt: skip
        values = learner.value_head(hidden.float()).float().cpu()  # no-ops in float32 on CPU
    adv, ret = token_advantages(rewards, values, batch.mask, c.gamma, c.lam)
    m = batch.mask.bool()
    adv_std = adv[m].std() if int(m.sum()) > 1 else torch.tensor(1.0)
    adv = torch.where(m, (adv - adv[m].mean()) / (adv_std + 1e-8), torch.zeros_like(adv))
    return adv, ret


def _group_advantages(c: LMPPOConfig, rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """GRPO / RLOO advantages ``[B, T]``: the sequence's advantage on each of its tokens."""
    returns = rewards.sum(1)  # the reformulated return of each completion (padding is 0)
    if c.advantage == "grpo":
        seq_adv = grpo_advantages(returns, c.group_size)
    else:
        seq_adv = rloo_advantages(returns, c.group_size)
    return seq_adv[:, None] * mask.to(seq_adv.dtype)


def _check_loss(name: str, loss: torch.Tensor) -> None:
    if not bool(torch.isfinite(loss)):
        raise TailorError(
            f"LM PPO: the {name} became {loss.item()}; training stopped and nothing was saved: "
            "lower the learning rate or check the reward's scale"
        )


@dataclass
class _Learner:
    """What the PPO update changes: the policy (with its prior, :class:`PolicyPair`) and its
    value head, their optimizers, the generator of the minibatch order, and the settings."""

    pair: PolicyPair
    value_head: ValueHead
    opt: torch.optim.Optimizer
    vopt: torch.optim.Optimizer
    c: LMPPOConfig
    g: torch.Generator
    kl_coef: float = 0.0
    g_tokens: torch.Generator | None = None  # the sampler's own, on an accelerator (else g)

    @property
    def policy(self) -> torch.nn.Module:
        """The model being trained (what a checkpoint saves and a resume restores)."""
        return self.pair.policy

    def parts(self, schedule: PromptSchedule) -> LoopParts:
        """What a checkpoint of the run holds besides the history (policy, value head, both
        optimizers, the generators, the schedule's queue)."""
        from tailor.algos.lm_ppo_state import LoopParts

        tokens = self.g_tokens if self.g_tokens is not self.g else None
        return LoopParts(
            self.policy, {"opt": self.opt, "vopt": self.vopt}, {"sampler": self.g},
            {"value_head": self.value_head}, tokens, schedule,
        )  # fmt: skip


def _update(
    learner: _Learner,
    batch: Samples,
    adv: torch.Tensor,
    ret: torch.Tensor | None,
    prior_tok: torch.Tensor,
    train_policy: bool,
) -> dict[str, float]:
    """PPO epochs over one batch: clipped surrogate (+ ``kl_coef`` times the per-token k3 KL to
    the prior) + value regression when there are returns, token-level means. ``adv``, ``ret``
    (``None``: no value head to fit) and ``prior_tok`` are ``[B, T]`` like the batch's tokens.
    Each minibatch is one optimizer step of each model, its gradient summed over the pair's
    micro-batches."""
    pair, c, g = learner.pair, learner.c, learner.g
    n = len(batch)
    pl, vl, kls, clips = [], [], [], []
    for _ in range(c.epochs):
        perm = torch.randperm(n, generator=g)
        for start in range(0, n, c.minibatch_size):
            idx = perm[start : start + c.minibatch_size]
            # The minibatch's token count: every micro-batch's mean is a share of the whole.
            count = batch.mask[idx].to(torch.float32).sum().clamp(min=1.0).to(pair.device)
            if ret is not None:
                learner.vopt.zero_grad()
            if train_policy:
                learner.opt.zero_grad()
            sums = [0.0, 0.0, 0.0, 0.0]  # policy loss, value loss, approx KL, clip fraction
            for micro in pair.micro_batches(idx):
                _micro_step(learner, batch.select(micro), micro, (adv, ret, prior_tok), count,
                            train_policy, sums)  # fmt: skip
            if ret is not None:
                learner.vopt.step()
                vl.append(sums[1])
            if train_policy:
                pair.step(learner.opt, c.max_grad_norm)
                pl.append(sums[0])
                kls.append(sums[2])
                clips.append(sums[3])
    nan = float("nan")
    return {
        "policy_loss": float(np.mean(pl)) if pl else nan,
        "value_loss": float(np.mean(vl)) if vl else nan,
        "approx_kl": float(np.mean(kls)) if kls else nan,
        "clip_frac": float(np.mean(clips)) if clips else nan,
    }


def _micro_step(
    learner: _Learner,
    mb: Samples,
    idx: torch.Tensor,
    targets: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor],
    count: torch.Tensor,
    train_policy: bool,
    sums: list[float],
) -> None:
    """Forward and backward of one micro-batch (rows ``idx`` of the batch, ``mb``): adds its
    share of the value loss and of the policy loss to the models' gradients, and its share of
    the minibatch's metrics to ``sums`` (policy loss, value loss, approx KL, clip fraction).
    ``targets`` are the batch's ``(adv, ret, prior_tok)``, ``[B, T]`` each."""
    pair, c = learner.pair, learner.c
    adv, ret, prior_tok = targets
    dev = pair.device
    mask = mb.mask.to(dev)
    with pair.learning() as policy:
        logp, hidden = token_logprobs(
            policy, mb.prompt_ids, mb.prompt_mask, mb.tokens, mb.mask, return_hidden=True
        )
    if ret is not None:
        values = learner.value_head(hidden.detach().float())
        v_loss = 0.5 * masked_mean(value_loss(values, ret[idx].to(dev)), mask, count)
        _check_loss("value loss", v_loss)
        v_loss.backward()
        sums[1] += v_loss.item()
    if not train_policy:
        return
    log_ratio = logp - mb.logp.to(dev)
    ratio = log_ratio.exp()
    per_token = clipped_surrogate_loss(ratio, adv[idx].to(dev), c.clip)
    if learner.kl_coef:
        per_token = per_token + learner.kl_coef * k3_kl(logp, prior_tok[idx].to(dev))
    policy_loss = masked_mean(per_token, mask, count)
    _check_loss("policy loss", policy_loss)
    pair.backward(policy_loss)
    with torch.no_grad():
        sums[0] += policy_loss.item()
        # k3 estimator of KL(old || new), the usual PPO diagnostic.
        sums[2] += masked_mean(ratio - 1.0 - log_ratio, mask, count).item()
        sums[3] += masked_mean(((ratio - 1.0).abs() > c.clip).float(), mask, count).item()


def config_dict(config: LMPPOConfig) -> dict[str, Any]:
    """The config as a JSON-ready dict."""
    return asdict(config)
