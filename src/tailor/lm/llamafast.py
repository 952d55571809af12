"""Llama-family arithmetic in plain torch: KV-cache decoding and packed (padding-free) log-probs.

The :mod:`tailor.lm.gpt2fast` idea for ``LlamaForCausalLM`` and the models that share its
block (``Qwen2ForCausalLM``, ``MistralForCausalLM``): RMSNorm, rotary positions, grouped-query
attention, SwiGLU MLP, optional attention/MLP biases, tied or untied head. The two functions
compute *the same numbers* as the model's ``forward`` from its own parameter tensors (no
copies for training: the fused ``q|k|v`` and ``gate|up`` matrices are concatenated inside the
autograd graph, so gradients land in ``model.parameters()``):

* :func:`decode` samples through :func:`tailor.lm.lean.sample_loop` with a preallocated,
  position-major cache of rotated keys (``[layer, position, batch, kv_head, dim]``).
* :func:`packed_token_logprobs` runs the dense layers on packed rows (real tokens only, each
  distinct prompt once) and attention in a few length-sorted groups
  (:func:`tailor.lm.lean.group_attention`); rotary positions are applied per packed row.

On by default (:func:`set_enabled` switches it); both apply only when :func:`fast_llama_ok` says the
configuration is exactly the one written here (eval mode, float32, CPU, no autocast, default
rotary, SiLU, plain ``nn.Linear`` projections: a LoRA wrapper falls back, no sliding window
shorter than the sequences); the callers in :mod:`tailor.lm.sampling` fall back to the
model's own ``forward`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tailor.lm.lean import (
    KVCache,
    SampleOptions,
    attend,
    enabled,
    group_attention,
    pack,
    packed_outputs,
    prefill_cache,
    sample_loop,
)

__all__ = ["decode", "fast_llama_ok", "packed_token_logprobs", "set_enabled"]

# On by default (GRPO on a small Llama: 1.98x TRL with it, 1.05x without; results/lm/trl_peers.md).
# Its numbers equal the model's own forward to rounding, not bit for bit: a plain Llama and its
# adapter-off LoRA wrapper (which always runs the model's forward) agree to 1e-5, not bitwise;
# `set_enabled(False)` or `lean.disabled()` gives the model's own forward everywhere.
_OPT_IN = True


def set_enabled(on: bool) -> bool:
    """Turn the lean Llama path on or off for this process (default on); returns the old
    setting."""
    global _OPT_IN
    before, _OPT_IN = _OPT_IN, bool(on)
    return before


_CLASSES = ("LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM")


def _window(cfg: object) -> int | None:
    """The sliding attention window that applies to every layer (None: full attention)."""
    if getattr(cfg, "layer_types", None) is not None:
        return None  # all "full_attention" (checked by fast_llama_ok)
    return getattr(cfg, "sliding_window", None)


def _linears_ok(layer: torch.nn.Module) -> bool:
    at, mlp = layer.self_attn, layer.mlp
    lin = [at.q_proj, at.k_proj, at.v_proj, at.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj]
    if not all(type(m) is torch.nn.Linear for m in lin):
        return False  # e.g. a LoRA wrapper: its output is not weight @ x
    qkv_bias = [m.bias is not None for m in lin[:3]]
    mlp_bias = [m.bias is not None for m in lin[4:]]
    return len(set(qkv_bias)) == 1 and len(set(mlp_bias)) == 1


def fast_llama_ok(model: torch.nn.Module, length: int | None = None) -> bool:
    """Whether this module reproduces ``model`` exactly for sequences of up to ``length``
    tokens (None: any length); plain Llama / Qwen2 / Mistral settings only."""
    cfg = getattr(model, "config", None)
    if (
        not (_OPT_IN and enabled())
        or type(model).__name__ not in _CLASSES
        or model.training
        or cfg is None
    ):
        return False
    rope = getattr(cfg, "rope_parameters", None) or {}
    window = _window(cfg)
    p = next(model.parameters())
    inner = getattr(model, "model", None)
    return bool(
        rope.get("rope_type", "default") == "default"
        and getattr(cfg, "rope_scaling", None) in (None, {}, rope)
        and getattr(cfg, "hidden_act", "") == "silu"
        and getattr(cfg, "attention_dropout", 0.0) == 0.0
        and getattr(cfg, "pretraining_tp", 1) == 1
        and all(t == "full_attention" for t in getattr(cfg, "layer_types", None) or ())
        and (window is None or (length is not None and length <= window))
        and inner is not None
        and float(getattr(inner.rotary_emb, "attention_scaling", 1.0)) == 1.0
        and type(inner.embed_tokens) is torch.nn.Embedding
        and getattr(model.lm_head, "bias", None) is None
        and all(_linears_ok(ly) for ly in inner.layers)
        and p.dtype == torch.float32
        and p.device.type == "cpu"
        # Under autocast the model's products run in low precision: not these numbers.
        and not torch.is_autocast_enabled("cpu")
        # Checkpointing happens in transformers' own blocks: this path would skip it.
        and not any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())
    )


@dataclass
class _Layer:
    norm1: torch.Tensor  # [H]
    qkv_w: torch.Tensor  # [(nh + 2 kvh) d, H]: q_proj | k_proj | v_proj
    qkv_b: torch.Tensor | None
    o_w: torch.Tensor  # [H, nh d]
    o_b: torch.Tensor | None
    norm2: torch.Tensor
    gu_w: torch.Tensor  # [2 I, H]: gate_proj | up_proj
    gu_b: torch.Tensor | None
    down_w: torch.Tensor  # [H, I]
    down_b: torch.Tensor | None


def _cat(ts: list[torch.Tensor | None]) -> torch.Tensor | None:
    return None if ts[0] is None else torch.cat(ts)


@dataclass
class _Weights:
    """The model's parameter tensors, looked up once per call; the fused matrices are
    concatenated in the caller's grad mode (differentiable)."""

    embed: torch.Tensor  # [V, H]
    pad_idx: int | None  # the embedding's padding_idx (no gradient to that row, as nn.Embedding)
    layers: list[_Layer]
    norm: torch.Tensor
    head: torch.Tensor  # [V, H] (may be embed itself: tied)
    inv_freq: torch.Tensor  # [d / 2]
    heads: int
    kv_heads: int
    head_dim: int
    eps: float

    @classmethod
    def of(cls, model: torch.nn.Module) -> _Weights:
        inner, cfg = model.model, model.config
        layers = []
        for b in inner.layers:
            at, mlp = b.self_attn, b.mlp
            layers.append(
                _Layer(
                    b.input_layernorm.weight,
                    torch.cat([at.q_proj.weight, at.k_proj.weight, at.v_proj.weight]),
                    _cat([at.q_proj.bias, at.k_proj.bias, at.v_proj.bias]),
                    at.o_proj.weight,
                    at.o_proj.bias,
                    b.post_attention_layernorm.weight,
                    torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]),
                    _cat([mlp.gate_proj.bias, mlp.up_proj.bias]),
                    mlp.down_proj.weight,
                    mlp.down_proj.bias,
                )
            )
        at0 = inner.layers[0].self_attn
        return cls(
            inner.embed_tokens.weight,
            inner.embed_tokens.padding_idx,
            layers,
            inner.norm.weight,
            model.lm_head.weight,
            inner.rotary_emb.inv_freq,
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            at0.head_dim,
            inner.norm.variance_epsilon,
        )


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``LlamaRMSNorm``: ``weight * x / sqrt(mean(x^2) + eps)`` over the last axis."""
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


def _rope(inv_freq: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cos, sin)`` ``[N, 1, d]`` of positions ``pos [N]``, as ``LlamaRotaryEmbedding``."""
    freqs = pos.float()[:, None] * inv_freq[None]
    emb = torch.cat((freqs, freqs), -1)[:, None]
    return emb.cos(), emb.sin()


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``apply_rotary_pos_emb`` on ``x [N, heads, d]``: ``x cos + rotate_half(x) sin``."""
    x1, x2 = x.chunk(2, -1)
    return x * cos + torch.cat((-x2, x1), -1) * sin


def _mlp(ly: _Layer, h: torch.Tensor) -> torch.Tensor:
    """SwiGLU ``down(silu(gate h) * up h)`` on rows ``h [N, H]``."""
    g, u = F.linear(h, ly.gu_w, ly.gu_b).chunk(2, -1)
    return F.linear(F.silu(g) * u, ly.down_w, ly.down_b)


def _qkv(w: _Weights, ly: _Layer, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """Rows ``h [N, H]`` to ``[N, nh + 2 kvh, d]`` projections, queries and keys rotated."""
    n_qk = w.heads + w.kv_heads
    qkv = F.linear(h, ly.qkv_w, ly.qkv_b).view(h.shape[0], -1, w.head_dim)
    return torch.cat([_rotate(qkv[:, :n_qk], cos, sin), qkv[:, n_qk:]], 1)


def packed_token_logprobs(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    return_hidden: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """:func:`tailor.lm.sampling.token_logprobs` for a Llama on packed rows (differentiable).

    Returns:
        ``(logp [B, T], hidden [B, T, H] or None)``, 0 where ``mask`` is 0; ``hidden`` is the
        final (normed) hidden state at the position predicting each token. None when the
        masks are not a left-padded prompt and a right-padded completion (use the model).
    """
    w = _Weights.of(model)
    # Attention lengths in steps of 16: a row's numbers do not depend on its batch (see pack).
    ids, pm, tk, m = prompt_ids.cpu(), prompt_mask.cpu(), tokens.cpu(), mask.cpu()
    pk = pack(ids, pm, tk, m, w.heads, w.kv_heads, pad_to=16)
    if pk is None:
        return None
    x = F.embedding(pk.ids, w.embed, padding_idx=w.pad_idx)  # [N, H]
    cos, sin = _rope(w.inv_freq, pk.pos)
    for ly in w.layers:
        qkv = _qkv(w, ly, _rms(x, ly.norm1, w.eps), cos, sin)
        att = group_attention(qkv.view(-1, w.head_dim), pk)  # [N, nh d]
        x = x + F.linear(att, ly.o_w, ly.o_b)
        x = x + _mlp(ly, _rms(x, ly.norm2, w.eps))
    # The final norm is per row: apply it to the predicting rows only.
    hid = _rms(x.index_select(0, pk.pred), w.norm, w.eps)  # [M, H]
    return packed_outputs(hid, w.head, pk, tokens.shape[1], return_hidden)


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def _prefill(
    w: _Weights, ids: torch.Tensor, pmask: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
) -> torch.Tensor:
    """Run left-padded prompts ``ids [U, P]`` through the model, write their rotated keys and
    values into ``keys/values [layer, P, U, kvh, d]``, return the last column's logits
    ``[U, V]``."""
    u, p = ids.shape
    nh, kvh, d = w.heads, w.kv_heads, w.head_dim
    rep = nh // kvh
    pos = (pmask.cumsum(1) - 1).clamp(min=0)
    x = F.embedding(ids, w.embed).view(u * p, -1)  # [U P, H]
    cos, sin = _rope(w.inv_freq, pos.reshape(-1))
    # Causal and key-padding mask; a padding query sees itself so that no row is empty (its
    # output is never used). Rows are (query head within its key head, position).
    ok = torch.ones(p, p, dtype=torch.bool).tril()[None] & pmask.bool()[:, None, :]
    ok = (ok | torch.eye(p, dtype=torch.bool)[None])[:, None]  # [U, 1, P, P]
    bias = torch.zeros(ok.shape).masked_fill_(~ok, float("-inf")).repeat(1, 1, rep, 1)
    for i, ly in enumerate(w.layers):
        qkv = _qkv(w, ly, _rms(x, ly.norm1, w.eps), cos, sin).view(u, p, -1, d)
        q, k, v = qkv.split([nh, kvh, kvh], 2)
        keys[i].copy_(k.transpose(0, 1))
        values[i].copy_(v.transpose(0, 1))
        q = q.reshape(u, p, kvh, rep, d).permute(0, 2, 3, 1, 4).reshape(u, kvh, rep * p, d)
        att = attend(q, k.transpose(1, 2), v.transpose(1, 2), bias)  # [U, kvh, rep P, d]
        att = att.view(u, kvh, rep, p, d).permute(0, 3, 1, 2, 4).reshape(u * p, nh * d)
        x = x + F.linear(att, ly.o_w, ly.o_b)
        x = x + _mlp(ly, _rms(x, ly.norm2, w.eps))
    last = _rms(x.view(u, p, -1)[:, -1], w.norm, w.eps)
    return last @ w.head.T


def _decode_step(
    w: _Weights, cache: KVCache, tok: torch.Tensor, pos: torch.Tensor, c: int
) -> torch.Tensor:
    """One new token per row: write its rotated key and value at cache column ``c``, return
    the logits ``[b, V]``.

    ``cache``: see :class:`tailor.lm.lean.KVCache`; ``tok``, ``pos``: ``[b]``. The single
    query's attention streams the position-major cache: scores ``[c + 1, b, kvh, rep]`` are a
    broadcast product summed over ``d`` (each key head against its ``rep`` query heads), the
    output a product summed over positions.
    """
    keys, values, key_bias = cache.keys, cache.values, cache.key_bias
    b = tok.shape[0]
    nh, kvh, d = w.heads, w.kv_heads, w.head_dim
    rep = nh // kvh
    e = c + 1
    x = F.embedding(tok, w.embed)  # [b, H]
    cos, sin = _rope(w.inv_freq, pos)
    work = torch.empty(e, b, kvh, rep, d)
    kb = key_bias[:e, :, :, None] if key_bias is not None else None  # [e, b, 1, 1]
    for i, ly in enumerate(w.layers):
        qkv = _qkv(w, ly, _rms(x, ly.norm1, w.eps), cos, sin)  # [b, nh + 2 kvh, d]
        keys[i, c] = qkv[:, nh : nh + kvh]
        values[i, c] = qkv[:, nh + kvh :]
        q = qkv[:, :nh].reshape(b, kvh, rep, d).mul_(d**-0.5)
        s = torch.mul(keys[i, :e, :, :, None], q, out=work).sum(-1)  # [e, b, kvh, rep]
        if kb is not None:
            s.add_(kb)
        s = torch.softmax(s, 0)
        att = torch.mul(values[i, :e, :, :, None], s[..., None], out=work).sum(0)
        x = x + F.linear(att.view(b, nh * d), ly.o_w, ly.o_b)
        x = x + _mlp(ly, _rms(x, ly.norm2, w.eps))
    return _rms(x, w.norm, w.eps) @ w.head.T


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

    Same contract and the same draws as :func:`tailor.lm.gpt2fast.decode` (see
    :func:`tailor.lm.lean.sample_loop`): a row stops at its first ``eos`` (``None``: no row
    stops early), ``pad`` fills the positions after it. The caller checks the context length.
    """
    w = _Weights.of(model)
    logits, cache = prefill_cache(
        lambda ids, m, k, v: _prefill(w, ids, m, k, v),
        prompt_ids,
        prompt_mask,
        (len(w.layers), w.kv_heads, w.head_dim),
        max_new_tokens,
    )

    def step(cache: KVCache, tok: torch.Tensor, pos: torch.Tensor, same: bool, c: int):
        return _decode_step(w, cache, tok, pos, c)

    opt = SampleOptions(max_new_tokens, generator, temperature, eos, pad)
    return sample_loop(step, logits, cache, prompt_mask, opt)
