"""Add-on sequence rewards (registry, built-ins, user files, checked evaluation) and preferences."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tailor.lm.rewards as rewards_mod
from tailor.errors import TailorError
from tailor.lm import (
    PreferencePair,
    evaluate_reward,
    get_reward,
    list_rewards,
    load_preferences,
    load_rewards_file,
    pairs_from_samples,
    register_reward,
    save_preferences,
    unregister_reward,
)


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees the built-ins only and leaves nothing registered behind."""
    monkeypatch.setattr(rewards_mod, "_REGISTRY", dict(rewards_mod._REGISTRY))


# --- built-ins -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "completion", "expected"),
    [
        ("ends-with-vowel", "anna", 1.0),
        ("ends-with-vowel", "ANNA", 1.0),
        ("ends-with-vowel", "anna \n", 1.0),
        ("ends-with-vowel", "bob", 0.0),
        ("ends-with-vowel", "mary", 0.0),  # y is not a vowel here
        ("ends-with-vowel", "", 0.0),
        ("starts-with-vowel", " emma", 1.0),
        ("starts-with-vowel", "kate", 0.0),
        ("max-length:4", "anna", 1.0),
        ("max-length:4", "annas", 0.0),
        ("max-length:0", "", 1.0),
        ("min-length:5", "annas", 1.0),
        ("min-length:5", "anna", 0.0),
        ("contains:an", "joanna", 1.0),
        ("contains:an", "john", 0.0),
        ("contains:a:b", "xa:by", 1.0),  # everything after the first colon is the text
        ("ends-with:ie", "annie", 1.0),
        ("ends-with:ie", "annika", 0.0),
    ],
)
def test_builtin_rewards(name: str, completion: str, expected: float) -> None:
    value = get_reward(name)("any prompt", completion)
    assert isinstance(value, float) and value == expected


def test_list_rewards_names_builtins_and_parameters() -> None:
    names = list_rewards()
    for n in (
        "ends-with-vowel",
        "starts-with-vowel",
        "max-length:N",
        "min-length:N",
        "contains:TEXT",
        "ends-with:TEXT",
    ):
        assert n in names


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no-such-reward", r"unknown reward 'no-such-reward'; known rewards: .*ends-with-vowel"),
        ("max-length", "needs a parameter: use max-length:N"),
        ("max-length:eight", "whole number"),
        ("max-length:-3", "whole number"),
        ("contains:", "non-empty text"),
        ("nope:3", "unknown reward"),
    ],
)
def test_bad_reward_names(name: str, message: str) -> None:
    with pytest.raises(TailorError, match=message):
        get_reward(name)


# --- registry --------------------------------------------------------------------------------


def test_register_get_overwrite_unregister() -> None:
    register_reward("has-z", lambda p, c: float("z" in c))
    assert get_reward("has-z")("", "zoe") == 1.0
    assert "has-z" in list_rewards()
    with pytest.raises(TailorError, match="already registered"):
        register_reward("has-z", lambda p, c: 0.0)
    register_reward("has-z", lambda p, c: 5.0, overwrite=True)
    assert get_reward("has-z")("", "zoe") == 5.0
    unregister_reward("has-z")
    with pytest.raises(TailorError, match="unknown reward"):
        get_reward("has-z")


@pytest.mark.parametrize("name", ["", "has z", 3])
def test_register_rejects_bad_names(name: object) -> None:
    with pytest.raises(TailorError, match="reward name"):
        register_reward(name, lambda p, c: 0.0)  # type: ignore[arg-type]


def test_register_rejects_non_callables() -> None:
    with pytest.raises(TailorError, match="expected a function"):
        register_reward("x", 1.0)  # type: ignore[arg-type]


# --- rewards files ---------------------------------------------------------------------------


def test_load_rewards_file_registers_user_rewards(tmp_path: Path) -> None:
    f = tmp_path / "my_rewards.py"
    f.write_text(
        "from tailor.lm import register_reward\n"
        "register_reward('has-z', lambda prompt, completion: float('z' in completion))\n"
        "register_reward('prompt-echo', lambda prompt, completion: float(completion == prompt))\n"
    )
    assert load_rewards_file(f) == ["has-z", "prompt-echo"]
    assert get_reward("has-z")("", "liz") == 1.0
    assert get_reward("prompt-echo")("ab", "ab") == 1.0


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def broken(:\n", "failed to import: SyntaxError"),
        ("import no_such_module_xyz\n", "failed to import: ModuleNotFoundError"),
        ("raise RuntimeError('boom')\n", "failed to import: RuntimeError: boom"),
        ("import sys\nsys.exit(3)\n", "failed to import: SystemExit"),
        (
            "from tailor.lm import register_reward\nregister_reward('ends-with-vowel', len)\n",
            "already registered",
        ),
    ],
)
def test_load_rewards_file_failures_are_clear(tmp_path: Path, source: str, message: str) -> None:
    f = tmp_path / "bad.py"
    f.write_text(source)
    with pytest.raises(TailorError, match=message) as info:
        load_rewards_file(f)
    assert str(f) in str(info.value)


def test_load_rewards_file_missing_or_not_python(tmp_path: Path) -> None:
    with pytest.raises(TailorError, match="does not exist"):
        load_rewards_file(tmp_path / "missing.py")
    txt = tmp_path / "rewards.txt"
    txt.write_text("x = 1\n")
    with pytest.raises(TailorError, match=r"\.py"):
        load_rewards_file(txt)


# --- checked evaluation ----------------------------------------------------------------------


def test_evaluate_reward_batch() -> None:
    out = evaluate_reward("ends-with-vowel", "", ["anna", "bob", "eve"])
    assert out.dtype == np.float64 and out.tolist() == [1.0, 0.0, 1.0]
    # one prompt per completion, a function, and numpy / bool / int / 0-d results accepted
    out = evaluate_reward(lambda p, c: np.float32(len(p)), ["a", "bb"], ["x", "y"])
    assert out.tolist() == [1.0, 2.0]
    assert evaluate_reward(lambda p, c: c == "y", "", ["x", "y"]).tolist() == [0.0, 1.0]
    assert evaluate_reward(lambda p, c: np.array(2), "", ["x"]).tolist() == [2.0]


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (lambda p, c: math.nan if c == "bad" else 0.0, "non-finite value nan on completion 'bad'"),
        (lambda p, c: math.inf if c == "bad" else 0.0, "non-finite value inf on completion 'bad'"),
        (lambda p, c: "yes", r"returned 'yes' \(str\), not a number, on completion 'good'"),
        (lambda p, c: None, "not a number"),
        (lambda p, c: [1.0], "not a number"),
        (lambda p, c: 1 / 0 if c == "bad" else 0.0, "raised ZeroDivisionError.*completion 'bad'"),
    ],
)
def test_evaluate_reward_failures_name_reward_and_completion(fn: object, message: str) -> None:
    register_reward("user-r", fn)  # type: ignore[arg-type]
    with pytest.raises(TailorError, match=message) as info:
        evaluate_reward("user-r", "p", ["good", "bad"])
    assert "'user-r'" in str(info.value)


def test_evaluate_reward_length_mismatch() -> None:
    with pytest.raises(TailorError, match="2 prompts for 3 completions"):
        evaluate_reward("ends-with-vowel", ["a", "b"], ["x", "y", "z"])


def test_tailor_lm_imports_without_transformers() -> None:
    code = "import sys, tailor.lm; assert 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- preferences -----------------------------------------------------------------------------


def test_load_preferences_round_trip(tmp_path: Path) -> None:
    pairs = [PreferencePair("", "anna", "bob"), PreferencePair("Q: ", 'é"x', "line\nbreak")]
    f = tmp_path / "prefs.jsonl"
    save_preferences(f, pairs)
    assert load_preferences(f) == pairs


def test_load_preferences_skips_blank_lines_and_extra_keys(tmp_path: Path) -> None:
    f = tmp_path / "prefs.jsonl"
    f.write_text('\n{"prompt": "p", "chosen": "a", "rejected": "b", "score": 3}\n\n')
    assert load_preferences(f) == [PreferencePair("p", "a", "b")]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"prompt": "p", "chosen": "a"', "invalid JSON"),
        ('["p", "a", "b"]', "expected a JSON object"),
        ('{"prompt": "p", "chosen": "a"}', "missing key 'rejected'"),
        ('{"prompt": "p", "chosen": 3, "rejected": "b"}', "'chosen' must be a string, got int"),
        ('{"prompt": null, "chosen": "a", "rejected": "b"}', "'prompt' must be a string"),
    ],
)
def test_bad_preference_line_is_named(tmp_path: Path, line: str, message: str) -> None:
    f = tmp_path / "prefs.jsonl"
    good = json.dumps({"prompt": "", "chosen": "a", "rejected": "b"})
    f.write_text(f"{good}\n\n{line}\n{good}\n")
    with pytest.raises(TailorError, match=message) as info:
        load_preferences(f)
    assert f"{f}:3:" in str(info.value)


def test_bad_preference_files(tmp_path: Path) -> None:
    with pytest.raises(TailorError, match="does not exist"):
        load_preferences(tmp_path / "none.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(TailorError, match="no preference pairs"):
        load_preferences(empty)
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TailorError, match="not UTF-8"):
        load_preferences(binary)


def test_pairs_from_samples_ranks_and_skips_ties() -> None:
    # reward = length; samples 0..3 = "bo" (2), "anna" (4), "al" (2), "bob" (3)
    pairs = pairs_from_samples(
        ["p1", "p2"], [["bo", "anna", "al", "bob"], ["x", "x"]], lambda p, c: float(len(c))
    )
    assert pairs == [
        PreferencePair("p1", "anna", "bo"),  # gap 2, samples (0, 1)
        PreferencePair("p1", "anna", "al"),  # gap 2, samples (1, 2)
        PreferencePair("p1", "bob", "bo"),  # gap 1, samples (0, 3)
        PreferencePair("p1", "anna", "bob"),  # gap 1, samples (1, 3)
        PreferencePair("p1", "bob", "al"),  # gap 1, samples (2, 3)
    ]  # ("bo", "al") tie skipped; p2's duplicates give no pair
    capped = pairs_from_samples(
        ["p1"], [["bo", "anna", "al", "bob"]], lambda p, c: len(c), max_pairs_per_prompt=2
    )
    assert capped == pairs[:2]


def test_pairs_from_samples_with_a_named_reward() -> None:
    pairs = pairs_from_samples([""], [["bob", "anna", "eve"]], "ends-with-vowel")
    assert pairs == [PreferencePair("", "anna", "bob"), PreferencePair("", "eve", "bob")]


def test_pairs_from_samples_bad_input() -> None:
    with pytest.raises(TailorError, match="2 prompts but 1 lists"):
        pairs_from_samples(["a", "b"], [["x"]], "ends-with-vowel")
    with pytest.raises(TailorError, match="max_pairs_per_prompt"):
        pairs_from_samples(["a"], [["x"]], "ends-with-vowel", max_pairs_per_prompt=0)
    with pytest.raises(TailorError, match="not one string"):
        pairs_from_samples(["a"], ["xy"], "ends-with-vowel")
    with pytest.raises(TailorError, match="non-finite"):
        pairs_from_samples(["a"], [["x", "y"]], lambda p, c: math.nan)
