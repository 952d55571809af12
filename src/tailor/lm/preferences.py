"""Preference pairs ``(prompt, chosen, rejected)`` for the offline (DPO) family.

Two sources: a JSONL file with one object per line holding the strings ``prompt``, ``chosen`` and
``rejected`` (other keys are ignored, blank lines skipped), or completions sampled from the prior
and ranked with the add-on reward (:func:`pairs_from_samples`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tailor.errors import TailorError
from tailor.lm.rewards import RewardFn, evaluate_reward
from tailor.output import write_text
from tailor.paths import check_input_path

__all__ = ["PreferencePair", "load_preferences", "pairs_from_samples", "save_preferences"]

KEYS = ("prompt", "chosen", "rejected")


@dataclass(frozen=True)
class PreferencePair:
    """One preference: for ``prompt``, the completion ``chosen`` is preferred to ``rejected``.

    Attributes:
        prompt: the prompt (may be empty for unconditional generation).
        chosen: the preferred completion.
        rejected: the other completion.
    """

    prompt: str
    chosen: str
    rejected: str


def load_preferences(path: str | Path) -> list[PreferencePair]:
    """Read preference pairs from a JSONL file.

    Raises:
        TailorError: the file is missing, unreadable or not UTF-8, holds no pairs, or a line is
            not a JSON object with string values for ``prompt``, ``chosen`` and ``rejected``
            (the message names the file and the line number).
    """
    p = check_input_path(path, "preference file")
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TailorError(f"preference file {str(path)!r} does not exist") from None
    except UnicodeDecodeError as exc:
        raise TailorError(f"preference file {str(path)!r} is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise TailorError(f"cannot read preference file {str(path)!r}: {exc}") from None
    pairs = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TailorError(
                f"{where}: invalid JSON ({exc.msg} at column {exc.colno}); each "
                'line must be {"prompt": ..., "chosen": ..., "rejected": ...}'
            ) from None
        if not isinstance(obj, dict):
            raise TailorError(
                f"{where}: expected a JSON object with keys prompt, chosen, "
                f"rejected, got {type(obj).__name__}"
            )
        for key in KEYS:
            if key not in obj:
                raise TailorError(
                    f"{where}: missing key {key!r} (each line needs prompt, chosen and rejected)"
                )
            if not isinstance(obj[key], str):
                raise TailorError(
                    f"{where}: {key!r} must be a string, got {type(obj[key]).__name__} {obj[key]!r}"
                )
        pairs.append(PreferencePair(obj["prompt"], obj["chosen"], obj["rejected"]))
    if not pairs:
        raise TailorError(f"preference file {str(path)!r} holds no preference pairs")
    return pairs


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
