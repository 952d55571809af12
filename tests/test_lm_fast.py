"""The lean GPT-2 paths (:mod:`tailor.lm.gpt2fast`) compute the numbers of ``transformers``' GPT-2.

Every check compares against the model's own ``forward`` (``fast=False`` or
``gpt2fast.disabled()``): per-token log-probs and hidden states, the gradients of every
parameter, the sampler's recorded log-probs and draws, and a few DPO steps end to end.
"""

from __future__ import annotations

import string

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")

from tailor.algos.dpo import LMDPOConfig, customize_offline
from tailor.lm import PreferencePair, gpt2fast
from tailor.lm.model import (
    PretrainConfig,
    build_char_tokenizer,
    load_model,
    load_tokenizer,
    new_char_model,
)
from tailor.lm.sampling import encode_completions, encode_prompts, sample, token_logprobs
from test_lm_model import tiny_model_dir  # the session's tiny pretrained model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def small():
    """A random GPT-2 (2 layers, width 64, 4 heads of 16): random weights exercise every path."""
    tok = build_char_tokenizer(string.ascii_lowercase)
    cfg = PretrainConfig(n_layer=2, n_embd=64, n_head=4, n_positions=40, dropout=0.0, seed=1)
    return new_char_model(len(tok), cfg, tok).eval(), tok


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tiny_model_dir(tmp_path_factory)
    return load_model(path), load_tokenizer(path)


PROMPTS = ["", "ab", "xyz", "ab", "", "q"]
COMPLETIONS = ["hello", "a", "worldwide", "zz", "", "mnopqrs"]


def _batch(tok):
    ids, pmask = encode_prompts(tok, PROMPTS)
    tokens, mask = encode_completions(tok, COMPLETIONS)
    return ids, pmask, tokens, mask


def test_packed_logprobs_hidden_and_gradients_match_the_model(small):
    model, tok = small
    ids, pmask, tokens, mask = _batch(tok)
    assert gpt2fast.fast_gpt2_ok(model)
    torch.manual_seed(0)
    w_lp = torch.randn(tokens.shape)
    w_h = torch.randn(*tokens.shape, model.config.n_embd)
    m = mask.bool()
    out = {}
    for fast in (True, False):
        for p in model.parameters():
            p.requires_grad_(True)
            p.grad = None
        lp, hid = token_logprobs(model, ids, pmask, tokens, mask, return_hidden=True, fast=fast)
        # Hidden states count only where mask is 1 (the fast path leaves padding at 0).
        ((lp * w_lp).sum() + (hid[m] * w_h[m]).sum()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        out[fast] = (lp.detach(), hid.detach(), grads)
        for p in model.parameters():
            p.requires_grad_(False)
    (lp_f, hid_f, g_f), (lp_s, hid_s, g_s) = out[True], out[False]
    torch.testing.assert_close(lp_f, lp_s, rtol=0, atol=1e-5)
    assert bool((lp_f[~m] == 0).all())
    torch.testing.assert_close(hid_f[m], hid_s[m], rtol=0, atol=1e-5)
    assert g_f.keys() == g_s.keys() and len(g_f) >= 28
    for name in g_s:
        scale = float(g_s[name].abs().max())
        torch.testing.assert_close(
            g_f[name], g_s[name], rtol=1e-5, atol=1e-5 * max(scale, 1.0), msg=name
        )


def test_packing_shares_prompts_and_drops_last_tokens(small):
    _, tok = small
    ids, pmask, tokens, mask = _batch(tok)
    pk = gpt2fast._pack(ids, pmask, tokens, mask, heads=4)
    # Distinct prompts "", "ab", "xyz", "q" (with bos: 1 + 3 + 4 + 2 rows), then every
    # completion token but the last (completions of 6, 2, 10, 3, 1, 8 tokens with eos).
    assert len(pk.ids) == (1 + 3 + 4 + 2) + (5 + 1 + 9 + 2 + 0 + 7)
    assert len(pk.pred) == int(mask.sum())
    # A mask with a hole is not a right-padded completion: no packing (the caller falls back).
    holed = mask.clone()
    holed[0, 1] = 0
    assert gpt2fast._pack(ids, pmask, tokens, holed, heads=4) is None


def test_unusual_masks_fall_back_to_the_model(small):
    model, tok = small
    ids, pmask, tokens, mask = _batch(tok)
    holed = mask.clone()
    holed[0, 1] = 0
    a, _ = token_logprobs(model, ids, pmask, tokens, holed)
    b, _ = token_logprobs(model, ids, pmask, tokens, holed, fast=False)
    assert torch.equal(a, b)
    # An empty completion row (mask all 0) is still right-padded: packed, and 0 everywhere.
    empty = mask.clone()
    empty[2] = 0
    assert gpt2fast._pack(ids, pmask, tokens, empty, heads=4) is not None
    a, _ = token_logprobs(model, ids, pmask, tokens, empty)
    b, _ = token_logprobs(model, ids, pmask, tokens, empty, fast=False)
    assert bool((a[2] == 0).all())
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_decode_records_the_model_logprobs_and_draws_like_the_forward_path(tiny):
    model, tok = tiny
    prompts = ["", "an", "jac", "", "mi"] * 6
    a = sample(model, tok, prompts, 12, torch.Generator().manual_seed(7))
    b = sample(model, tok, prompts, 12, torch.Generator().manual_seed(7), fast=False)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.mask, b.mask)
    assert a.completions == b.completions
    assert int(a.mask.sum()) < a.mask.numel()  # some rows stopped at eos
    ref, _ = token_logprobs(model, a.prompt_ids, a.prompt_mask, a.tokens, a.mask, fast=False)
    torch.testing.assert_close(a.logp, ref, rtol=0, atol=1e-5)
    # Same seed, same samples; temperature: both paths draw and record the tempered policy.
    again = sample(model, tok, prompts, 12, torch.Generator().manual_seed(7))
    assert torch.equal(again.tokens, a.tokens) and torch.equal(again.logp, a.logp)
    hot = sample(model, tok, prompts, 12, torch.Generator().manual_seed(1), temperature=1.7)
    hot_s = sample(
        model, tok, prompts, 12, torch.Generator().manual_seed(1), temperature=1.7, fast=False
    )
    assert torch.equal(hot.tokens, hot_s.tokens)
    torch.testing.assert_close(hot.logp, hot_s.logp, rtol=0, atol=1e-5)


def test_decode_without_eos_on_a_random_model(small):
    model, tok = small
    prompts = ["", "abc", "", "hello"]
    s = sample(model, tok, prompts, 30, torch.Generator().manual_seed(3), stop_at_eos=False)
    assert s.tokens.shape == (4, 30) and bool(s.mask.all())
    ref, _ = token_logprobs(model, s.prompt_ids, s.prompt_mask, s.tokens, s.mask, fast=False)
    torch.testing.assert_close(s.logp, ref, rtol=0, atol=1e-5)


def test_first_token_frequencies_follow_the_model(small):
    model, tok = small
    n = 20000
    s = sample(model, tok, [""] * n, 1, torch.Generator().manual_seed(0), stop_at_eos=False)
    ids, pmask = encode_prompts(tok, [""])
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=ids, attention_mask=pmask).logits[0, -1], -1)
    freq = torch.bincount(s.tokens[:, 0], minlength=probs.numel()).float() / n
    assert 0.5 * float((freq - probs).abs().sum()) < 0.04  # about 0.015 expected at n = 20000


def test_gelu_gate_is_gelu_new():
    x = torch.linspace(-8, 8, 2001)
    torch.testing.assert_close(
        gpt2fast._gelu_gate(x) * x, F.gelu(x, approximate="tanh"), rtol=0, atol=2e-6
    )


def test_dpo_steps_match_the_model_forward_path(small):
    model, tok = small
    pairs = [
        PreferencePair(p, c, r)
        for p, c, r in [
            ("", "anna", "bob"),
            ("ab", "cdef", "g"),
            ("", "xyzzy", "qq"),
            ("q", "r", "stuvw"),
        ]
    ]
    cfg = LMDPOConfig(steps=3, batch_size=4, lr=1e-3, max_new_tokens=12, seed=2)
    fast, hist_f, _ = customize_offline(model, tok, "dpo", cfg, pairs=pairs, beta=0.5)
    with gpt2fast.disabled():
        assert not gpt2fast.fast_gpt2_ok(model)
        slow, hist_s, _ = customize_offline(model, tok, "dpo", cfg, pairs=pairs, beta=0.5)
    assert gpt2fast.fast_gpt2_ok(model)
    for a, b in zip(hist_f, hist_s, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
    for (name, a), b in zip(fast.named_parameters(), slow.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5, msg=name)
    assert any(
        not torch.equal(a, b) for a, b in zip(fast.parameters(), model.parameters(), strict=True)
    )


def test_eligibility(small):
    model, _ = small
    assert gpt2fast.fast_gpt2_ok(model)
    model.train()
    try:
        assert not gpt2fast.fast_gpt2_ok(model)  # dropout: the model's own forward
    finally:
        model.eval()
    assert not gpt2fast.fast_gpt2_ok(torch.nn.Linear(2, 2))
