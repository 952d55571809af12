"""Preference pairs ``(prompt, chosen, rejected)`` for the offline (DPO) family.

Two sources: pairs read from a file (:func:`load_preferences`), or completions sampled from the
prior and ranked with the add-on reward (:func:`pairs_from_samples`). A file is JSONL, one object
per line holding ``prompt``, ``chosen`` and ``rejected`` (other keys are ignored, blank lines
skipped), or a ``datasets`` dataset with these three columns (``.parquet``, ``.arrow``, a
``save_to_disk`` directory: :mod:`tailor.lm.tables`). The values are strings (TRL's standard
format) or lists of ``{"role", "content"}`` messages (TRL's conversational format, rendered with
the model's chat template by :func:`render_pairs`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tailor.errors import TailorError
from tailor.lm.prompts import (
    Conversation,
    check_conversation,
    is_conversation,
    json_lines,
    read_text_file,
    render_completions,
)
from tailor.lm.rewards import RewardFn, evaluate_reward
from tailor.lm.tables import is_table_path, table_rows
from tailor.output import write_text

__all__ = [
    "PreferencePair",
    "load_preferences",
    "pairs_from_samples",
    "render_pairs",
    "save_preferences",
]

KEYS = ("prompt", "chosen", "rejected")


@dataclass(frozen=True)
class PreferencePair:
    """One preference: for ``prompt``, the completion ``chosen`` is preferred to ``rejected``.

    Attributes:
        prompt: the prompt (may be empty for unconditional generation); a list of messages in a
            conversational pair read from a file (:func:`render_pairs` makes it text).
        chosen: the preferred completion (conversational: the answer's messages).
        rejected: the other completion (conversational: the answer's messages).
    """

    prompt: str | Conversation
    chosen: str | Conversation
    rejected: str | Conversation


def load_preferences(path: str | Path, split: str | None = None) -> list[PreferencePair]:
    """Read preference pairs from a JSONL file or a ``datasets`` dataset (a ``.parquet`` /
    ``.arrow`` file or a ``save_to_disk`` directory, :mod:`tailor.lm.tables`) with the
    columns ``prompt``, ``chosen`` and ``rejected``.

    A line or row holds strings (TRL's "standard" format) or, in TRL's "conversational" format,
    a ``prompt`` that is a list of ``{"role", "content"}`` messages and ``chosen`` /
    ``rejected`` that are lists of the answer's messages; such a pair keeps its message lists
    here and :func:`render_pairs` turns it into text with the model's chat template.

    Args:
        path: the file or directory.
        split: the split of a DatasetDict directory (None: ``"train"``); only for one.

    Raises:
        TailorError: the file is missing, unreadable or not UTF-8, holds no pairs, a dataset
            lacks one of the columns (the message lists its columns), or a line / row is not
            ``prompt``, ``chosen`` and ``rejected`` all strings or all lists of messages (the
            message names the file and the line number or row).
    """
    what = "preference file"
    if is_table_path(path):
        records: Iterable[tuple[str, dict[str, Any]]] = table_rows(path, KEYS, what, split)
    elif split is not None:
        raise TailorError(f"{what} {str(path)!r}: a split is for a DatasetDict directory")
    else:
        shape = '{"prompt": ..., "chosen": ..., "rejected": ...}'
        records = json_lines(read_text_file(path, what), path, shape)
    pairs = []
    for where, obj in records:
        for key in KEYS:
            if key not in obj:
                raise TailorError(
                    f"{where}: missing key {key!r} (each line needs prompt, chosen and rejected)"
                )
        if is_conversation(obj["prompt"]):
            values = [check_conversation(obj[key], f"{where}: {key!r}") for key in KEYS]
        else:
            for key in KEYS:
                if not isinstance(obj[key], str):
                    raise TailorError(
                        f"{where}: {key!r} must be a string, got {type(obj[key]).__name__} "
                        f"{obj[key]!r} (a conversational pair has lists of messages for all three)"
                    )
            values = [obj[key] for key in KEYS]
        pairs.append(PreferencePair(*values))
    if not pairs:
        raise TailorError(f"{what} {str(path)!r} holds no preference pairs")
    return pairs


def render_pairs(pairs: Sequence[PreferencePair], tokenizer: Any) -> list[PreferencePair]:
    """The pairs as text: pairs of strings as they are, conversational pairs through the
    tokenizer's chat template (:func:`tailor.lm.prompts.render_completions`).

    Raises:
        TailorError: a conversational pair and a tokenizer without a chat template.
    """
    out = []
    for p in pairs:
        if is_conversation(p.prompt):
            head, (chosen, rejected) = render_completions(
                tokenizer, p.prompt, [p.chosen, p.rejected]
            )
            p = PreferencePair(head, chosen, rejected)
        out.append(p)
    return out


def save_preferences(path: str | Path, pairs: Iterable[PreferencePair]) -> None:
    """Write pairs as JSONL, one ``{"prompt", "chosen", "rejected"}`` object per line
    (atomically, :func:`tailor.output.write_text`)."""
    write_text(path, "".join(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in pairs))


def pairs_from_samples(
    prompts: Sequence[str],
    completions_per_prompt: Sequence[Sequence[str]],
    reward: str | RewardFn,
    max_pairs_per_prompt: int | None = None,
) -> list[PreferencePair]:
    """Rank sampled completions with the add-on reward into preference pairs.

    For each prompt, every two completions with *different* rewards make one pair (the higher
    reward is chosen); ties, including duplicate completions, are skipped because they carry no
    preference. Pairs are ordered by decreasing reward gap, then by sample order, so truncating
    with ``max_pairs_per_prompt`` keeps the clearest preferences.

    Args:
        prompts: the prompts, length ``P``.
        completions_per_prompt: ``P`` lists of completions sampled for each prompt.
        reward: a reward name or function ``(prompt, completion) -> float``.
        max_pairs_per_prompt: keep at most this many pairs per prompt (``None``: all).

    Returns:
        The pairs, prompt by prompt.

    Raises:
        TailorError: the two sequences differ in length, ``max_pairs_per_prompt < 1``, or the
            reward fails (see :func:`tailor.lm.rewards.evaluate_reward`).
    """
    if isinstance(prompts, str):
        raise TailorError("pairs_from_samples: prompts must be a list of strings, not one string")
    if len(prompts) != len(completions_per_prompt):
        raise TailorError(
            f"pairs_from_samples: {len(prompts)} prompts but "
            f"{len(completions_per_prompt)} lists of completions"
        )
    if max_pairs_per_prompt is not None and max_pairs_per_prompt < 1:
        raise TailorError(f"max_pairs_per_prompt must be >= 1 or None, got {max_pairs_per_prompt}")
    pairs: list[PreferencePair] = []
    for prompt, completions in zip(prompts, completions_per_prompt, strict=True):
        if isinstance(completions, str):
            raise TailorError(
                "pairs_from_samples: each entry of completions_per_prompt must be "
                "a list of completions, not one string"
            )
        completions = list(completions)
        scores = evaluate_reward(reward, prompt, completions)
        ranked = []
        for i in range(len(completions)):
            for j in range(i + 1, len(completions)):
                if scores[i] == scores[j]:
                    continue
                w, lo = (i, j) if scores[i] > scores[j] else (j, i)
                ranked.append((-(scores[w] - scores[lo]), i, j, w, lo))
        ranked.sort()
        if max_pairs_per_prompt is not None:
            ranked = ranked[:max_pairs_per_prompt]
        pairs.extend(
            PreferencePair(prompt, completions[w], completions[lo]) for *_, w, lo in ranked
        )
    return pairs
