"""Prompts as users hold them (tailor.lm.prompts), conversational preference pairs, and the order
in which token-level PPO reads a prompt list (PromptSchedule)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tailor.errors import TailorError
from tailor.lm.preferences import PreferencePair, load_preferences, render_pairs
from tailor.lm.prompts import load_prompts, render_prompts

CHAT = [{"role": "user", "content": "hi"}]


class ChatTokenizer:
    """A tokenizer with a toy chat template: ``<role>content`` per message."""

    chat_template = "toy"

    def apply_chat_template(self, messages, tokenize=True, add_generation_prompt=False):
        assert tokenize is False
        text = "".join(f"<{m['role']}>{m['content']}" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")


class PlainTokenizer:
    chat_template = None


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    f = tmp_path / name
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    return f


def test_text_and_jsonl_prompt_files(tmp_path: Path) -> None:
    f = _write(tmp_path, "p.txt", "ja\n\n  \nmi a\r\n")
    assert load_prompts(f) == ["ja", "mi a"]
    lines = [{"prompt": "ja", "id": 1}, {"prompt": CHAT}]
    f = _write(tmp_path, "p.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    assert load_prompts(f) == ["ja", CHAT]


@pytest.mark.parametrize(
    "name, text, match",
    [
        ("p.txt", "", "holds no prompts"),
        ("p.txt", "\n \n", "holds no prompts"),
        ("p.jsonl", "", "holds no prompts"),
        ("p.txt", b"\xff\xfe\n", "not UTF-8"),
        ("p.jsonl", '{"text": "a"}\n', r"p.jsonl:1: missing key 'prompt'"),
        ("p.jsonl", '{"prompt": "a"}\n{"prompt": \n', r"p.jsonl:2: invalid JSON"),
        ("p.jsonl", '["a"]\n', "expected a JSON object"),
        ("p.jsonl", '{"prompt": 3}\n', "non-empty list of messages"),
        ("p.jsonl", '{"prompt": [{"role": "user"}]}\n', "message 0 must be"),
        ("p.csv", "a\n", "FILE.txt .*FILE.jsonl .*FILE.parquet, FILE.arrow or a `datasets`"),
    ],
)
def test_bad_prompt_files(tmp_path: Path, name: str, text: str, match: str) -> None:
    with pytest.raises(TailorError, match=match):
        load_prompts(_write(tmp_path, name, text))


def test_missing_prompt_file(tmp_path: Path) -> None:
    with pytest.raises(TailorError, match="does not exist"):
        load_prompts(tmp_path / "none.txt")


def test_conversations_use_the_chat_template_or_are_refused() -> None:
    assert render_prompts(["ja", CHAT], ChatTokenizer()) == ["ja", "<user>hi<assistant>"]
    assert render_prompts(["ja"], PlainTokenizer()) == ["ja"]  # text needs no template
    with pytest.raises(TailorError, match="has none"):
        render_prompts([CHAT], PlainTokenizer())


def test_conversational_preference_pairs(tmp_path: Path) -> None:
    line = {
        "prompt": CHAT,
        "chosen": [{"role": "assistant", "content": "mia"}],
        "rejected": [{"role": "assistant", "content": "bob"}],
    }
    f = _write(tmp_path, "prefs.jsonl", json.dumps(line) + '\n{"prompt": "", "chosen": "a", '
               '"rejected": "b"}\n')  # fmt: skip
    pairs = load_preferences(f)
    assert pairs[0].prompt == CHAT and pairs[1] == PreferencePair("", "a", "b")
    assert render_pairs(pairs, ChatTokenizer()) == [
        PreferencePair("<user>hi<assistant>", "mia", "bob"),
        PreferencePair("", "a", "b"),
    ]
    with pytest.raises(TailorError, match="chat template"):
        render_pairs(pairs, PlainTokenizer())
    bad = _write(tmp_path, "bad.jsonl", json.dumps({**line, "chosen": "mia"}) + "\n")
    with pytest.raises(TailorError, match=r"bad.jsonl:1: 'chosen' must be a non-empty list"):
        load_preferences(bad)


def test_prompt_schedule_short_lists_cycle_as_before() -> None:
    from tailor.algos.lm_ppo import PromptSchedule

    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    s = PromptSchedule(["a", "b", "c"], 4, generator=g)
    assert s.next() == ["a", "b", "c", "a"] and s.next() == ["a", "b", "c", "a"]
    assert PromptSchedule([], 2).next() == ["", ""]
    assert PromptSchedule(["a", "b"], 2, repeats=2).next() == ["a", "a", "b", "b"]
    assert torch.equal(g.get_state(), state)  # the run's random stream is untouched


def test_prompt_schedule_long_lists_use_every_prompt_in_shuffled_epochs() -> None:
    from tailor.algos.lm_ppo import PromptSchedule

    prompts = [f"p{i}" for i in range(10)]

    def batches(seed: int) -> list[list[str]]:
        s = PromptSchedule(prompts, 4, repeats=2, generator=torch.Generator().manual_seed(seed))
        return [s.next() for _ in range(5)]  # 20 slots: two epochs of 10

    got = batches(0)
    assert got == batches(0) and got != batches(1)  # fixed by the seed
    slots = [b[i] for b in got for i in range(0, 8, 2)]
    assert all(b[i] == b[i + 1] for b in got for i in range(0, 8, 2))  # groups of 2 in a row
    assert sorted(slots[:10]) == sorted(prompts) and sorted(slots[10:]) == sorted(prompts)
    assert slots[:10] != prompts  # shuffled
