"""Offline customization with the DPO family: ``dpo``, ``ce-dpo`` and ``decoupled-dpo``.

The losses are those of :mod:`tailor.losses` (eqs. 22, 24, 25 of the paper's appendix) on
sequence log-probabilities ``log pi(y|x) = sum_t log pi(y_t|x, y_<t)`` over the completion tokens
(eos included, prompt and padding excluded). Policy and frozen prior read every response in one
batched forward pass each (for a plain GPT-2 the packed, padding-free pass of
:func:`tailor.lm.gpt2fast.packed_token_logprobs`: a chosen and a rejected response share their
prompt's rows). The prior's log-probs are streamed: computed the first time a step draws a
row, in the fixed chunks of 64 rows an up-front pass would use (so the same numbers, bit for
bit), then kept (:class:`ReferenceLogp`, 4 bytes a response): the first step comes after one
batch's worth of prior passes, not after the whole data set's.

Data:

* ``dpo`` / ``decoupled-dpo`` train on preference pairs ``(prompt, chosen, rejected)``: from a
  JSONL file, or made by sampling the prior and ranking the samples with the add-on reward
  (:func:`make_preference_pairs`: groups of ``group_size`` samples of the same prompt, every two
  with different rewards make a pair);
* ``ce-dpo`` trains on labelled responses: label 1 for chosen and 0 for rejected responses of a
  preference file, or, when sampling the prior, ``label = 1[r_R >= 1]`` for a 0/1 reward and
  ``label = 1[r_R > median]`` otherwise (:func:`make_labelled_responses`).

Dropout is off while training (``eval()`` mode), as for PPO.

Scale (:class:`tailor.lm.policy.PolicyPair`, given as ``prior``): a LoRA policy whose prior is
the adapter-off model, half precision, gradient checkpointing, and gradient accumulation (a
batch in ``grad_accum`` micro-batches, each loss mean weighted by its share of the batch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tailor.algos.configs import check_config
from tailor.algos.finite import check_trained
from tailor.algos.lm_ppo_state import LoopParts
from tailor.algos.logs import LoopControl
from tailor.errors import TailorError
from tailor.lm import DEFAULT_COEFFICIENTS
from tailor.lm.policy import PolicyPair, as_policy_pair
from tailor.lm.preferences import PreferencePair, pairs_from_samples
from tailor.lm.rewards import RewardFn, evaluate_reward
from tailor.lm.sampling import encode_completions, encode_prompts, sample, token_logprobs
from tailor.losses import ce_dpo_loss, decoupled_dpo_loss, dpo_loss
from tailor.methods import OFFLINE_METHODS, Method, resolve

__all__ = [
    "OFFLINE_METHODS",
    "LMDPOConfig",
    "ReferenceLogp",
    "Responses",
    "customize_offline",
    "make_labelled_responses",
    "make_preference_pairs",
    "offline_coefficients",
    "offline_method",
]


def offline_method(name: str | Method, **given: float | None) -> Method:
    """An offline method resolved with :data:`tailor.lm.DEFAULT_COEFFICIENTS` as defaults.

    Raises:
        TailorError: unknown offline method, or a coefficient the method does not take.
    """
    if isinstance(name, Method):
        if given:
            raise TailorError("pass coefficients only with a method name, not a resolved Method")
        method = name
    else:
        if name not in OFFLINE_METHODS:
            raise TailorError(
                f"unknown offline method {name!r}; known: {', '.join(OFFLINE_METHODS)}"
            )
        method = resolve(name, DEFAULT_COEFFICIENTS[name], **given)
    if not method.offline:
        raise TailorError(f"{method.name} is not an offline method ({', '.join(OFFLINE_METHODS)})")
    return method


def offline_coefficients(name: str, **given: float | None) -> dict[str, float]:
    """The coefficients of an offline method: the given ones, defaults for the rest."""
    return dict(offline_method(name, **given).coefficients)


@dataclass(frozen=True)
class LMDPOConfig:
    """Offline-training settings (defaults tuned for the ~0.8M-parameter character GPT-2).

    Attributes:
        steps: Adam steps.
        batch_size: preference pairs (``ce-dpo``: labelled responses) per step, drawn at random.
        lr: Adam learning rate.
        max_grad_norm: gradient-norm clip.
        samples: prior samples drawn per prompt to make the data when no preference file is given.
        group_size: samples ranked together into pairs (each group gives at most
            ``group_size * (group_size - 1) / 2`` pairs); groups keep pairs spread over the
            samples rather than piled on the first ones.
        max_new_tokens: longest sampled completion, and the cut of file responses.
        seed: seeds the prior samples and the batch order.
    """

    steps: int = 150
    batch_size: int = 32
    lr: float = 2e-4
    max_grad_norm: float = 1.0
    samples: int = 512
    group_size: int = 4
    max_new_tokens: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        check_config(self, {})  # types and seed; the ranges below
        for name in ("steps", "batch_size", "samples", "group_size", "max_new_tokens"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise TailorError(f"LMDPOConfig.{name} must be an integer >= 1, got {v!r}")
        if self.group_size < 2:
            raise TailorError("LMDPOConfig.group_size must be >= 2 to make pairs")
        for name in ("lr", "max_grad_norm"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise TailorError(f"LMDPOConfig.{name} must be finite and > 0, got {v!r}")


@dataclass
class Responses:
    """``N`` (prompt, completion) pairs, tokenized: ``prompt_ids/prompt_mask [N, P]``
    (left-padded), ``tokens/mask [N, T]`` (completion + eos, right-padded)."""

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor

    @classmethod
    def encode(
        cls, tokenizer: Any, prompts: Sequence[str], completions: Sequence[str], max_tokens: int
    ) -> Responses:
        prompt_ids, prompt_mask = encode_prompts(tokenizer, prompts)
        tokens, mask = encode_completions(tokenizer, completions, max_tokens)
        return cls(prompt_ids, prompt_mask, tokens, mask)

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def take(self, idx: torch.Tensor) -> Responses:
        """Rows ``idx``, with all-padding columns trimmed (fewer positions, same numbers)."""
        pm, m = self.prompt_mask[idx], self.mask[idx]
        p0 = int((pm.sum(0) > 0).nonzero()[0]) if bool(pm.any()) else pm.shape[1] - 1
        t1 = int(m.sum(1).max())
        return Responses(self.prompt_ids[idx, p0:], pm[:, p0:], self.tokens[idx, :t1], m[:, :t1])

    def seq_logp(self, model: torch.nn.Module) -> torch.Tensor:
        """``log pi(completion | prompt)`` under ``model``, ``[N]``, one forward pass."""
        logp, _ = token_logprobs(model, self.prompt_ids, self.prompt_mask, self.tokens, self.mask)
        return logp.sum(1)


@torch.no_grad()
def _sample_per_prompt(
    prior: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    n: int,
    max_new_tokens: int,
    generator: torch.Generator,
) -> list[list[str]]:
    out = []
    for prompt in prompts:
        done: list[str] = []
        while len(done) < n:  # chunks of 256 keep memory flat for large n
            k = min(256, n - len(done))
            done.extend(
                sample(prior, tokenizer, [prompt] * k, max_new_tokens, generator).completions
            )
        out.append(done)
    return out


def make_preference_pairs(
    prior: torch.nn.Module,
    tokenizer: Any,
    reward: str | RewardFn,
    prompts: Sequence[str],
    config: LMDPOConfig,
    generator: torch.Generator,
) -> list[PreferencePair]:
    """Sample ``config.samples`` completions per prompt from the prior, rank them into pairs.

    Raises:
        TailorError: no pair could be made (every sample got the same reward).
    """
    pairs: list[PreferencePair] = []
    for prompt, completions in zip(
        prompts,
        _sample_per_prompt(
            prior, tokenizer, prompts, config.samples, config.max_new_tokens, generator
        ),
        strict=True,
    ):
        k = config.group_size
        groups = [completions[i : i + k] for i in range(0, len(completions), k)]
        pairs.extend(pairs_from_samples([prompt] * len(groups), groups, reward))
    if not pairs:
        raise TailorError(
            "no preference pair could be made: every prior sample got the same add-on reward; "
            "draw more samples or pass --preferences FILE.jsonl"
        )
    return pairs


def make_labelled_responses(
    prior: torch.nn.Module,
    tokenizer: Any,
    reward: str | RewardFn,
    prompts: Sequence[str],
    config: LMDPOConfig,
    generator: torch.Generator,
) -> tuple[list[str], list[str], torch.Tensor]:
    """Sample the prior and label each response for ``ce-dpo``: ``(prompts, completions, labels)``.

    ``label = 1[r_R >= 1]`` when every reward is 0 or 1, else ``1[r_R > median(r_R)]``.
    """
    ps: list[str] = []
    cs: list[str] = []
    for prompt, completions in zip(
        prompts,
        _sample_per_prompt(
            prior, tokenizer, prompts, config.samples, config.max_new_tokens, generator
        ),
        strict=True,
    ):
        ps.extend([prompt] * len(completions))
        cs.extend(completions)
    r = evaluate_reward(reward, ps, cs)
    labels = r >= 1.0 if bool(np.isin(r, (0.0, 1.0)).all()) else r > np.median(r)
    return ps, cs, torch.as_tensor(labels, dtype=torch.float32)


def pairs_as_labelled(pairs: Sequence[PreferencePair]) -> tuple[list[str], list[str], torch.Tensor]:
    """Preference pairs as ``ce-dpo`` data: each chosen response label 1, each rejected label 0."""
    ps = [p.prompt for p in pairs] + [p.prompt for p in pairs]
    cs = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    labels = torch.cat([torch.ones(len(pairs)), torch.zeros(len(pairs))])
    return ps, cs, labels


class ReferenceLogp:
    """The prior's sequence log-probs ``log pi_prior(y|x)`` of ``data``'s rows, ``[N]``, computed
    on first use and kept.

    ``ref[rows]`` computes every not-yet-computed chunk that holds one of ``rows``: chunks are the
    fixed row ranges ``[64 j, 64 j + 64)`` that a pass over the whole data would take (a
    sequence's numbers can depend on the rows it is computed with: the padding and the matrix
    shapes), so the values are bitwise those of an up-front pass. Chunks of a training batch's
    size also keep the activations in cache (512 was about 15% slower on the benchmark's CPU).
    """

    def __init__(self, pair: PolicyPair, data: Responses, chunk: int = 64) -> None:
        self.pair, self.data, self.chunk = pair, data, chunk
        self.values = torch.zeros(len(data))
        self.done = torch.zeros(-(-len(data) // chunk), dtype=torch.bool)

    @torch.no_grad()
    def __getitem__(self, rows: torch.Tensor) -> torch.Tensor:
        for j in torch.unique(rows // self.chunk).tolist():
            if self.done[j]:
                continue
            lo, hi = j * self.chunk, min((j + 1) * self.chunk, len(self.data))
            with self.pair.reference() as prior:
                self.values[lo:hi] = self.data.take(torch.arange(lo, hi)).seq_logp(prior).cpu()
            self.done[j] = True
        return self.values[rows]

    @property
    def computed(self) -> int:
        """Rows computed so far."""
        last = len(self.done) - 1
        full = int(self.done.sum()) * self.chunk
        return full - (self.chunk * (last + 1) - len(self.data) if bool(self.done[last]) else 0)


def customize_offline(
    prior: torch.nn.Module | PolicyPair,
    tokenizer: Any,
    method: str | Method,
    config: LMDPOConfig = LMDPOConfig(),  # frozen dataclass: an immutable default
    reward: str | RewardFn | None = None,
    pairs: Sequence[PreferencePair] | None = None,
    prompts: Sequence[str] = ("",),
    control: LoopControl | None = None,
    **coefficients: float | None,
) -> tuple[torch.nn.Module, list[dict[str, float]], dict[str, Any]]:
    """Customize ``prior`` with ``dpo``, ``ce-dpo`` or ``decoupled-dpo``.

    Args:
        prior: the prior causal LM; frozen here, a deep copy of it is trained. A
            :class:`~tailor.lm.policy.PolicyPair` around it sets LoRA (no copy: the prior is the
            adapter-off model), gradient checkpointing and accumulation; a ``peft.PeftModel``
            trains its adapter only, its base is the prior.
        tokenizer: its tokenizer.
        method: ``dpo``, ``ce-dpo`` or ``decoupled-dpo``.
        config: training settings.
        reward: add-on reward used to rank/label prior samples (needed when ``pairs`` is None).
        pairs: preference pairs (e.g. :func:`tailor.lm.load_preferences`); None samples the prior.
        prompts: prompts to sample the prior with (when ``pairs`` is None).
        control: progress bar and the stop request polled before every iteration (a stopped
            run returns the model and history so far); its ``hooks``
            (:class:`~tailor.algos.lm_ppo_state.LMRunState`) make the run directory: metrics,
            checkpoints (the trained weights, Adam's state, the batch generator; the data and
            the reference log-probs are made again from the seed) and an exact resume.
        coefficients: ``beta`` (dpo, ce-dpo) or ``omega_prime``/``alpha_hat`` (decoupled-dpo);
            missing ones take :data:`tailor.lm.DEFAULT_COEFFICIENTS`.

    Returns:
        ``(policy, history, data_info)``: the customized model (eval mode), per-step metrics
        (``loss``, ``accuracy``: fraction of pairs with a positive margin / responses on the
        side of their label), and a summary of the training data.
    """
    resolved = offline_method(method, **coefficients)
    method, coef = resolved.name, dict(resolved.coefficients)
    c = config
    if pairs is None and reward is None:
        raise TailorError(f"{method} needs either preference pairs or an add-on reward")
    g = torch.Generator().manual_seed(c.seed)
    pair = as_policy_pair(prior)
    pair.freeze_prior()
    with pair.reference() as prior_model:
        data, labels, info = _offline_data(
            prior_model, tokenizer, method, c, (reward, pairs, prompts),
            pair.sampler_generator(g, c.seed),
        )  # fmt: skip
    n = len(data) if method == "ce-dpo" else len(data) // 2
    ref = ReferenceLogp(pair, data)
    pair.start(c.seed)
    opt = torch.optim.Adam(pair.params, lr=c.lr)
    control = control or LoopControl()
    hooks, parts = control.hooks, LoopParts(pair.policy, {"opt": opt}, {"sampler": g})
    start, history = hooks.start(parts) if hooks is not None else (0, [])
    bar = control.bar(c.steps, method, "step")
    for _ in range(start, c.steps):
        if control.stop():
            break
        idx = torch.randint(0, n, (min(c.batch_size, n),), generator=g)
        opt.zero_grad()
        step_loss, step_acc = 0.0, 0.0
        for micro in pair.micro_batches(idx):
            loss, acc = _micro_loss(pair, (data, ref, labels, n), method, coef, micro)
            loss = loss * (len(micro) / len(idx))  # its share of the batch mean (1 without accum)
            if not bool(torch.isfinite(loss)):
                raise TailorError(
                    f"{method}: the loss became {loss.item()} at step {len(history) + 1}; "
                    "training stopped and nothing was saved: lower the learning rate or beta"
                )
            pair.backward(loss)
            step_loss += loss.item()
            step_acc += float(acc) * (len(micro) / len(idx))
        pair.step(opt, c.max_grad_norm)
        history.append({"loss": step_loss, "accuracy": step_acc})
        if hooks is not None:
            hooks.after_iteration(parts, history)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
    if bar is not None:
        bar.close()
    check_trained(method, {"policy": pair.policy})
    if hooks is not None:
        hooks.finish(parts, history)
    info["coefficients"] = coef
    return pair.finish(), history, info


def _offline_data(
    prior: torch.nn.Module,
    tokenizer: Any,
    method: str,
    c: LMDPOConfig,
    given: tuple[str | RewardFn | None, Sequence[PreferencePair] | None, Sequence[str]],
    generator: torch.Generator,
) -> tuple[Responses, torch.Tensor | None, dict[str, Any]]:
    """The responses ``method`` trains on: ``(data, labels, info)``. ``given`` is ``(reward,
    pairs, prompts)``: the pairs, else prior samples ranked or labelled by the reward. Pairs are
    rows ``0..n-1`` (chosen) and ``n..2n-1`` (rejected) of one tensor, so one forward pass per
    step; ``labels`` is ``None`` except for ``ce-dpo``."""
    reward, pairs, prompts = given
    g = generator
    labels = None
    if method == "ce-dpo":
        if pairs is not None:
            ps, cs, labels = pairs_as_labelled(pairs)
            source = "preference file"
        else:
            ps, cs, labels = make_labelled_responses(prior, tokenizer, reward, prompts, c, g)
            source = "prior samples"
        data = Responses.encode(tokenizer, ps, cs, c.max_new_tokens)
        info = {"source": source, "responses": len(data), "positive": int(labels.sum())}
        return data, labels, info
    if pairs is None:
        pairs = make_preference_pairs(prior, tokenizer, reward, prompts, c, g)
        source = "prior samples"
    else:
        source = "preference file"
    data = Responses.encode(
        tokenizer,
        [p.prompt for p in pairs] * 2,
        [p.chosen for p in pairs] + [p.rejected for p in pairs],
        c.max_new_tokens,
    )
    return data, labels, {"source": source, "pairs": len(pairs)}


def _micro_loss(
    pair: PolicyPair,
    tables: tuple[Responses, ReferenceLogp, torch.Tensor | None, int],
    method: str,
    coef: dict[str, float],
    idx: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean loss, accuracy)`` of the pairs (``ce-dpo``: responses) ``idx``; ``tables`` is
    ``(data, reference log-probs, labels, n)``, ``n`` the number of pairs (rejected responses
    are rows ``idx + n``)."""
    data, ref, labels, n = tables
    dev = pair.device
    if method == "ce-dpo":
        assert labels is not None
        with pair.learning() as policy:
            logp = data.take(idx).seq_logp(policy)
        r, lab = ref[idx].to(dev), labels[idx].to(dev)
        losses = ce_dpo_loss(logp, r, lab, coef["beta"])
        margin = logp.detach() - r
        acc = ((margin > 0).float() == lab).float().mean()
        return losses.mean(), acc
    rows = torch.cat([idx, idx + n])
    with pair.learning() as policy:
        logp = data.take(rows).seq_logp(policy)
    lw, ll = logp[: len(idx)], logp[len(idx) :]
    rw, rl = ref[idx].to(dev), ref[idx + n].to(dev)
    if method == "dpo":
        losses = dpo_loss(lw, ll, rw, rl, coef["beta"])
    else:
        losses = decoupled_dpo_loss(lw, ll, rw, rl, coef["omega_prime"], coef["alpha_hat"])
    acc = (losses.detach() < math.log(2.0)).float().mean()  # margin > 0
    return losses.mean(), acc
