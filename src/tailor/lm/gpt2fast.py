"""GPT-2 arithmetic in plain torch: KV-cache decoding and packed (padding-free) log-probs.

``transformers``' ``GPT2LMHeadModel`` spends most of its CPU time on a model this small (4 layers,
width 128) in per-call bookkeeping: 4-D mask building, cache objects, module dispatch, padding.
The two functions here compute *the same numbers* from the model's own parameter tensors
(read once per call; no copies for training, so gradients land in ``model.parameters()``):

* :func:`decode` samples with a preallocated, position-major KV cache
  (``[layer, position, batch, head, dim]``): writing a step's keys is one contiguous copy, and
  single-query attention is two broadcast multiply-and-sum passes that stream through memory
  (faster here than hundreds of tiny per-head matrix products).
* :func:`packed_token_logprobs` is the differentiable forward of training and scoring. Dense
  layers run on *packed* rows, only real tokens: no padding, each distinct prompt once (a chosen
  and a rejected response share their prompt; every empty prompt is the same single ``<bos>``),
  and not the last token of a response (it predicts nothing). Only attention runs padded: the
  sequences, sorted by length into a few groups, each a ``[n, L_g]`` block gathered from the
  packed rows (causal; with right padding a real query never sees a padding key). Gradients
  flow back through the gathers into the shared rows, so they equal the model's own to
  rounding (tested).

Both apply only to a plain GPT-2 in eval mode, float32, CPU (:func:`fast_gpt2_ok`); the callers in
:mod:`tailor.lm.sampling` fall back to the model's own ``forward`` otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tailor.lm.lean import (
    KVCache,
    SampleOptions,
    attend,
    disabled,
    enabled,
    group_attention,
    pack,
    packed_outputs,
    prefill_cache,
    sample_loop,
)

__all__ = ["decode", "disabled", "fast_gpt2_ok", "packed_token_logprobs"]

_GELU_C = math.sqrt(2.0 / math.pi)
# The shared packing under its old name (tests and the bench count packed rows with it).
_pack = pack


def fast_gpt2_ok(model: torch.nn.Module) -> bool:
    """Whether this module reproduces ``model`` exactly (plain GPT-2 settings only)."""
    cfg = getattr(model, "config", None)
    if not enabled() or type(model).__name__ != "GPT2LMHeadModel" or model.training or cfg is None:
        return False
    p = next(model.parameters())
    return bool(
        getattr(cfg, "scale_attn_weights", False)
        and not getattr(cfg, "scale_attn_by_inverse_layer_idx", True)
        and not getattr(cfg, "reorder_and_upcast_attn", True)
        and not getattr(cfg, "add_cross_attention", True)
        and getattr(cfg, "activation_function", "") in ("gelu_new", "gelu_pytorch_tanh")
        and getattr(model.lm_head, "bias", None) is None
        and p.dtype == torch.float32
        and p.device.type == "cpu"
        # Checkpointing happens in transformers' own blocks: this path would skip it.
        and not any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())
    )


@dataclass
class _Layer:
    ln1_w: torch.Tensor
    ln1_b: torch.Tensor
    qkv_w: torch.Tensor  # [H, 3H] (Conv1D stores [in, out])
    qkv_b: torch.Tensor
    proj_w: torch.Tensor  # [H, H]
    proj_b: torch.Tensor
    ln2_w: torch.Tensor
    ln2_b: torch.Tensor
    fc_w: torch.Tensor  # [H, I]
    fc_b: torch.Tensor
    out_w: torch.Tensor  # [I, H]
    out_b: torch.Tensor


@dataclass
class _Weights:
    """The model's own parameter tensors (no copies), looked up once per call."""

    wte: torch.Tensor
    wpe: torch.Tensor
    layers: list[_Layer]
    lnf_w: torch.Tensor
    lnf_b: torch.Tensor
    head: torch.Tensor  # [V, H] (tied to wte in GPT-2)
    heads: int
    eps: float

    @classmethod
    def of(cls, model: torch.nn.Module) -> _Weights:
        tr = model.transformer
        layers = [
            _Layer(
                b.ln_1.weight,
                b.ln_1.bias,
                b.attn.c_attn.weight,
                b.attn.c_attn.bias,
                b.attn.c_proj.weight,
                b.attn.c_proj.bias,
                b.ln_2.weight,
                b.ln_2.bias,
                b.mlp.c_fc.weight,
                b.mlp.c_fc.bias,
                b.mlp.c_proj.weight,
                b.mlp.c_proj.bias,
            )
            for b in tr.h
        ]
        cfg = model.config
        return cls(
            tr.wte.weight,
            tr.wpe.weight,
            layers,
            tr.ln_f.weight,
            tr.ln_f.bias,
            model.lm_head.weight,
            cfg.n_head,
            cfg.layer_norm_epsilon,
        )

    @property
    def width(self) -> int:
        return self.wte.shape[1]


def _gelu_gate(x: torch.Tensor) -> torch.Tensor:
    """``sigmoid(2c (x + 0.044715 x^3))``, so that ``gelu_new(x) = x * gate``.

    ``0.5 (1 + tanh(u)) = sigmoid(2u)``: the same function as ``F.gelu(approximate="tanh")``.
    Without autograd these passes beat the fused kernel, whose ``tanh`` is about 3x slower per
    element than ``sigmoid`` on this CPU; with autograd the fused kernel's backward wins.
    """
    two_c = 2.0 * _GELU_C
    # 2c + 2c a x^2 in one pass, then * x and the sigmoid in place.
    g = torch.addcmul(x.new_tensor(two_c), x, x, value=0.044715 * two_c)
    return g.mul_(x).sigmoid_()


def _gelu(x: torch.Tensor) -> torch.Tensor:
    """``gelu_new(x)``: the fused kernel when autograd records (its backward is the fastest
    here), else the sigmoid form (about 1.7x faster forward on this CPU)."""
    if torch.is_grad_enabled() and x.requires_grad:
        return F.gelu(x, approximate="tanh")
    return _gelu_gate(x).mul_(x)


# ---------------------------------------------------------------------------------------------
# Packed log-probs (training and scoring)
# ---------------------------------------------------------------------------------------------


def packed_token_logprobs(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    return_hidden: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """:func:`tailor.lm.sampling.token_logprobs` for GPT-2 on packed rows (differentiable).

    Returns:
        ``(logp [B, T], hidden [B, T, H] or None)``, 0 where ``mask`` is 0; ``hidden`` is the
        final (``ln_f``) hidden state at the position predicting each token. None when the
        masks are not a left-padded prompt and a right-padded completion (use the model).
    """
    w = _Weights.of(model)
    pk = pack(prompt_ids.cpu(), prompt_mask.cpu(), tokens.cpu(), mask.cpu(), w.heads)
    if pk is None:
        return None
    hsz, nh = w.width, w.heads
    d = hsz // nh
    x = F.embedding(pk.ids, w.wte) + F.embedding(pk.pos, w.wpe)  # [N, H]
    for ly in w.layers:
        h = F.layer_norm(x, (hsz,), ly.ln1_w, ly.ln1_b, w.eps)
        qkv = torch.addmm(ly.qkv_b, h, ly.qkv_w).view(-1, d)  # [N * 3nh, d]
        att = group_attention(qkv, pk)  # [N, H]
        x = x + torch.addmm(ly.proj_b, att, ly.proj_w)
        h = F.layer_norm(x, (hsz,), ly.ln2_w, ly.ln2_b, w.eps)
        f = _gelu(torch.addmm(ly.fc_b, h, ly.fc_w))
        x = x + torch.addmm(ly.out_b, f, ly.out_w)
    # ln_f is per row: apply it to the predicting rows only.
    hid = F.layer_norm(x.index_select(0, pk.pred), (hsz,), w.lnf_w, w.lnf_b, w.eps)  # [M, H]
    return packed_outputs(hid, w.head, pk, tokens.shape[1], return_hidden)


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def _prefill(
    w: _Weights, ids: torch.Tensor, pmask: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
) -> torch.Tensor:
    """Run left-padded prompts ``ids [U, P]`` through the model, write their keys/values into
    ``keys/values [layer, P, U, heads, d]`` and return the last column's logits ``[U, V]``."""
    u, p = ids.shape
    hsz, nh = w.width, w.heads
    d = hsz // nh
    pos = (pmask.cumsum(1) - 1).clamp(min=0)
    x = F.embedding(ids, w.wte) + F.embedding(pos, w.wpe)  # [U, P, H]
    # Causal and key-padding mask; a padding query sees itself so that no row is empty (its
    # output is never used).
    ok = torch.ones(p, p, dtype=torch.bool).tril()[None] & pmask.bool()[:, None, :]
    ok = (ok | torch.eye(p, dtype=torch.bool)[None])[:, None]  # [U, 1, P, P]
    bias = torch.zeros(ok.shape).masked_fill_(~ok, float("-inf"))
    for i, ly in enumerate(w.layers):
        h = F.layer_norm(x, (hsz,), ly.ln1_w, ly.ln1_b, w.eps)
        qkv = torch.addmm(ly.qkv_b, h.view(u * p, hsz), ly.qkv_w).view(u, p, 3, nh, d)
        keys[i].copy_(qkv[:, :, 1].transpose(0, 1))
        values[i].copy_(qkv[:, :, 2].transpose(0, 1))
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        att = attend(q, k, v, bias)
        x = x + torch.addmm(ly.proj_b, att.transpose(1, 2).reshape(u * p, hsz), ly.proj_w).view(
            u, p, hsz
        )
        h = F.layer_norm(x, (hsz,), ly.ln2_w, ly.ln2_b, w.eps).view(u * p, hsz)
        f = _gelu(torch.addmm(ly.fc_b, h, ly.fc_w))
        x = x + torch.addmm(ly.out_b, f, ly.out_w).view(u, p, hsz)
    last = F.layer_norm(x[:, -1], (hsz,), w.lnf_w, w.lnf_b, w.eps)
    return last @ w.head.T


@torch.no_grad()
def decode(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    max_new_tokens: int,
    generator: torch.Generator | None,
    temperature: float,
    eos: int | None,
    pad: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample ``max_new_tokens`` per left-padded prompt: ``(tokens, mask, logp)``, each ``[B, T]``.

    A row stops at its first ``eos`` token (``None``: no row stops early); ``pad`` fills the
    positions after it.

    Draws exactly as :func:`tailor.lm.sampling.sample` does through the model's ``forward``
    (``torch.multinomial`` on ``softmax(logits / temperature)`` of all ``B`` rows with
    ``generator``, one call per step), so a seed gives the same samples on both paths. Rows that
    have finished (eos) are dropped from the working batch once a quarter of it has finished;
    the draw still covers all ``B`` rows (a finished row keeps its last, unused distribution),
    so the random stream, and every live row's sample, stay the same. The caller checks the
    context length.
    """
    w = _Weights.of(model)
    nh = w.heads
    d = w.width // nh
    logits, cache = prefill_cache(
        lambda ids, m, k, v: _prefill(w, ids, m, k, v),
        prompt_ids,
        prompt_mask,
        (len(w.layers), nh, d),
        max_new_tokens,
    )
    # 1/sqrt(d) folded into the query columns once, instead of scaling scores every step.
    scale = d**-0.5
    qkv_wb = []
    for ly in w.layers:
        qw, qb = ly.qkv_w.detach().clone(), ly.qkv_b.detach().clone()
        qw[:, : w.width] *= scale
        qb[: w.width] *= scale
        qkv_wb.append((qw, qb))

    def step(cache: KVCache, tok: torch.Tensor, pos: torch.Tensor, same: bool, c: int):
        return _decode_step(w, qkv_wb, cache, tok, pos, same, c)

    opt = SampleOptions(max_new_tokens, generator, temperature, eos, pad)
    return sample_loop(step, logits, cache, prompt_mask, opt)


def _decode_step(
    w: _Weights,
    qkv_wb: list[tuple[torch.Tensor, torch.Tensor]],
    cache: KVCache,
    tok: torch.Tensor,
    pos: torch.Tensor,
    same_pos: bool,
    c: int,
) -> torch.Tensor:
    """One new token per row: write its keys/values at cache column ``c``, return the logits.

    ``cache``: see :class:`tailor.lm.lean.KVCache`; ``tok``, ``pos``: ``[b]``. Attention of
    the single query streams the position-major cache: scores ``[c + 1, b, nh]`` are a
    broadcast product summed over ``d``, the output a product summed over positions.
    """
    keys, values, key_bias = cache.keys, cache.values, cache.key_bias
    b = tok.shape[0]
    hsz, nh = w.width, w.heads
    d = hsz // nh
    e = c + 1
    x = F.embedding(tok, w.wte)  # [b, H]
    x.add_(w.wpe[int(pos[0])] if same_pos else F.embedding(pos, w.wpe))
    work = torch.empty(e, b, nh, d)
    for i, (ly, (qw, qb)) in enumerate(zip(w.layers, qkv_wb, strict=True)):
        h = F.layer_norm(x, (hsz,), ly.ln1_w, ly.ln1_b, w.eps)
        qkv = torch.addmm(qb, h, qw).view(b, 3, nh, d)  # q already scaled by 1/sqrt(d)
        keys[i, c] = qkv[:, 1]
        values[i, c] = qkv[:, 2]
        s = torch.mul(keys[i, :e], qkv[:, 0], out=work).sum(-1)  # [e, b, nh]
        if key_bias is not None:
            s.add_(key_bias[:e])
        s = torch.softmax(s, 0)
        att = torch.mul(values[i, :e], s[..., None], out=work).sum(0)  # [b, nh, d]
        x = torch.addmm(x, att.view(b, hsz), ly.proj_w).add_(ly.proj_b)
        h = F.layer_norm(x, (hsz,), ly.ln2_w, ly.ln2_b, w.eps)
        f = torch.addmm(ly.fc_b, h, ly.fc_w)
        x.addmm_(_gelu_gate(f).mul_(f), ly.out_w).add_(ly.out_b)
    return F.layer_norm(x, (hsz,), w.lnf_w, w.lnf_b, w.eps) @ w.head.T
