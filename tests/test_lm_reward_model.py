"""Batched rewards and sequence-classification reward models (tiny random classifiers built in
code: a Llama and a GPT-2 one, saved with a character tokenizer)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from tailor.algos.lm_ppo import LMPPOConfig, customize_ppo
from tailor.cli import main
from tailor.errors import TailorError
from tailor.lm.model import build_char_tokenizer, import_transformers, load_model, load_tokenizer
from tailor.lm.reward_model import load_reward_model
from tailor.lm.rewards import (
    BatchedReward,
    evaluate_reward,
    get_reward,
    is_batched,
    register_reward,
    unregister_reward,
)
from test_lm_model import tiny_model_dir

PROMPTS = ["ab", "", "hello "] * 8
COMPLETIONS = ["x" * (i % 7) + "ya" * (i % 3) for i in range(24)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_reward_model(path: Path, kind: str, num_labels: int = 1, side: str = "right") -> Path:
    """A random ``<kind>ForSequenceClassification`` with a character tokenizer, saved in
    ``path`` (seeded: the same weights every time)."""
    tf = import_transformers()
    tok = build_char_tokenizer("abcdefghijklmnopqrstuvwxyz ")
    torch.manual_seed(0)
    common = {"vocab_size": len(tok), "num_labels": num_labels, "pad_token_id": tok.pad_token_id}
    if kind == "llama":
        cfg = tf.LlamaConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=2, max_position_embeddings=64, **common,
        )  # fmt: skip
        model = tf.LlamaForSequenceClassification(cfg)
    else:
        cfg = tf.GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=64, **common)
        model = tf.GPT2ForSequenceClassification(cfg)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    config = json.loads((path / "tokenizer_config.json").read_text())
    config["padding_side"] = side  # as a model directory says it
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory) -> Path:
    return make_reward_model(tmp_path_factory.mktemp("rm") / "gpt2", "gpt2")


# --- batched reward callables -------------------------------------------------------------------


def test_batched_reward_is_called_once_per_batch_and_checked():
    calls = []

    def lengths(prompts, completions):
        calls.append(len(completions))
        pairs = zip(prompts, completions, strict=True)
        return torch.tensor([len(p) + 10 * len(c) for p, c in pairs])

    register_reward("test-batched-len", lengths, batched=True)
    try:
        assert is_batched(get_reward("test-batched-len"))
        out = evaluate_reward("test-batched-len", ["a", "bb"], ["xyz", ""])
        assert calls == [2]  # one call for the whole batch
        assert out.dtype == np.float64 and out.tolist() == [31.0, 2.0]
        # a shared prompt is repeated for the batched function too
        assert evaluate_reward("test-batched-len", "p", ["a", "b", "cc"]).tolist() == [11, 11, 21]
        assert evaluate_reward("test-batched-len", [], []).shape == (0,)
    finally:
        unregister_reward("test-batched-len")


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ([1.0], "shape (1,)"),
        ([[1.0, 2.0]], "shape (1, 2)"),
        (["a", "b"], "not 2 numbers"),
        ([1.0, float("nan")], "non-finite value nan on completion 'y'"),
        (np.array([np.inf, 0.0]), "non-finite value inf on completion 'x'"),
    ],
)
def test_batched_reward_bad_outputs_are_errors(result, message):
    fn = BatchedReward(lambda prompts, completions: result, "bad")
    with pytest.raises(TailorError, match="bad") as err:
        evaluate_reward(fn, ["p", "q"], ["x", "y"])
    assert message in str(err.value)


def test_batched_reward_exception_names_the_reward():
    def boom(prompts, completions):
        raise RuntimeError("scorer down")

    with pytest.raises(TailorError, match="batched reward 'boom' raised RuntimeError"):
        evaluate_reward(BatchedReward(boom), ["p"], ["x"])


# --- reward models ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_batched_scores_equal_one_at_a_time(tmp_path, kind, side):
    rm = load_reward_model(make_reward_model(tmp_path / kind, kind, side=side), batch_size=5)
    assert rm.left == (side == "left") and rm.positions == (side == "left")
    batched = evaluate_reward(rm, PROMPTS, COMPLETIONS)
    pairs = zip(PROMPTS, COMPLETIONS, strict=True)
    alone = np.array([evaluate_reward(rm, [p], [c])[0] for p, c in pairs])
    np.testing.assert_allclose(batched, alone, rtol=0, atol=1e-5)
    assert np.ptp(batched) > 1e-3  # the random model does tell the texts apart
    # One at a time is the model's own forward on the unpadded ids, read at the last token.
    ids = rm.tokenizer(PROMPTS[3] + COMPLETIONS[3]).input_ids
    with torch.no_grad():
        own = rm.model(input_ids=torch.tensor([ids])).logits[0, 0].item()
    assert alone[3] == pytest.approx(own, abs=1e-6)


def test_left_padding_needs_the_positions_on_gpt2(tmp_path):
    # Without position_ids a left-padded GPT-2 row is read at shifted absolute positions: the
    # scores differ, which is what the position_ids of RewardModel prevent.
    rm = load_reward_model(make_reward_model(tmp_path / "g", "gpt2", side="left"), batch_size=24)
    good = evaluate_reward(rm, PROMPTS, COMPLETIONS)
    rm.positions = False
    shifted = evaluate_reward(rm, PROMPTS, COMPLETIONS)
    assert np.abs(good - shifted).max() > 1e-3


def test_reward_model_errors(tmp_path, rm_dir):
    with pytest.raises(TailorError, match="num_labels=2"):
        load_reward_model(make_reward_model(tmp_path / "two", "gpt2", num_labels=2))
    with pytest.raises(TailorError, match=r"does not exist|not a directory"):
        load_reward_model(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TailorError, match=r"no config\.json"):
        load_reward_model(tmp_path / "empty")
    with pytest.raises(TailorError, match="batch size"):
        load_reward_model(rm_dir, batch_size=0)
    # a causal LM directory: GPT2Config's default num_labels is 2
    with pytest.raises(TailorError, match="num_labels=2"):
        load_reward_model(tiny_model_dir_for_errors(tmp_path))


def tiny_model_dir_for_errors(tmp_path: Path) -> Path:
    tf = import_transformers()
    tok = build_char_tokenizer("ab")
    cfg = tf.GPT2Config(vocab_size=len(tok), n_embd=8, n_layer=1, n_head=1, n_positions=8)
    tf.GPT2LMHeadModel(cfg).save_pretrained(tmp_path / "lm")
    return tmp_path / "lm"


def test_reward_model_by_name_is_loaded_once(rm_dir):
    name = f"reward-model:{rm_dir}"
    try:
        first = get_reward(name)
        assert is_batched(first) and get_reward(name) is first
    finally:
        unregister_reward(name)
    with pytest.raises(TailorError, match="needs the model directory"):
        get_reward("reward-model:")


def test_customize_and_evaluate_with_a_reward_model(tmp_path_factory, tmp_path, rm_dir, capsys):
    prior_dir = tiny_model_dir(tmp_path_factory)
    prior, tok = load_model(prior_dir), load_tokenizer(prior_dir)
    rm = load_reward_model(rm_dir, batch_size=4)
    cfg = LMPPOConfig(steps=2, batch_size=8, minibatch_size=4, max_new_tokens=6)
    _, hist = customize_ppo(prior, tok, rm, "kl", cfg, beta=0.1)
    assert len(hist) == 2 and all(np.isfinite(h["addon"]) for h in hist)

    out = tmp_path / "run"
    args = ["lm", "customize", "--prior", str(prior_dir), "--method", "kl", "--steps", "2"]
    args += ["--batch-size", "8", "--max-new-tokens", "6", "--quiet", "--out", str(out)]
    assert main([*args, "--reward-model", str(rm_dir), "--reward-batch-size", "3"]) == 0
    meta = json.loads((out / "tailor.json").read_text())
    assert meta["reward"] == f"reward-model:{rm_dir}" and len(meta["history"]) == 2
    jpath = tmp_path / "eval.json"
    ev = ["lm", "evaluate", "--model", str(out), "--prior", str(prior_dir), "--samples", "8"]
    assert main([*ev, "--reward-model", str(rm_dir), "--json", str(jpath)]) == 0
    result = json.loads(jpath.read_text())
    expect = evaluate_reward(rm, [s["prompt"] for s in result["samples"]],
                             [s["completion"] for s in result["samples"]])  # fmt: skip
    np.testing.assert_allclose([s["reward"] for s in result["samples"]], expect, atol=1e-5)
    capsys.readouterr()
    assert main([*ev, "--reward-model", str(tmp_path / "nope")]) == 2
    assert "reward model" in capsys.readouterr().err
    assert main([*ev, "--reward-model", str(rm_dir), "--reward", "ends-with-vowel"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(ev) == 2
    assert "--reward-model DIR" in capsys.readouterr().err
