"""The lean Llama paths (:mod:`tailor.lm.llamafast`) compute the numbers of ``transformers``'
Llama, Qwen2 and Mistral.

Tiny random models built in code (no downloads), with a larger init scale than the default so
that the logits are far from uniform and the gradients not tiny. Every check compares against
the model's own ``forward`` (``fast=False``): per-token log-probs and hidden states on a ragged
batch (left-padded prompts, right-padded completions, shared and empty prompts), the gradient
of every parameter, the sampler's draws and recorded log-probs; grouped-query attention,
biases and tied embeddings are covered; unsupported settings fall back to the model.
"""

from __future__ import annotations

import string

import pytest
import torch

pytest.importorskip("transformers")

from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from tailor.lm import lean, llamafast
from tailor.lm.model import build_char_tokenizer
from tailor.lm.sampling import (
    encode_completions,
    encode_prompts,
    sample,
    token_logprobs,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread_lean_on():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    was = llamafast.set_enabled(True)
    yield
    llamafast.set_enabled(was)
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer(string.ascii_lowercase)


def build(tok, kind: str = "llama", **over):
    """A 2-layer, width-64 model of ``kind`` (4 query heads of 16; ``over`` overrides)."""
    classes = {
        "llama": (LlamaConfig, LlamaForCausalLM),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM),
        "mistral": (MistralConfig, MistralForCausalLM),
    }
    cfg_cls, model_cls = classes[kind]
    kw = dict(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        initializer_range=0.2,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    if kind == "mistral":
        kw["head_dim"] = 16
    kw.update(over)
    torch.manual_seed(0)
    model = model_cls(cfg_cls(**kw)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                # Norm weights away from 1 and nonzero biases: every term of the block counts.
                p.add_(0.3 * torch.randn_like(p))
    return model


CONFIGS = {
    "llama-gqa-bias": ("llama", dict(attention_bias=True, mlp_bias=True)),
    "llama-mha-tied": ("llama", dict(num_key_value_heads=4, tie_word_embeddings=True)),
    "llama-mqa": ("llama", dict(num_key_value_heads=1, rope_theta=500.0)),
    "qwen2": ("qwen2", {}),
    "mistral-window": ("mistral", dict(sliding_window=48)),
}

PROMPTS = ["", "ab", "xyz", "ab", "", "q", "mnopqrstuv"]
COMPLETIONS = ["hello", "a", "worldwide", "zz", "", "mnopqrs", "abcdefghijkl"]


def _batch(tok):
    ids, pmask = encode_prompts(tok, PROMPTS)
    tokens, mask = encode_completions(tok, COMPLETIONS)
    return ids, pmask, tokens, mask


@pytest.mark.parametrize("name", list(CONFIGS))
def test_packed_logprobs_hidden_and_gradients_match_the_model(tok, name):
    kind, over = CONFIGS[name]
    model = build(tok, kind, **over)
    ids, pmask, tokens, mask = _batch(tok)
    assert llamafast.fast_llama_ok(model, ids.shape[1] + tokens.shape[1])
    torch.manual_seed(1)
    w_lp = torch.randn(tokens.shape)
    w_h = torch.randn(*tokens.shape, model.config.hidden_size)
    m = mask.bool()
    out = {}
    for fast in (True, False):
        for p in model.parameters():
            p.requires_grad_(True)
            p.grad = None
        lp, hid = token_logprobs(model, ids, pmask, tokens, mask, return_hidden=True, fast=fast)
        ((lp * w_lp).sum() + (hid[m] * w_h[m]).sum()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        out[fast] = (lp.detach(), hid.detach(), grads)
        for p in model.parameters():
            p.requires_grad_(False)
    (lp_f, hid_f, g_f), (lp_s, hid_s, g_s) = out[True], out[False]
    assert float(lp_s[m].std()) > 0.3  # far from uniform: a wrong term would show
    torch.testing.assert_close(lp_f, lp_s, rtol=0, atol=1e-5)
    assert bool((lp_f[~m] == 0).all())
    torch.testing.assert_close(hid_f[m], hid_s[m], rtol=0, atol=1e-5)
    assert g_f.keys() == g_s.keys()
    for name_, g in g_s.items():
        scale = float(g.abs().max())
        assert scale > 0, name_
        torch.testing.assert_close(g_f[name_], g, rtol=1e-5, atol=1e-5 * max(scale, 1.0), msg=name_)


def test_gqa_packing_addresses_query_and_key_heads(tok):
    ids, pmask, tokens, mask = _batch(tok)
    pk = lean.pack(ids, pmask, tokens, mask, heads=4, kv_heads=2)
    n = len(pk.ids)
    # Each group's block: n_g sequences x (4 query + 2 key + 2 value heads) x L_g slots.
    assert len(pk.qkv) == sum(ng * 8 * lg for ng, lg in pk.groups)
    assert int(pk.qkv.max()) < n * 8
    # The first block's query part starts at packed row r's head 0 (r * 8), its key part at
    # head 4 of the same rows, its value part at head 6.
    ng, lg = pk.groups[0]
    q0, k0, v0 = pk.qkv[0], pk.qkv[ng * 4 * lg], pk.qkv[ng * 6 * lg]
    assert int(q0) % 8 == 0 and int(k0) == int(q0) + 4 and int(v0) == int(q0) + 6
    assert len(pk.att) == n * 4


@pytest.mark.parametrize("name", ["llama-gqa-bias", "llama-mha-tied", "qwen2"])
def test_decode_draws_like_the_forward_path_and_records_its_logprobs(tok, name):
    kind, over = CONFIGS[name]
    model = build(tok, kind, **over)
    prompts = ["", "an", "jac", "", "mi", "abcdefg"] * 5
    a = sample(model, tok, prompts, 16, torch.Generator().manual_seed(7))
    b = sample(model, tok, prompts, 16, torch.Generator().manual_seed(7), fast=False)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.mask, b.mask)
    torch.testing.assert_close(a.logp, b.logp, rtol=0, atol=1e-5)
    assert 0 < int(a.mask.sum()) < a.mask.numel()  # some rows stopped at eos
    ref, _ = token_logprobs(model, a.prompt_ids, a.prompt_mask, a.tokens, a.mask, fast=False)
    torch.testing.assert_close(a.logp, ref, rtol=0, atol=1e-5)
    hot = sample(model, tok, prompts, 16, torch.Generator().manual_seed(1), temperature=1.7)
    hot_s = sample(
        model, tok, prompts, 16, torch.Generator().manual_seed(1), temperature=1.7, fast=False
    )
    assert torch.equal(hot.tokens, hot_s.tokens)
    torch.testing.assert_close(hot.logp, hot_s.logp, rtol=0, atol=1e-5)


def test_decode_without_eos_fills_the_context(tok):
    model = build(tok, "llama", num_key_value_heads=1)
    s = sample(model, tok, ["", "abc", "hello"], 40, torch.Generator().manual_seed(3),
               stop_at_eos=False)  # fmt: skip
    assert s.tokens.shape == (3, 40) and bool(s.mask.all())
    ref, _ = token_logprobs(model, s.prompt_ids, s.prompt_mask, s.tokens, s.mask, fast=False)
    torch.testing.assert_close(s.logp, ref, rtol=0, atol=1e-5)


def test_unsupported_settings_fall_back_to_the_model(tok):
    ids, pmask, tokens, mask = _batch(tok)
    length = ids.shape[1] + tokens.shape[1]
    scaled = build(tok, rope_scaling={"rope_type": "linear", "factor": 2.0})
    assert not llamafast.fast_llama_ok(scaled, length)
    a, _ = token_logprobs(scaled, ids, pmask, tokens, mask)
    b, _ = token_logprobs(scaled, ids, pmask, tokens, mask, fast=False)
    assert torch.equal(a, b)  # the same code ran: the model's forward
    plain = build(tok)
    assert llamafast.fast_llama_ok(plain, length)
    assert not torch.equal(a, token_logprobs(plain, ids, pmask, tokens, mask)[0])
    # A window shorter than the sequences changes the numbers: not this path.
    short = build(tok, "mistral", sliding_window=8)
    assert llamafast.fast_llama_ok(short, 8) and not llamafast.fast_llama_ok(short, length)
    assert not llamafast.fast_llama_ok(short)
    assert not llamafast.fast_llama_ok(build(tok, hidden_act="gelu"))
    assert not llamafast.fast_llama_ok(build(tok, "qwen2", use_sliding_window=True,
                                             sliding_window=8, max_window_layers=0))  # fmt: skip
    plain.train()
    assert not llamafast.fast_llama_ok(plain)
    plain.eval()
    assert not llamafast.fast_llama_ok(plain.to(torch.float64))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not llamafast.fast_llama_ok(build(tok))
    with lean.disabled():
        assert not llamafast.fast_llama_ok(build(tok))
    was = llamafast.set_enabled(False)  # a process can switch it off
    try:
        assert was  # the default: on
        assert not llamafast.fast_llama_ok(build(tok))
    finally:
        llamafast.set_enabled(True)
