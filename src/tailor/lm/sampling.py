"""Batched sampling with the KV cache, and token / sequence log-probabilities in one forward pass.

Layout used everywhere in :mod:`tailor.lm` (``B`` sequences, prompt width ``P``, ``T`` generated
positions)::

    prompt_ids  [B, P]  left-padded prompt token ids (so every prompt ends at column P-1)
    prompt_mask [B, P]  1 on real prompt tokens, 0 on left padding
    tokens      [B, T]  generated ids, padded on the right after the end of each sequence
    mask        [B, T]  1 on generated tokens (the eos that ended a sequence included), else 0
    logp        [B, T]  log pi(token_t | prompt, tokens_<t) of the sampler, 0 where mask is 0

Positions are counted over real tokens only (``position_ids = cumsum(mask) - 1``), so a prompt's
left padding changes nothing about the numbers the model computes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from tailor.errors import TailorError

__all__ = [
    "Samples",
    "encode_prompts",
    "sample",
    "sequence_logprobs",
    "token_logprobs",
]


@dataclass
class Samples:
    """A batch of sampled completions (shapes in the module docstring).

    Attributes:
        prompts: the prompt text of each sequence, length ``B``.
        completions: the decoded completions (without special tokens), length ``B``.
        prompt_ids: ``[B, P]`` left-padded prompt ids.
        prompt_mask: ``[B, P]``.
        tokens: ``[B, T]`` generated ids.
        mask: ``[B, T]`` 1 on generated tokens.
        logp: ``[B, T]`` per-token log-probs of the sampler (the behaviour policy).
    """

    prompts: list[str]
    completions: list[str]
    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor
    logp: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        """Generated tokens per sequence (eos included), ``[B]``."""
        return self.mask.sum(1)

    @property
    def seq_logp(self) -> torch.Tensor:
        """``log pi(completion | prompt)`` of the sampler, ``[B]``."""
        return self.logp.sum(1)

    def __len__(self) -> int:
        return len(self.prompts)

    def select(self, idx: torch.Tensor) -> Samples:
        """The sub-batch ``idx`` (a 1-D index tensor)."""
        pick = idx.tolist()
        return Samples(
            [self.prompts[i] for i in pick],
            [self.completions[i] for i in pick],
            self.prompt_ids[idx],
            self.prompt_mask[idx],
            self.tokens[idx],
            self.mask[idx],
            self.logp[idx],
        )


def _prompt_token_ids(tokenizer: Any, prompts: Sequence[str]) -> list[list[int]]:
    # One batched tokenizer call (a fast tokenizer encodes the list in one go), and each
    # distinct prompt once.
    distinct = list(dict.fromkeys(prompts))
    enc = dict(zip(distinct, tokenizer(distinct).input_ids, strict=True)) if distinct else {}
    bos = tokenizer.bos_token_id
    out = []
    for p in prompts:
        ids = list(enc[p])
        if not ids:
            # An empty prompt must still give the model a position to predict from: the bos
            # token (GPT-2 style tokenizers without a bos use their eos as the start token).
            ids = [bos if bos is not None else tokenizer.eos_token_id]
        out.append(ids)
    return out


def _pad(rows: list[list[int]], pad: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``rows`` padded to the longest with ``pad`` (on the left or the right): ``(ids, mask)``."""
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    width = int(lengths.max())
    cols = torch.arange(width)[None]
    mask = cols >= (width - lengths)[:, None] if left else cols < lengths[:, None]
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    ids[mask] = torch.tensor([t for r in rows for t in r], dtype=torch.long)
    return ids, mask.long()


def encode_prompts(tokenizer: Any, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenize prompts and left-pad them: ``(prompt_ids [B, P], prompt_mask [B, P])``.

    The tokenizer's own special tokens are used (a tailor character tokenizer prepends
    ``<bos>``); an empty prompt becomes the single start token.
    """
    if isinstance(prompts, str):
        raise TailorError("prompts must be a list of strings, not one string")
    return _pad(_prompt_token_ids(tokenizer, prompts), tokenizer.pad_token_id, left=True)


def encode_completions(
    tokenizer: Any, completions: Sequence[str], max_tokens: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Completion ids followed by eos, right-padded: ``(tokens [B, T], mask [B, T])``.

    Completions are encoded without special tokens; ``max_tokens`` cuts longer ones (their eos
    is then lost, exactly as when sampling stops at ``max_new_tokens``).
    """
    completions = list(completions)
    eos = tokenizer.eos_token_id
    batch = tokenizer(completions, add_special_tokens=False).input_ids if completions else []
    enc = [[*ids, eos][:max_tokens] if max_tokens is not None else [*ids, eos] for ids in batch]
    return _pad(enc, tokenizer.pad_token_id, left=False)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(1) - 1).clamp(min=0)


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    stop_at_eos: bool = True,
    fast: bool = True,
) -> Samples:
    """Sample one completion per prompt, all in one batch, reusing the KV cache.

    Each step feeds only the newest token (``past_key_values`` holds the keys and values of
    everything before), draws ``y_t ~ softmax(logits / temperature)`` with ``generator`` and
    records ``log pi(y_t)`` of that sampling distribution. A sequence ends at its first eos (kept,
    with mask 1) or after ``max_new_tokens``; finished sequences get pad tokens with mask 0.

    Args:
        model: a causal LM (``transformers``), used in its current mode (call ``eval()`` first).
        tokenizer: its tokenizer (pad and eos tokens set).
        prompts: one prompt per sequence, length ``B``.
        max_new_tokens: most tokens generated per sequence (eos included), ``>= 1``.
        generator: torch generator for reproducible draws.
        temperature: sampling temperature ``> 0``; 1 samples the model itself.
        stop_at_eos: ``False`` always generates ``max_new_tokens`` (for benchmarks).
        fast: for a plain GPT-2 (``GPT2LMHeadModel``) or Llama / Qwen2 / Mistral in eval mode,
            float32 on the CPU, run the same arithmetic through :func:`tailor.lm.gpt2fast.decode`
            or :func:`tailor.lm.llamafast.decode` (``llamafast.set_enabled`` switches it; a
            preallocated position-major KV cache, no per-step mask building or cache objects,
            each distinct prompt prefilled once);
            other models, or ``fast=False``, go through the model's own ``forward`` with
            ``past_key_values``. Both draw the same tokens from the same generator and record
            the same log-probs (tested).

    Returns:
        :class:`Samples` with ``T <= max_new_tokens`` columns.
    """
    if max_new_tokens < 1:
        raise TailorError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not temperature > 0:
        raise TailorError(f"temperature must be > 0, got {temperature}")
    prompts = list(prompts)
    if not prompts:
        raise TailorError("sample needs at least one prompt")
    prompt_ids, prompt_mask = encode_prompts(tokenizer, prompts)
    cfg = getattr(model, "config", None)
    limit = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
    if limit is not None and prompt_ids.shape[1] + max_new_tokens > limit:
        # The model has no position beyond `limit`: generation stops there.
        max_new_tokens = limit - prompt_ids.shape[1]
        if max_new_tokens < 1:
            raise TailorError(
                f"the prompt takes {prompt_ids.shape[1]} tokens, the model's whole context"
            )
    lean = _lean_path(model, prompt_ids.shape[1] + max_new_tokens) if fast else None
    decode = _sample_forward if lean is None else _sample_lean(lean)
    tokens, mask, logp = decode(
        model,
        tokenizer,
        prompt_ids,
        prompt_mask,
        max_new_tokens,
        generator,
        temperature,
        stop_at_eos,
    )
    return Samples(
        prompts=prompts,
        completions=decode_completions(tokenizer, tokens, mask),
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        tokens=tokens,
        mask=mask,
        logp=logp,
    )


def _sample_forward(
    model: Any,
    tokenizer: Any,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    max_new_tokens: int,
    generator: torch.Generator | None,
    temperature: float,
    stop_at_eos: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Any causal LM: its own ``forward`` with ``past_key_values``; returns ``(tokens, mask,
    logp)``, each ``[B, T]`` on the CPU (same contract as :func:`_sample_lean`)."""
    device = next(model.parameters()).device
    b = prompt_ids.shape[0]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    attn = prompt_mask.to(device)
    pos = _positions(attn)
    out = model(
        input_ids=prompt_ids.to(device), attention_mask=attn, position_ids=pos, use_cache=True
    )
    past, logits = out.past_key_values, out.logits[:, -1]
    next_pos = pos[:, -1] + 1
    done = torch.zeros(b, dtype=torch.bool, device=device)
    toks, logps, masks = [], [], []
    for t in range(max_new_tokens):
        logp_all = F.log_softmax(logits.float() / temperature, dim=-1)  # [B, V]
        tok = torch.multinomial(logp_all.exp(), 1, generator=generator).squeeze(1)  # [B]
        lp = logp_all.gather(1, tok[:, None]).squeeze(1)
        alive = ~done
        tok = torch.where(alive, tok, torch.full_like(tok, pad))
        toks.append(tok)
        logps.append(torch.where(alive, lp, torch.zeros_like(lp)))
        masks.append(alive.long())
        if stop_at_eos:
            done = done | (tok == eos)
        if t == max_new_tokens - 1 or bool(done.all()):
            break
        attn = torch.cat([attn, alive.long()[:, None]], dim=1)
        out = model(
            input_ids=tok[:, None],
            attention_mask=attn,
            position_ids=next_pos[:, None],
            past_key_values=past,
            use_cache=True,
        )
        past, logits = out.past_key_values, out.logits[:, -1]
        next_pos = next_pos + 1
    tokens = torch.stack(toks, 1).cpu()
    mask = torch.stack(masks, 1).cpu()
    logp = torch.stack(logps, 1).cpu()
    return tokens, mask, logp


def decode_completions(tokenizer: Any, tokens: torch.Tensor, mask: torch.Tensor) -> list[str]:
    """Text of each completion: its masked tokens up to (not including) the first eos."""
    eos = tokenizer.eos_token_id
    out = []
    for row, m in zip(tokens.tolist(), mask.tolist(), strict=True):
        ids = [t for t, keep in zip(row, m, strict=True) if keep]
        if eos in ids:
            ids = ids[: ids.index(eos)]
        out.append(tokenizer.decode(ids, skip_special_tokens=True))
    return out


def token_logprobs(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    return_hidden: bool = False,
    fast: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs of ``tokens`` given the prompts, in ONE forward pass (differentiable).

    The model reads ``[prompt_ids, tokens]``; the logits at column ``P - 1 + t`` predict token
    ``t``. Padding is masked in attention and zeroed in the output.

    ``fast``: for a plain GPT-2 or Llama / Qwen2 / Mistral in eval mode (float32, CPU), compute
    the same numbers on packed rows (:func:`tailor.lm.gpt2fast.packed_token_logprobs`,
    :func:`tailor.lm.llamafast.packed_token_logprobs`: no padding, each distinct
    prompt once); gradients equal the model's own to rounding (tested). Other models, or
    ``fast=False``, run the model's ``forward``.

    Returns:
        ``(logp [B, T], hidden [B, T, H] or None)``: ``logp`` is 0 where ``mask`` is 0;
        ``hidden`` is the last layer's hidden state at the position that predicts token ``t``
        (the state ``s_t`` of the token-level MDP), for a value head (on the fast path it is 0
        where ``mask`` is 0).
    """
    lean = _lean_path(model, prompt_ids.shape[1] + tokens.shape[1]) if fast else None
    if lean is not None:
        out = lean.packed_token_logprobs(
            model, prompt_ids, prompt_mask, tokens, mask, return_hidden
        )
        if out is not None:
            return out
    device = next(model.parameters()).device
    ids = torch.cat([prompt_ids, tokens], dim=1).to(device)
    attn = torch.cat([prompt_mask, mask], dim=1).to(device)
    out = model(
        input_ids=ids,
        attention_mask=attn,
        position_ids=_positions(attn),
        output_hidden_states=return_hidden,
        use_cache=False,  # one pass over whole sequences: a KV cache would only be copied around
    )
    p = prompt_ids.shape[1]
    logits = out.logits[:, p - 1 : -1].float()  # [B, T, V]
    logp = torch.gather(F.log_softmax(logits, -1), 2, tokens.to(device)[..., None]).squeeze(-1)
    # `where`, not a product: a fully padded row may hold NaN logits, and NaN * 0 is NaN.
    logp = torch.where(mask.to(device).bool(), logp, torch.zeros_like(logp))
    hidden = out.hidden_states[-1][:, p - 1 : -1] if return_hidden else None
    return logp, hidden


def sequence_logprobs(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """``log pi(completion | prompt) = sum_t logp[:, t]``, shape ``[B]`` (differentiable)."""
    return token_logprobs(model, prompt_ids, prompt_mask, tokens, mask)[0].sum(1)


def _lean_path(model: torch.nn.Module, length: int) -> Any:
    """The lean module that reproduces ``model`` on sequences of up to ``length`` tokens
    (:mod:`tailor.lm.gpt2fast` or :mod:`tailor.lm.llamafast`), or None: the model's own
    ``forward``."""
    from tailor.lm import gpt2fast, llamafast

    if gpt2fast.fast_gpt2_ok(model):
        return gpt2fast
    if llamafast.fast_llama_ok(model, length):
        return llamafast
    return None


def _sample_lean(lean: Any) -> Any:
    """:func:`sample`'s decoder through ``lean.decode``: same signature and contract as
    :func:`_sample_forward`, ``(tokens, mask, logp)``."""

    def run(
        model: torch.nn.Module,
        tokenizer: Any,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        max_new_tokens: int,
        generator: torch.Generator | None,
        temperature: float,
        stop_at_eos: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return lean.decode(
            model,
            prompt_ids,
            prompt_mask,
            max_new_tokens,
            generator,
            temperature,
            tokenizer.eos_token_id if stop_at_eos else None,
            tokenizer.pad_token_id,
        )

    return run
