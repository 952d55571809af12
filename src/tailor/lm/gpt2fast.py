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

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["decode", "disabled", "fast_gpt2_ok", "packed_token_logprobs"]

_GELU_C = math.sqrt(2.0 / math.pi)
_ENABLED = True


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Within this block every caller uses the model's own ``forward`` (for comparisons)."""
    global _ENABLED
    before, _ENABLED = _ENABLED, False
    try:
        yield
    finally:
        _ENABLED = before


def fast_gpt2_ok(model: torch.nn.Module) -> bool:
    """Whether this module reproduces ``model`` exactly (plain GPT-2 settings only)."""
    cfg = getattr(model, "config", None)
    if not _ENABLED or type(model).__name__ != "GPT2LMHeadModel" or model.training or cfg is None:
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


@dataclass
class _Packing:
    """Index tensors mapping a left-padded prompt / right-padded completion batch to packed rows.

    ``N`` packed rows: each distinct prompt's real tokens once, then per sequence its completion
    tokens except the last. Attention group ``g`` holds ``n`` sequences padded to ``L_g``, the
    longest ``prompt + completion - 1`` among them.
    """

    ids: torch.Tensor  # [N] token id of each packed row
    pos: torch.Tensor  # [N] position id
    qkv: torch.Tensor  # row of qkv.view(N * 3 * nh, d) at each (group, part, seq, head, slot)
    att: torch.Tensor  # [N * nh] row of the groups' stacked attention output per (row, head)
    groups: list[tuple[int, int]]  # (sequences, padded length) of each attention group
    pred: torch.Tensor  # [M] packed row predicting each completion token (mask order)
    target: torch.Tensor  # [M] the completion token it predicts
    flat: torch.Tensor  # [M] index of that token in the flattened [B, T] output
    batch: int


def _pack(
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    heads: int,
) -> _Packing | None:
    """Build the packing, or None when the masks are not left-/right-padded (caller falls back).

    Attention runs in a few groups of sequences of similar length (sorted, equal counts), each
    padded to its own longest: about half the padded area of one ``[B, L]`` block. The gathers
    address ``d``-wide head slices directly, so that each group's ``q``, ``k``, ``v`` come out
    as contiguous ``[n * nh, L_g, d]`` blocks and the output goes back to ``[N, H]`` in one
    gather (no transposes).
    """
    b, p = prompt_ids.shape
    t = tokens.shape[1]
    pm, m = prompt_mask.bool(), mask.bool()
    plen, tlen = pm.sum(1), m.sum(1)
    cols_p, cols_t = torch.arange(p), torch.arange(t)
    if not (
        torch.equal(pm, cols_p[None] >= (p - plen)[:, None])
        and torch.equal(m, cols_t[None] < tlen[:, None])
        and bool((plen > 0).all())
    ):
        return None
    # Distinct prompts (ids and mask together: a pad id may also be a real token).
    key = torch.where(pm, prompt_ids, torch.full_like(prompt_ids, -1))
    uniq, inv = torch.unique(key, dim=0, return_inverse=True)
    umask = uniq >= 0
    uplen = umask.sum(1)
    ustart = torch.cumsum(uplen, 0) - uplen  # first packed row of each distinct prompt
    n_prompt = int(uplen.sum())
    # Completion rows: every completion token but the last, after all prompt rows.
    ncomp = (tlen - 1).clamp(min=0)
    cmask = cols_t[None] < ncomp[:, None]
    cstart = n_prompt + torch.cumsum(ncomp, 0) - ncomp
    upos = torch.cumsum(umask.long(), 1) - 1
    ids = torch.cat([uniq[umask], tokens[cmask]])
    pos = torch.cat([upos[umask], (plen[:, None] + cols_t[None])[cmask]])
    # Padded attention view: sequence i = its prompt rows, then its completion rows.
    seq = plen + ncomp
    length = int(seq.max())
    j = torch.arange(length)[None]
    pl = plen[:, None]
    gather = torch.where(
        j < pl,
        ustart[inv][:, None] + j,
        torch.where(j < seq[:, None], cstart[:, None] + j - pl, torch.zeros_like(j)),
    )
    # Each packed row's output comes from one slot: a prompt row from the first sequence that
    # has this prompt (all copies compute the same numbers), a completion row from its own.
    first = torch.full((uniq.shape[0],), b, dtype=torch.long).scatter_reduce(
        0, inv, torch.arange(b), "amin"
    )
    urow = torch.arange(uniq.shape[0])[:, None].expand_as(uniq)[umask]
    back = torch.cat(
        [
            first[urow] * length + upos[umask],
            (torch.arange(b)[:, None] * length + pl + cols_t[None])[cmask],
        ]
    )
    # Token k of sequence i is predicted by the row at position plen_i - 1 + k: the last prompt
    # row for k = 0, completion row k - 1 otherwise.
    last_prompt = (ustart + uplen - 1)[inv]
    src = torch.where(cols_t[None] == 0, last_prompt[:, None], cstart[:, None] + cols_t[None] - 1)
    flat = (torch.arange(b)[:, None] * t + cols_t[None])[m]
    nh = heads
    hh = torch.arange(nh)
    parts = torch.arange(3).view(3, 1, 1, 1) * nh
    order = torch.argsort(seq, stable=True)
    n_groups = min(4, max(1, b // 16))
    qkv_parts, groups = [], []
    group_of = torch.empty(b, dtype=torch.long)
    local = torch.empty(b, dtype=torch.long)
    offsets, lengths = [], []
    offset = 0
    for members in torch.tensor_split(order, n_groups):
        n, lg = len(members), int(seq[members].max())
        group_of[members] = len(groups)
        local[members] = torch.arange(n)
        # qkv row of (packed row r, part s in {q, k, v}, head h) is r * 3nh + s * nh + h.
        rows = gather[members, :lg].reshape(1, n, 1, lg)
        qkv_parts.append((rows * (3 * nh) + parts + hh.view(1, 1, nh, 1)).reshape(-1))
        groups.append((n, lg))
        offsets.append(offset)
        lengths.append(lg)
        offset += n * nh * lg
    # Output row of (sequence i, head h, slot l): its group's offset + (local_i nh + h) L_g + l.
    sb, sl = back // length, back % length
    g_of = group_of[sb]
    lg_of = torch.tensor(lengths)[g_of]
    att = (
        torch.tensor(offsets)[g_of][:, None]
        + (local[sb][:, None] * nh + hh[None]) * lg_of[:, None]
        + sl[:, None]
    )
    return _Packing(
        ids, pos, torch.cat(qkv_parts), att.reshape(-1), groups, src[m], tokens[m], flat, b
    )


def _causal_bias(length: int) -> torch.Tensor:
    """``[L, L]`` additive mask: 0 on and below the diagonal, -inf above."""
    return torch.full((length, length), float("-inf")).triu_(1)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d) + bias) v`` for ``[..., L, d]`` inputs (differentiable).

    Plain matrix products: for these tiny heads (L up to a few dozen, d = 32) torch's fused
    CPU attention kernel is several times slower, forward and backward.
    """
    s = torch.matmul(q, k.transpose(-1, -2)).mul_(q.shape[-1] ** -0.5).add_(bias)
    return torch.matmul(torch.softmax(s, -1), v)


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
    pk = _pack(prompt_ids.cpu(), prompt_mask.cpu(), tokens.cpu(), mask.cpu(), w.heads)
    if pk is None:
        return None
    hsz, nh = w.width, w.heads
    d = hsz // nh
    b = pk.batch
    x = F.embedding(pk.ids, w.wte) + F.embedding(pk.pos, w.wpe)  # [N, H]
    causal = {lg: _causal_bias(lg) for _, lg in pk.groups}
    for ly in w.layers:
        h = F.layer_norm(x, (hsz,), ly.ln1_w, ly.ln1_b, w.eps)
        qkv = torch.addmm(ly.qkv_b, h, ly.qkv_w).view(-1, d)  # [N * 3nh, d]
        blocks = qkv.index_select(0, pk.qkv).split([3 * n * nh * lg for n, lg in pk.groups])
        outs = []
        for blk, (n, lg) in zip(blocks, pk.groups, strict=True):
            q, k, v = blk.view(3, n * nh, lg, d)
            outs.append(_attend(q, k, v, causal[lg]).view(-1, d))  # [n * nh * L_g, d]
        att = torch.cat(outs) if len(outs) > 1 else outs[0]
        att = att.index_select(0, pk.att).view(-1, hsz)  # [N, H]
        x = x + torch.addmm(ly.proj_b, att, ly.proj_w)
        h = F.layer_norm(x, (hsz,), ly.ln2_w, ly.ln2_b, w.eps)
        f = _gelu(torch.addmm(ly.fc_b, h, ly.fc_w))
        x = x + torch.addmm(ly.out_b, f, ly.out_w)
    # ln_f is per row: apply it to the predicting rows only.
    hid = F.layer_norm(x.index_select(0, pk.pred), (hsz,), w.lnf_w, w.lnf_b, w.eps)  # [M, H]
    logits = hid @ w.head.T  # [M, V]
    lp = torch.log_softmax(logits, -1).gather(1, pk.target[:, None]).squeeze(1)
    t = tokens.shape[1]
    logp = lp.new_zeros(b * t).index_put((pk.flat,), lp).view(b, t)
    hidden = None
    if return_hidden:
        hidden = hid.new_zeros(b * t, hsz).index_put((pk.flat,), hid).view(b, t, hsz)
    return logp, hidden


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
        att = _attend(q, k, v, bias)
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
    stop_at_eos = eos is not None
    b, p = prompt_ids.shape
    hsz, nh = w.width, w.heads
    d = hsz // nh
    nl = len(w.layers)
    span = p + max_new_tokens - 1  # cache positions: the prompt and all but the last new token
    keys = torch.zeros(nl, span, b, nh, d)
    values = torch.zeros(nl, span, b, nh, d)
    # Prefill each distinct prompt once, then copy its cache columns to every row that has it.
    key = torch.where(prompt_mask.bool(), prompt_ids, torch.full_like(prompt_ids, -1))
    uniq, inv = torch.unique(key, dim=0, return_inverse=True)
    umask = (uniq >= 0).long()
    u = uniq.shape[0]
    k0 = torch.empty(nl, p, u, nh, d)
    v0 = torch.empty(nl, p, u, nh, d)
    logits = _prefill(w, uniq.clamp(min=0), umask, k0, v0)[inv]  # [B, V]
    keys[:, :p] = k0[:, :, inv]
    values[:, :p] = v0[:, :, inv]
    # Left padding: those key columns are hidden from every query (additive -inf).
    key_bias = None
    if not bool(prompt_mask.bool().all()):
        key_bias = torch.zeros(span, b)
        key_bias[:p] = torch.zeros(p, b).masked_fill(~prompt_mask.bool().T, float("-inf"))
        key_bias = key_bias[:, :, None]  # [span, B, 1], broadcast over heads
    # 1/sqrt(d) folded into the query columns once, instead of scaling scores every step.
    scale = d**-0.5
    qkv_wb = []
    for ly in w.layers:
        qw, qb = ly.qkv_w.detach().clone(), ly.qkv_b.detach().clone()
        qw[:, :hsz] *= scale
        qb[:hsz] *= scale
        qkv_wb.append((qw, qb))
    cache = _KVCache(keys, values, key_bias)
    next_pos = prompt_mask.sum(1)  # position of the first new token, [B]
    same_pos = bool((next_pos == next_pos[0]).all())
    tokens = torch.full((b, max_new_tokens), pad, dtype=torch.long)
    mask = torch.zeros((b, max_new_tokens), dtype=torch.long)
    logp = torch.zeros((b, max_new_tokens))
    rows = None  # original row of each working row, None while the batch is whole
    probs_all = None  # [B, V] distributions the draw reads once rows are dropped
    t_end = max_new_tokens
    for t in range(max_new_tokens):
        logp_all = torch.log_softmax(logits / temperature if temperature != 1.0 else logits, -1)
        if rows is None:
            tok = torch.multinomial(logp_all.exp(), 1, generator=generator)
        else:
            probs_all[rows] = logp_all.exp()
            tok = torch.multinomial(probs_all, 1, generator=generator)[rows]
        lp = logp_all.gather(1, tok).squeeze(1)
        tok = tok.squeeze(1)
        if rows is None:
            tokens[:, t], logp[:, t] = tok, lp
        else:
            tokens[rows, t], logp[rows, t] = tok, lp
        if t == max_new_tokens - 1:
            break
        if stop_at_eos:
            live = tok != eos
            n_live = int(live.sum())
            if n_live == 0:
                t_end = t + 1
                break
            if n_live <= 0.75 * len(tok):
                # Drop the finished rows: every per-row tensor keeps the live ones.
                keep = live.nonzero().squeeze(1)
                if rows is None:
                    probs_all = logp_all.exp()
                    rows = keep
                else:
                    rows = rows[keep]
                cache = cache.rows(keep)
                next_pos, tok = next_pos[keep], tok[keep]
            elif n_live < len(tok):
                # A finished row keeps decoding its pad token until the next drop: its keys
                # only ever meet its own queries, whose outputs are discarded.
                tok = torch.where(live, tok, pad)
        logits = _decode_step(w, qkv_wb, cache, tok, next_pos + t, same_pos, p + t)
    # Mask: 1 up to and including each row's first eos (or everywhere without eos stops).
    tokens, logp = tokens[:, :t_end], logp[:, :t_end]
    mask = mask[:, :t_end]
    if stop_at_eos:
        seen = (tokens == eos).long().cumsum(1)
        mask = ((seen - (tokens == eos).long()) == 0).long()
        tokens = torch.where(mask.bool(), tokens, pad)
        logp = torch.where(mask.bool(), logp, 0.0)
    else:
        mask.fill_(1)
    return tokens, mask, logp


@dataclass(frozen=True)
class _KVCache:
    """The decode's position-major cache: ``keys``/``values`` ``[layer, span, b, nh, d]`` and
    the additive mask of left-padded prompt columns ``key_bias`` ``[span, b, 1]`` (``None``:
    no padding)."""

    keys: torch.Tensor
    values: torch.Tensor
    key_bias: torch.Tensor | None

    def rows(self, keep: torch.Tensor) -> _KVCache:
        """The cache of the rows ``keep`` ``[b']`` only."""
        bias = self.key_bias[:, keep] if self.key_bias is not None else None
        return _KVCache(self.keys[:, :, keep], self.values[:, :, keep], bias)


def _decode_step(
    w: _Weights,
    qkv_wb: list[tuple[torch.Tensor, torch.Tensor]],
    cache: _KVCache,
    tok: torch.Tensor,
    pos: torch.Tensor,
    same_pos: bool,
    c: int,
) -> torch.Tensor:
    """One new token per row: write its keys/values at cache column ``c``, return the logits.

    ``cache``: see :class:`_KVCache`; ``tok``, ``pos``: ``[b]``. Attention of the single
    query streams the position-major cache: scores ``[c + 1, b, nh]`` are a broadcast product
    summed over ``d``, the output a product summed over positions.
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
