"""Shared machinery of the lean (plain-torch) LM paths, :mod:`tailor.lm.gpt2fast` and
:mod:`tailor.lm.llamafast`: architecture-free parts only.

* Packing (training and scoring): :func:`pack` maps a left-padded prompt / right-padded
  completion batch to *packed* rows (each distinct prompt's real tokens once, then every
  completion token but the last), and :func:`group_attention` runs causal attention on a few
  length-sorted groups gathered from those rows (grouped-query heads supported);
  :func:`packed_outputs` turns the final hidden rows into ``[B, T]`` log-probs.
* Decoding: :class:`KVCache` (position-major, ``[layer, position, batch, kv_head, dim]``),
  :func:`prefill_cache` (each distinct prompt once) and :func:`sample_loop` (the draw, eos
  stops, dropping finished rows); the model supplies its prefill and one-token step.
* :func:`disabled`: within it both lean paths step aside (the model's own ``forward`` runs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

__all__ = [
    "KVCache",
    "Packing",
    "SampleOptions",
    "attend",
    "causal_bias",
    "disabled",
    "enabled",
    "group_attention",
    "pack",
    "packed_outputs",
    "prefill_cache",
    "sample_loop",
]

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


def enabled() -> bool:
    """False inside :func:`disabled`."""
    return _ENABLED


# ---------------------------------------------------------------------------------------------
# Packed rows (training and scoring)
# ---------------------------------------------------------------------------------------------


@dataclass
class Packing:
    """Index tensors mapping a left-padded prompt / right-padded completion batch to packed rows.

    ``N`` packed rows: each distinct prompt's real tokens once, then per sequence its completion
    tokens except the last. Attention group ``g`` holds ``n`` sequences padded to ``L_g``, the
    longest ``prompt + completion - 1`` among them. The model's per-row projections are laid
    out as ``[N, nh + 2 kvh, d]`` (query heads, key heads, value heads; GPT-2: ``kvh = nh``).
    """

    ids: torch.Tensor  # [N] token id of each packed row
    pos: torch.Tensor  # [N] position id
    qkv: torch.Tensor  # row of qkv.view(N * (nh + 2 kvh), d) at each (group, part, seq, head, slot)
    att: torch.Tensor  # [N * nh] row of the groups' stacked attention output per (row, head)
    groups: list[tuple[int, int]]  # (sequences, padded length) of each attention group
    pred: torch.Tensor  # [M] packed row predicting each completion token (mask order)
    target: torch.Tensor  # [M] the completion token it predicts
    flat: torch.Tensor  # [M] index of that token in the flattened [B, T] output
    batch: int
    heads: tuple[int, int]  # (query heads nh, key/value heads kvh)


def pack(
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    heads: int,
    kv_heads: int | None = None,
    pad_to: int = 1,
) -> Packing | None:
    """Build the packing, or None when the masks are not left-/right-padded (caller falls back).

    Attention runs in a few groups of sequences of similar length (sorted, equal counts), each
    padded to its own longest: about half the padded area of one ``[B, L]`` block. The gathers
    address ``d``-wide head slices directly, so that each group's ``q``, ``k``, ``v`` come out
    as contiguous ``[n * nh, L_g, d]`` (keys, values: ``[n * kvh, L_g, d]``) blocks and the
    output goes back to ``[N, nh * d]`` in one gather (no transposes).

    ``pad_to``: each group's padded length is rounded up to a multiple of it. The softmax and
    ``attention @ v`` reductions over key slots are summed in an order that depends on the
    slot count; with lengths in steps of 16 a sequence's numbers no longer depend on which
    other sequences share its batch (tested: gradient accumulation then gives the numbers of
    one big batch, ties included). GPT-2 keeps 1 (its pinned numbers).
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
    length = _round_up(int(seq.max()), pad_to)
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
    kvh = nh if kv_heads is None else kv_heads
    qkv, att, groups = _group_index(gather, seq, back, length, (nh, kvh), pad_to)
    return Packing(
        ids,
        pos,
        qkv,
        att,
        groups,
        src[m],
        tokens[m],
        flat,
        b,
        (nh, kvh),
    )


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def _group_index(
    gather: torch.Tensor,
    seq: torch.Tensor,
    back: torch.Tensor,
    length: int,
    heads: tuple[int, int],
    pad_to: int,
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """:func:`pack`'s attention groups: ``(qkv, att, groups)`` as in :class:`Packing`, from the
    packed row ``gather [B, L]`` of each sequence slot, the sequence lengths ``seq [B]`` and the
    slot ``back [N]`` (``i L + l``) each packed row's output is read from."""
    b = seq.shape[0]
    nh, kvh = heads
    hh = torch.arange(nh)
    # qkv row of (packed row r, query head h) is r * width + h; key head g: r * width + nh + g;
    # value head g: r * width + nh + kvh + g.
    width = nh + 2 * kvh
    if kvh == nh:
        part_heads = torch.arange(3).view(3, 1, 1, 1) * nh + hh.view(1, 1, nh, 1)
    else:
        gg = torch.arange(kvh)
        part_heads = torch.cat([hh, nh + gg, nh + kvh + gg])
    order = torch.argsort(seq, stable=True)
    n_groups = min(4, max(1, b // 16))
    qkv_parts, groups = [], []
    group_of = torch.empty(b, dtype=torch.long)
    local = torch.empty(b, dtype=torch.long)
    offsets, lengths = [], []
    offset = 0
    for members in torch.tensor_split(order, n_groups):
        n, lg = len(members), _round_up(int(seq[members].max()), pad_to)
        group_of[members] = len(groups)
        local[members] = torch.arange(n)
        rows = gather[members, :lg]
        if kvh == nh:
            idx = rows.reshape(1, n, 1, lg) * width + part_heads  # [3, n, nh, lg]
        else:
            # [n, heads, lg] per part, then the parts one after another.
            idx = rows[:, None, :] * width + part_heads[None, :, None]
            idx = torch.cat(
                [
                    idx[:, :nh].reshape(-1),
                    idx[:, nh : nh + kvh].reshape(-1),
                    idx[:, nh + kvh :].reshape(-1),
                ]
            )
        qkv_parts.append(idx.reshape(-1))
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
    return torch.cat(qkv_parts), att.reshape(-1), groups


def causal_bias(length: int) -> torch.Tensor:
    """``[L, L]`` additive mask: 0 on and below the diagonal, -inf above."""
    return torch.full((length, length), float("-inf")).triu_(1)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d) + bias) v`` for ``[..., L, d]`` inputs (differentiable).

    Plain matrix products: for these tiny heads (L up to a few dozen, d = 32) torch's fused
    CPU attention kernel is several times slower, forward and backward.
    """
    s = torch.matmul(q, k.transpose(-1, -2)).mul_(q.shape[-1] ** -0.5).add_(bias)
    return torch.matmul(torch.softmax(s, -1), v)


def group_attention(qkv: torch.Tensor, pk: Packing) -> torch.Tensor:
    """Causal attention of every packed row: ``qkv [N * (nh + 2 kvh), d]`` (rows as in
    :class:`Packing`, positions already applied) to ``[N, nh * d]`` (differentiable).

    With ``kvh < nh`` query head ``h`` reads key/value head ``h // (nh / kvh)`` (as
    ``transformers``' ``repeat_kv``): a group's ``rep = nh / kvh`` query heads of one key head
    run as one ``[rep * L_g, d]`` block against its ``[L_g, d]`` keys (no key copies).
    """
    nh, kvh = pk.heads
    rep = nh // kvh
    d = qkv.shape[1]
    sizes = [n * (nh + 2 * kvh) * lg for n, lg in pk.groups]
    blocks = qkv.index_select(0, pk.qkv).split(sizes)
    outs = []
    for blk, (n, lg) in zip(blocks, pk.groups, strict=True):
        bias = causal_bias(lg)
        if kvh == nh:
            q, k, v = blk.view(3, n * nh, lg, d)
        else:
            q, k, v = blk.split([n * nh * lg, n * kvh * lg, n * kvh * lg])
            q = q.view(n * kvh, rep * lg, d)
            k, v = k.view(n * kvh, lg, d), v.view(n * kvh, lg, d)
            bias = bias.repeat(rep, 1)
        outs.append(attend(q, k, v, bias).view(-1, d))  # [n * nh * L_g, d]
    att = torch.cat(outs) if len(outs) > 1 else outs[0]
    return att.index_select(0, pk.att).view(-1, nh * d)


def packed_outputs(
    hid: torch.Tensor, head: torch.Tensor, pk: Packing, t: int, return_hidden: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(logp [B, T], hidden [B, T, H] or None)`` from the final hidden state of the predicting
    rows ``hid [M, H]`` and the output matrix ``head [V, H]``; 0 where the mask is 0."""
    b = pk.batch
    logits = hid @ head.T  # [M, V]
    lp = torch.log_softmax(logits, -1).gather(1, pk.target[:, None]).squeeze(1)
    logp = lp.new_zeros(b * t).index_put((pk.flat,), lp).view(b, t)
    hidden = None
    if return_hidden:
        hsz = hid.shape[1]
        hidden = hid.new_zeros(b * t, hsz).index_put((pk.flat,), hid).view(b, t, hsz)
    return logp, hidden


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KVCache:
    """The decode's position-major cache: ``keys``/``values`` ``[layer, span, b, kvh, d]`` and
    the additive mask of left-padded prompt columns ``key_bias`` ``[span, b, 1]`` (``None``:
    no padding)."""

    keys: torch.Tensor
    values: torch.Tensor
    key_bias: torch.Tensor | None

    def rows(self, keep: torch.Tensor) -> KVCache:
        """The cache of the rows ``keep`` ``[b']`` only."""
        bias = self.key_bias[:, keep] if self.key_bias is not None else None
        return KVCache(self.keys[:, :, keep], self.values[:, :, keep], bias)


# prefill(ids [U, P], mask [U, P], keys, values [layer, P, U, kvh, d]) -> last logits [U, V]
Prefill = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# step(cache, tok [b], pos [b], same_pos, column) -> logits [b, V]
Step = Callable[[KVCache, torch.Tensor, torch.Tensor, bool, int], torch.Tensor]


def prefill_cache(
    prefill: Prefill,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    shape: tuple[int, int, int],
    max_new_tokens: int,
) -> tuple[torch.Tensor, KVCache]:
    """Prefill each distinct prompt once, copy its cache columns to every row that has it:
    ``(logits [B, V] of the first new token, cache)``; ``shape`` is ``(layers, kvh, d)``."""
    nl, kvh, d = shape
    b, p = prompt_ids.shape
    span = p + max_new_tokens - 1  # cache positions: the prompt and all but the last new token
    keys = torch.zeros(nl, span, b, kvh, d)
    values = torch.zeros(nl, span, b, kvh, d)
    key = torch.where(prompt_mask.bool(), prompt_ids, torch.full_like(prompt_ids, -1))
    uniq, inv = torch.unique(key, dim=0, return_inverse=True)
    umask = (uniq >= 0).long()
    u = uniq.shape[0]
    k0 = torch.empty(nl, p, u, kvh, d)
    v0 = torch.empty(nl, p, u, kvh, d)
    logits = prefill(uniq.clamp(min=0), umask, k0, v0)[inv]  # [B, V]
    keys[:, :p] = k0[:, :, inv]
    values[:, :p] = v0[:, :, inv]
    # Left padding: those key columns are hidden from every query (additive -inf).
    key_bias = None
    if not bool(prompt_mask.bool().all()):
        key_bias = torch.zeros(span, b)
        key_bias[:p] = torch.zeros(p, b).masked_fill(~prompt_mask.bool().T, float("-inf"))
        key_bias = key_bias[:, :, None]  # [span, B, 1], broadcast over heads
    return logits, KVCache(keys, values, key_bias)


@dataclass(frozen=True)
class SampleOptions:
    """How :func:`sample_loop` draws: ``max_new_tokens``, ``generator``, ``temperature``,
    ``eos`` (None: no row stops early) and ``pad`` (fills positions after a row's eos)."""

    max_new_tokens: int
    generator: torch.Generator | None
    temperature: float
    eos: int | None
    pad: int


@torch.no_grad()
def sample_loop(
    step: Step,
    logits: torch.Tensor,
    cache: KVCache,
    prompt_mask: torch.Tensor,
    opt: SampleOptions,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw ``opt.max_new_tokens`` per row from the first logits ``[B, V]`` on: ``(tokens, mask,
    logp)``, each ``[B, T]``; ``step`` runs one token through the model.

    Draws exactly as :func:`tailor.lm.sampling.sample` does through the model's ``forward``
    (``torch.multinomial`` on ``softmax(logits / temperature)`` of all ``B`` rows with the
    generator, one call per step), so a seed gives the same samples on both paths. Rows that
    have finished (eos) are dropped from the working batch once a quarter of it has finished;
    the draw still covers all ``B`` rows (a finished row keeps its last, unused distribution),
    so the random stream, and every live row's sample, stay the same.
    """
    max_new_tokens, generator, temperature = opt.max_new_tokens, opt.generator, opt.temperature
    eos, pad = opt.eos, opt.pad
    stop_at_eos = eos is not None
    b, p = prompt_mask.shape
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
        logits = step(cache, tok, next_pos + t, same_pos, p + t)
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
