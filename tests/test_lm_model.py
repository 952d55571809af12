"""Models on disk, the character tokenizer, KV-cache sampling, log-probs and evaluation.

A tiny GPT-2 (2 layers, width 32) is pretrained once per session on a few names; the other LM
test files reuse it through :func:`tiny_model_dir`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from tailor.errors import TailorError
from tailor.lm.corpus import load_corpus
from tailor.lm.evaluate import EvalSampling, evaluate_model, success_rate
from tailor.lm.model import (
    PretrainConfig,
    build_char_tokenizer,
    encode_sequences,
    load_model,
    load_tokenizer,
    pretrain,
    save_model,
)
from tailor.lm.sampling import (
    encode_completions,
    encode_prompts,
    sample,
    sequence_logprobs,
    token_logprobs,
)

TINY_NAMES = (
    "anna bob carla dave emma frank gina hugo iris jack kate liam mia noah olga paul rosa sam "
    "tina ugo vera will xena yuri zoe ada eli ivy otto uma"
).split()
TINY_CONFIG = PretrainConfig(
    n_layer=2, n_embd=32, n_head=2, n_positions=16, dropout=0.0, steps=150, batch_size=32, lr=1e-2
)


def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Pretrain the tiny model once per session (shared by every LM test file) and save it."""
    path = tmp_path_factory.getbasetemp() / "tiny_lm"
    if not (path / "config.json").is_file():
        before = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny model: more threads only add synchronisation cost
        try:
            model, tok, _ = pretrain(TINY_NAMES, TINY_CONFIG)
        finally:
            torch.set_num_threads(before)
        save_model(model, tok, path)
    return path


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny models: extra threads only add synchronisation cost, badly so on a busy machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tiny_model_dir(tmp_path_factory)
    return path, load_model(path), load_tokenizer(path)


# --- tokenizer, corpus -------------------------------------------------------------------------


def test_char_tokenizer_encodes_one_token_per_character():
    tok = build_char_tokenizer("abn")
    # ids 0-3 are <pad> <bos> <eos> <unk>, then the sorted characters a=4, b=5, n=6.
    assert tok("ann").input_ids == [1, 4, 6, 6]
    assert tok("ab", add_special_tokens=False).input_ids == [4, 5]
    assert tok("az").input_ids == [1, 4, 3]  # unknown character -> <unk>
    assert tok.decode([1, 5, 4, 6, 2], skip_special_tokens=True) == "ban"
    ids, mask = encode_sequences(tok, ["ab", "b"], max_len=10)
    assert ids.tolist() == [[1, 4, 5, 2], [1, 5, 2, 0]]
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]


def test_load_corpus_file(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("anna\n\n  \nbob  \n", encoding="utf-8")
    assert load_corpus(f) == ["anna", "bob"]
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(TailorError, match="no non-blank line"):
        load_corpus(tmp_path / "empty.txt")
    with pytest.raises(TailorError, match="neither a built-in corpus"):
        load_corpus(tmp_path / "missing.txt")


def test_names_corpus_is_the_census_first_names():
    pytest.importorskip("names")
    lines = load_corpus("names")
    assert len(lines) == 5163  # 1219 male + 4275 female, lower-cased, 331 in both lists
    assert lines == sorted(set(lines))
    assert {"mary", "james", "ann"} <= set(lines)
    assert set("".join(lines)) == set("abcdefghijklmnopqrstuvwxyz")


# --- pretraining, save / load -------------------------------------------------------------------


def test_pretrain_is_deterministic_and_learns():
    cfg = PretrainConfig(
        n_layer=1, n_embd=16, n_head=2, n_positions=12, steps=25, lr=1e-2, warmup=5
    )
    _, _, a = pretrain(TINY_NAMES, cfg)
    _, _, b = pretrain(TINY_NAMES, cfg)
    assert a == b
    assert np.mean(a[-5:]) < np.mean(a[:5]) - 0.5


def test_save_load_round_trip_with_plain_transformers(tiny):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, model, tok = tiny
    assert (path / "model.safetensors").is_file()
    assert not list(path.glob("*.bin")) and not list(path.glob("*.pt"))  # no pickles
    tok_cfg = json.loads((path / "tokenizer_config.json").read_text())
    assert tok_cfg["tokenizer_class"] == "PreTrainedTokenizerFast"  # loads in transformers 4 too
    # transformers loads the directory as it is.
    m2 = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()
    t2 = AutoTokenizer.from_pretrained(path, local_files_only=True)
    assert t2("emma").input_ids == tok("emma").input_ids
    assert (t2.bos_token, t2.eos_token, t2.pad_token) == ("<bos>", "<eos>", "<pad>")
    ids = torch.tensor([tok("emma").input_ids])
    with torch.no_grad():
        torch.testing.assert_close(m2(ids).logits, model(ids).logits, rtol=0, atol=0)


def test_load_model_rejects_non_causal_lm_directories(tmp_path):
    with pytest.raises(TailorError, match="not a directory"):
        load_model(tmp_path / "nope")
    with pytest.raises(TailorError, match=r"no config\.json"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(TailorError, match="not a valid model config"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(TailorError, match="not a causal language model"):
        load_model(tmp_path)


# --- sampling and log-probs ---------------------------------------------------------------------


def test_sampling_is_deterministic_and_logps_match_a_full_forward(tiny):
    _, model, tok = tiny
    a = sample(model, tok, [""] * 16, 12, torch.Generator().manual_seed(3))
    b = sample(model, tok, [""] * 16, 12, torch.Generator().manual_seed(3))
    assert torch.equal(a.tokens, b.tokens) and a.completions == b.completions
    assert torch.equal(a.logp, b.logp)
    full, _ = token_logprobs(model, a.prompt_ids, a.prompt_mask, a.tokens, a.mask)
    torch.testing.assert_close(full.detach(), a.logp, rtol=0, atol=1e-5)
    torch.testing.assert_close(
        sequence_logprobs(model, a.prompt_ids, a.prompt_mask, a.tokens, a.mask).detach(),
        a.seq_logp,
        rtol=0,
        atol=1e-4,
    )
    # Mask: ones up to and including the first eos, zeros (and pad ids, log-prob 0) after.
    eos, pad = tok.eos_token_id, tok.pad_token_id
    for row, m, lp in zip(a.tokens.tolist(), a.mask.tolist(), a.logp.tolist(), strict=True):
        n = sum(m)
        assert m == [1] * n + [0] * (len(m) - n)
        assert all(t == pad for t in row[n:]) and all(v == 0.0 for v in lp[n:])
        assert eos not in row[: n - 1]
        assert all(v < 0 for v in lp[:n])
    # Completions decode the kept tokens, eos excluded; the tiny model reproduces its names.
    assert sum(c in TINY_NAMES for c in a.completions) >= 8


def test_log_probs_do_not_depend_on_padding(tiny):
    _, model, tok = tiny
    prompts = ["", "an", "jac"]
    ids, pmask = encode_prompts(tok, prompts)
    assert pmask.tolist() == [[0, 0, 0, 1], [0, 1, 1, 1], [1, 1, 1, 1]]  # bos + prompt, left-padded
    tokens, mask = encode_completions(tok, ["mia", "na", "k"])
    batched, _ = token_logprobs(model, ids, pmask, tokens, mask)
    for i, p in enumerate(prompts):
        one_ids, one_pm = encode_prompts(tok, [p])
        t1, m1 = encode_completions(tok, [["mia", "na", "k"][i]])
        alone, _ = token_logprobs(model, one_ids, one_pm, t1, m1)
        torch.testing.assert_close(batched[i, : t1.shape[1]], alone[0], rtol=0, atol=1e-5)


def test_sampling_with_prompts_matches_full_forward(tiny):
    _, model, tok = tiny
    s = sample(model, tok, ["", "an", "jac"] * 4, 8, torch.Generator().manual_seed(0))
    full, hidden = token_logprobs(model, s.prompt_ids, s.prompt_mask, s.tokens, s.mask, True)
    torch.testing.assert_close(full.detach(), s.logp, rtol=0, atol=1e-5)
    assert hidden.shape == (12, s.tokens.shape[1], 32)


# --- evaluation ---------------------------------------------------------------------------------


def test_success_rate_rule():
    assert success_rate(np.array([0.0, 1.0, 1.0, 0.0])) == 0.5
    assert success_rate(np.array([0.0, 0.5, 2.0, -1.0])) == 0.5  # non-binary: r > 0
    assert success_rate(np.array([0.0, 0.0])) == 0.0


def test_evaluate_prior_against_itself(tiny):
    _, model, tok = tiny
    sampling = EvalSampling(samples=64, seed=1)
    out = evaluate_model(model, model, tok, "ends-with-vowel", sampling, examples=3)
    assert set(out) >= {"addon", "success", "prior_logp_per_token", "kl_to_prior", "distinct"}
    assert abs(out["kl_to_prior"]) < 1e-4  # a model's KL to itself is 0
    assert out["prior_logp_per_token"] == pytest.approx(out["model_logp_per_token"], abs=1e-5)
    assert 0 < out["distinct"] <= 1 and out["distinct"] * 64 == round(out["distinct"] * 64)
    assert len(out["samples"]) == 3
    first = out["samples"][0]
    assert first["reward"] == float(first["completion"][-1:] in set("aeiou"))
    again = evaluate_model(model, model, tok, "ends-with-vowel", sampling, examples=3)
    assert again == out


def test_lean_gpt2_sampler_matches_the_model_forward_path(tiny):
    _, model, tok = tiny
    prompts = ["", "an", "jac", ""] * 4
    a = sample(model, tok, prompts, 12, torch.Generator().manual_seed(5), fast=True)
    b = sample(model, tok, prompts, 12, torch.Generator().manual_seed(5), fast=False)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.mask, b.mask)
    torch.testing.assert_close(a.logp, b.logp, rtol=0, atol=1e-5)
    # The context limit (16 positions) caps generation instead of failing.
    c = sample(model, tok, ["jac"], 40, torch.Generator().manual_seed(0), stop_at_eos=False)
    assert c.tokens.shape == (1, 16 - 4)
