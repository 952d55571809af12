"""LM runs at scale (issue 28): device/dtype/threads, gradient accumulation and checkpointing,
LoRA policies whose prior is the adapter-off model, adapter directories as priors, saving in the
prior's dtype, and DPO's streamed reference log-probs. Tiny random-init models built here."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from tailor.algos.dpo import LMDPOConfig, ReferenceLogp, Responses, customize_offline
from tailor.algos.lm_ppo import LMPPOConfig, customize_ppo
from tailor.errors import TailorError
from tailor.experiments.run import lm_customize
from tailor.lm import PreferencePair, lean
from tailor.lm.model import (
    build_char_tokenizer,
    import_transformers,
    load_model,
    save_model,
    saved_dtype,
)
from tailor.lm.policy import PolicyPair
from tailor.lm.runtime import LMRuntime, apply_threads
from tailor.lm.sampling import token_logprobs

CHARS = "abcdefghij"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_llama(seed: int = 0, dropout: float = 0.0) -> tuple[torch.nn.Module, object]:
    """A random 2-layer Llama over the char tokenizer of ``CHARS``."""
    tf = import_transformers()
    tok = build_char_tokenizer(CHARS)
    cfg = tf.LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
        attention_dropout=dropout, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(seed)
    return tf.LlamaForCausalLM(cfg).eval(), tok


def tiny_gpt2(dropout: float) -> tuple[torch.nn.Module, object]:
    tf = import_transformers()
    tok = build_char_tokenizer(CHARS)
    cfg = tf.GPT2Config(
        vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2,
        resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    return tf.GPT2LMHeadModel(cfg).eval(), tok


PAIRS = [
    PreferencePair("a", "bcde", "bcd"),
    PreferencePair("b", "ja", "jb"),
    PreferencePair("", "hia", "hj"),
    PreferencePair("c", "e", "ff"),
    PreferencePair("d", "aaa", "gh"),
    PreferencePair("", "ii", "bj"),
]
PPO = LMPPOConfig(
    steps=2, batch_size=8, minibatch_size=8, epochs=1, max_new_tokens=6, lr=1e-3, critic_warmup=0
)


def _batch(tok, rows=4):
    r = Responses.encode(tok, ["a", "", "bc", "d"][:rows], ["bcd", "ea", "j", "hh"][:rows], 8)
    return r.prompt_ids, r.prompt_mask, r.tokens, r.mask


def _max_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(
        float((x - y).abs().max())
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


# --- runtime settings ---------------------------------------------------------------------------


def test_runtime_checks_and_threads():
    with pytest.raises(TailorError, match="dtype"):
        LMRuntime(dtype="float64")
    with pytest.raises(TailorError, match="grad_accum"):
        LMRuntime(grad_accum=0)
    with pytest.raises(TailorError, match="save-merged"):
        LMRuntime(save_merged=True)  # a full run has nothing to merge
    if not torch.cuda.is_available():
        with pytest.raises(TailorError, match="no CUDA"):
            LMRuntime(device="cuda")
    before = torch.get_num_threads()
    try:
        apply_threads(LMRuntime(threads=2))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# --- gradient accumulation ----------------------------------------------------------------------


def test_grad_accum_gives_the_same_ppo_and_dpo_parameters():
    prior, tok = tiny_llama()
    p1, h1 = customize_ppo(PolicyPair(prior), tok, "ends-with-vowel", "kl", PPO, beta=0.1)
    p2, h2 = customize_ppo(
        PolicyPair(prior, LMRuntime(grad_accum=2)), tok, "ends-with-vowel", "kl", PPO, beta=0.1
    )
    assert _max_diff(p1, prior) > 1e-4  # it trained
    assert _max_diff(p1, p2) < 2e-6
    for a, b in zip(h1, h2, strict=True):
        assert a["policy_loss"] == pytest.approx(b["policy_loss"], abs=1e-6)
        assert a["value_loss"] == pytest.approx(b["value_loss"], abs=1e-6)
    cfg = LMDPOConfig(steps=3, batch_size=6, lr=1e-3, max_new_tokens=8)
    d1, g1, _ = customize_offline(PolicyPair(prior), tok, "dpo", cfg, pairs=PAIRS)
    d3, g3, _ = customize_offline(
        PolicyPair(prior, LMRuntime(grad_accum=3)), tok, "dpo", cfg, pairs=PAIRS
    )
    assert _max_diff(d1, prior) > 1e-4
    assert _max_diff(d1, d3) < 2e-6
    assert [h["loss"] for h in g1] == pytest.approx([h["loss"] for h in g3], abs=1e-6)
    assert [h["accuracy"] for h in g1] == pytest.approx([h["accuracy"] for h in g3])
    with pytest.raises(TailorError, match="grad_accum=7"):
        customize_offline(PolicyPair(prior, LMRuntime(grad_accum=7)), tok, "dpo", cfg, pairs=PAIRS)


# --- gradient checkpointing ---------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: tiny_gpt2(0.5), lambda: tiny_llama(dropout=0.5)])
def test_gradient_checkpointing_same_loss_and_grads_dropout_off(make):
    prior, tok = make()
    batch = _batch(tok)
    plain = PolicyPair(copy.deepcopy(prior))
    ckpt = PolicyPair(prior, LMRuntime(gradient_checkpointing=True))
    plain.start(0)
    ckpt.start(0)
    layers = ckpt._checkpointed
    blocks = [m for m in layers if type(m).__name__.endswith(("Block", "DecoderLayer"))]
    assert len(blocks) == 2
    calls = []
    for b in blocks:  # the recompute calls the block's forward, which calls its children
        next(b.children()).register_forward_hook(lambda m, a, out: calls.append(1))

    def loss_and_grads(pair):
        pair.policy.zero_grad()
        with pair.learning() as policy:
            logp, _ = token_logprobs(policy, *batch)
        loss = logp.sum()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in pair.params]

    l0, g0 = loss_and_grads(plain)
    l1, g1 = loss_and_grads(ckpt)
    # Each checkpointed block ran twice: forward, and the recompute in the backward pass.
    assert len(calls) == 4
    l2, _ = loss_and_grads(ckpt)
    assert torch.equal(l1, l2)  # dropout (p = 0.5 in the config) stayed off
    torch.testing.assert_close(l1, l0, atol=1e-5, rtol=0)
    for a, b in zip(g0, g1, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert all(not m.training for m in ckpt.policy.modules())  # eval mode again after
    ckpt.finish()
    assert not any(getattr(m, "gradient_checkpointing", False) for m in ckpt.policy.modules())


def test_gradient_checkpointing_dpo_run_matches():
    prior, tok = tiny_llama()
    cfg = LMDPOConfig(steps=2, batch_size=6, lr=1e-3, max_new_tokens=8)
    a, ha, _ = customize_offline(PolicyPair(prior), tok, "decoupled-dpo", cfg, pairs=PAIRS)
    run = LMRuntime(gradient_checkpointing=True)
    b, hb, _ = customize_offline(PolicyPair(prior, run), tok, "decoupled-dpo", cfg, pairs=PAIRS)
    assert [h["loss"] for h in ha] == pytest.approx([h["loss"] for h in hb], abs=1e-6)
    assert _max_diff(a, b) < 2e-6


# --- LoRA -----------------------------------------------------------------------------------------


def test_lora_policy_is_the_prior_plus_an_adapter_and_its_reference_the_base():
    prior, tok = tiny_llama()
    batch = _batch(tok)
    with torch.no_grad():
        lean_logp, _ = token_logprobs(prior, *batch)  # the lean Llama path (llamafast)
        with lean.disabled():  # the model's own forward, which a LoRA wrapper always runs
            base_logp, _ = token_logprobs(prior, *batch)
    torch.testing.assert_close(lean_logp, base_logp, rtol=0, atol=1e-5)
    before = {k: v.clone() for k, v in prior.state_dict().items()}
    n_base = sum(p.numel() for p in prior.parameters())
    pair = PolicyPair(prior, LMRuntime(lora_r=4))
    policy, hist = customize_ppo(pair, tok, "ends-with-vowel", "kl", PPO, beta=0.1)
    # No copy: the policy wraps the prior's own modules; only the adapter is added.
    assert policy.get_base_model() is prior
    n_lora = sum(p.numel() for p in pair.params)
    assert all(".lora_" in n for n, p in policy.named_parameters() if p in set(pair.params))
    assert sum(p.numel() for p in policy.parameters()) == n_base + n_lora
    assert 0 < n_lora < n_base / 4
    # The base weights did not move; the adapter did.
    base_now = policy.get_base_model().state_dict()
    for k, v in before.items():
        key = k.replace(".weight", ".base_layer.weight") if k not in base_now else k
        assert torch.equal(base_now[key], v), k
    assert any(float(p.abs().max()) > 0 for n, p in policy.named_parameters() if "lora_B" in n)
    with torch.no_grad():
        trained, _ = token_logprobs(policy, *batch)
        with policy.disable_adapter():
            off, _ = token_logprobs(policy, *batch)
    assert torch.equal(off, base_logp)  # the prior is the base, bit for bit
    assert not torch.allclose(trained, base_logp, atol=1e-4)
    assert hist[0]["kl_to_prior"] == pytest.approx(0.0, abs=1e-4)  # B = 0 at the start


def test_a_given_peft_model_trains_only_its_adapter():
    from peft import LoraConfig, get_peft_model

    base, tok = tiny_llama()
    cfg = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    torch.manual_seed(1)
    model = get_peft_model(base, cfg)
    frozen = {n: p.clone() for n, p in model.named_parameters() if ".lora_" not in n}
    adapter = {n: p.clone() for n, p in model.named_parameters() if ".lora_" in n}
    dcfg = LMDPOConfig(steps=3, batch_size=6, lr=1e-2, max_new_tokens=8)
    policy, _, _ = customize_offline(model, tok, "dpo", dcfg, pairs=PAIRS)
    now = dict(policy.named_parameters())
    assert all(torch.equal(now[n], v) for n, v in frozen.items())  # base bitwise unchanged
    assert any(not torch.equal(now[n], v) for n, v in adapter.items())


def test_lora_run_saves_an_adapter_or_a_merged_model_both_reloadable(tmp_path):
    from peft import PeftModel

    tf = import_transformers()
    prior, tok = tiny_llama()
    prior_dir = save_model(prior, tok, tmp_path / "prior")
    common = dict(
        reward="ends-with-vowel", progress=False, overrides={"steps": 2, "batch_size": 8},
        max_new_tokens=6,
    )  # fmt: skip
    lora = LMRuntime(lora_r=4, threads=1)
    lm_customize(prior_dir, "kl", tmp_path / "adapter", runtime=lora, **common)
    merged_rt = LMRuntime(lora_r=4, save_merged=True, threads=1)
    lm_customize(prior_dir, "kl", tmp_path / "merged", runtime=merged_rt, **common)
    a = tmp_path / "adapter"
    assert (a / "adapter_model.safetensors").is_file() and not (a / "config.json").exists()
    assert not list(a.glob("*.bin")) and (a / "tokenizer_config.json").is_file()
    cfg = json.loads((a / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(prior_dir.resolve())
    assert (tmp_path / "merged" / "model.safetensors").is_file()

    ids = torch.tensor([[tok.bos_token_id, 5, 6, 7, 8]])
    with torch.no_grad():
        base = tf.AutoModelForCausalLM.from_pretrained(prior_dir)
        by_peft = PeftModel.from_pretrained(base, a).eval()(ids).logits
        by_hf = tf.AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()(ids).logits
        by_tailor = load_model(a)(ids).logits  # the adapter directory as a model
        plain = load_model(prior_dir)(ids).logits
    torch.testing.assert_close(by_peft, by_hf, atol=1e-5, rtol=0)
    torch.testing.assert_close(by_tailor, by_hf, atol=1e-5, rtol=0)
    assert not torch.allclose(by_hf, plain, atol=1e-4)  # it learnt something

    # The adapter directory is a prior (before: "has no config.json"), also with --base.
    meta = lm_customize(a, "dpo", tmp_path / "again", pairs=PAIRS, progress=False,
                        overrides={"steps": 1}, runtime=LMRuntime(threads=1))  # fmt: skip
    assert meta["history"] and (tmp_path / "again" / "config.json").is_file()
    (a / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": "gone"}))
    with pytest.raises(TailorError, match="--base"):
        load_model(a)
    torch.testing.assert_close(load_model(a, base=prior_dir)(ids).logits, by_hf, atol=1e-5, rtol=0)


# --- dtype ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["auto", "bfloat16"])
def test_a_bfloat16_prior_is_saved_as_bfloat16(tmp_path, dtype):
    from safetensors import safe_open

    prior, tok = tiny_llama()
    prior_dir = save_model(prior.to(torch.bfloat16), tok, tmp_path / "prior")
    assert saved_dtype(prior_dir) == torch.bfloat16
    meta = lm_customize(
        prior_dir, "dpo", tmp_path / "out", pairs=PAIRS, progress=False,
        overrides={"steps": 2, "batch_size": 4}, runtime=LMRuntime(dtype=dtype, threads=1),
    )  # fmt: skip
    assert meta["runtime"]["saved_dtype"] == "bfloat16"
    assert meta["runtime"]["dtype"] == ("float32" if dtype == "auto" else "bfloat16")  # CPU
    with safe_open(str(tmp_path / "out" / "model.safetensors"), framework="pt") as f:
        kinds = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert kinds == {"BF16"}
    size = (tmp_path / "out" / "model.safetensors").stat().st_size
    assert size == pytest.approx((prior_dir / "model.safetensors").stat().st_size, rel=0.05)


def test_half_precision_prior_trains_float32_master_weights():
    prior = tiny_llama()[0]
    pair = PolicyPair(prior.to(torch.bfloat16))
    policy = pair.start(0)
    assert {p.dtype for p in pair.params} == {torch.float32}
    assert {p.dtype for p in prior.parameters()} == {torch.bfloat16}  # the prior stays small
    assert pair.autocast() is not None and pair.dtype == torch.bfloat16
    lora = PolicyPair(tiny_llama()[0].to(torch.bfloat16), LMRuntime(lora_r=2))
    lora.start(0)
    assert {p.dtype for p in lora.params} == {torch.float32}
    assert policy is pair.policy


# --- DPO streams its reference log-probs --------------------------------------------------------


def test_reference_logp_is_computed_on_demand_with_the_same_bits():
    prior, tok = tiny_gpt2(0.0)  # the packed fast path: its numbers depend on the batch
    g = torch.Generator().manual_seed(0)
    letters = list(CHARS)
    words = [
        "".join(letters[i] for i in torch.randint(0, 10, (int(k),), generator=g))
        for k in torch.randint(1, 9, (300,), generator=g)
    ]
    data = Responses.encode(tok, [w[:2] for w in words], words, 8)
    pair = PolicyPair(prior)
    pair.freeze_prior()
    ref = ReferenceLogp(pair, data)
    rows = torch.tensor([3, 70, 71, 299])
    part = ref[rows]
    assert ref.computed == 64 + 64 + 44  # chunks 0, 1 and 4 (rows 256..299)
    upfront = torch.cat(
        [data.take(torch.arange(i, min(i + 64, 300))).seq_logp(prior) for i in range(0, 300, 64)]
    )
    assert torch.equal(part, upfront[rows])
    assert torch.equal(ref[torch.arange(300)], upfront)  # every row, bit for bit
    assert ref.computed == 300


# --- CLI ----------------------------------------------------------------------------------------


def test_cli_lora_flags(tmp_path, capsys):
    from tailor.cli import main

    prior, tok = tiny_llama()
    prior_dir = save_model(prior, tok, tmp_path / "prior")
    argv = [
        "lm",
        "customize",
        "--prior",
        str(prior_dir),
        "--method",
        "dpo",
        "--reward",
        "ends-with-vowel",
        "--steps",
        "2",
        "--samples",
        "16",
        "--quiet",
        "--threads",
        "1",
    ]
    assert main([*argv, "--out", str(tmp_path / "full"), "--save-merged"]) == 2
    assert "--save-merged is for LoRA runs" in capsys.readouterr().err
    code = main([*argv, "--out", str(tmp_path / "lora"), "--lora-r", "2", "--grad-accum", "2",
                 "--gradient-checkpointing"])  # fmt: skip
    assert code == 0
    meta = json.loads(Path(tmp_path / "lora" / "tailor.json").read_text())
    assert meta["runtime"]["lora_r"] == 2 and meta["runtime"]["grad_accum"] == 2
    assert (tmp_path / "lora" / "adapter_model.safetensors").is_file()
