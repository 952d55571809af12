"""Prompts as users hold them: a text file, TRL's prompt-only JSONL, chat conversations.

The sources of :func:`load_prompts`:

* ``FILE.txt``: one prompt per line (the line ending removed; lines of only whitespace skipped);
* ``FILE.jsonl``: one JSON object per line with a ``prompt`` field (other keys ignored, blank
  lines skipped), TRL's prompt-only dataset format: the ``prompt`` is a string ("standard") or a
  list of ``{"role": ..., "content": ...}`` messages ("conversational");
* a Hugging Face ``datasets`` dataset as it lies on disk: ``FILE.parquet``, ``FILE.arrow`` or a
  ``save_to_disk`` directory (a ``DatasetDict``'s: one split), read with pyarrow
  (:mod:`tailor.lm.tables`); the ``prompt`` column holds the same two kinds of value.

A conversation becomes text with the tokenizer's chat template (:func:`render_prompts`:
``apply_chat_template(messages, tokenize=False, add_generation_prompt=True)``), so the model
continues as the assistant; a tokenizer without a chat template is refused. Preference files in
TRL's conversational format go through :func:`render_completions` the same way
(:mod:`tailor.lm.preferences`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tailor.errors import TailorError
from tailor.lm.tables import is_table_path, table_rows
from tailor.paths import check_input_path

__all__ = [
    "Conversation",
    "Prompt",
    "check_conversation",
    "is_conversation",
    "json_lines",
    "load_prompts",
    "read_text_file",
    "render_chat",
    "render_completions",
    "render_prompts",
]

Conversation = list[dict[str, str]]
Prompt = str | Conversation


def read_text_file(path: str | Path, what: str) -> str:
    """The UTF-8 text of ``path``; a :class:`TailorError` naming ``what`` when it cannot be read
    (missing, a directory, a special file, not UTF-8)."""
    p = check_input_path(path, what)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TailorError(f"{what} {str(path)!r} does not exist") from None
    except UnicodeDecodeError as exc:
        raise TailorError(f"{what} {str(path)!r} is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise TailorError(f"cannot read {what} {str(path)!r}: {exc}") from None


def json_lines(text: str, path: str | Path, shape: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, object)`` for each non-blank line of a JSONL text; ``where`` is ``path:line``.

    Raises:
        TailorError: a line that is not JSON, or not a JSON object (``shape`` shows the expected
            line in the message).
    """
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TailorError(
                f"{where}: invalid JSON ({exc.msg} at column {exc.colno}); each line must be "
                f"{shape}"
            ) from None
        if not isinstance(obj, dict):
            raise TailorError(f"{where}: expected a JSON object {shape}, got {type(obj).__name__}")
        yield where, obj


def is_conversation(value: object) -> bool:
    """Whether ``value`` is a list (a conversation, TRL's conversational format), not a string."""
    return isinstance(value, list)


def check_conversation(value: object, where: str) -> Conversation:
    """``value`` if it is a non-empty list of ``{"role": str, "content": str}`` messages.

    Raises:
        TailorError: anything else (the message names ``where``).
    """
    if not isinstance(value, list) or not value:
        raise TailorError(f"{where} must be a non-empty list of messages, got {value!r}")
    for i, msg in enumerate(value):
        ok = isinstance(msg, dict) and all(isinstance(msg.get(k), str) for k in ("role", "content"))
        if not ok:
            raise TailorError(
                f'{where}: message {i} must be {{"role": text, "content": text}}, got {msg!r}'
            )
    return value


def load_prompts(
    path: str | Path, column: str | None = None, split: str | None = None
) -> list[Prompt]:
    """The prompts of a ``.txt`` (one per line) or ``.jsonl`` (a ``prompt`` per line) file, or
    of a ``datasets`` dataset: a ``.parquet`` / ``.arrow`` file or a ``save_to_disk`` directory
    (:mod:`tailor.lm.tables`; every row, in the dataset's order).

    Conversational prompts are returned as their message lists; :func:`render_prompts` turns them
    into text with the model's tokenizer.

    Args:
        path: the file or directory.
        column: the JSON key / column holding the prompt (None: ``"prompt"``); not for ``.txt``.
        split: the split of a DatasetDict directory (None: ``"train"``); only for one.

    Raises:
        TailorError: another suffix, a file that is missing, unreadable or not UTF-8, holds no
            prompt, or a line (JSONL) / row (a dataset) whose prompt is not a string or a list of
            messages (the message names the file and the line or row); a dataset without the
            column (the message lists its columns).
    """
    what = "prompts file"
    key = "prompt" if column is None else column
    suffix = Path(path).suffix.lower()
    if is_table_path(path):
        records: Iterable[tuple[str, dict[str, Any]]] = table_rows(path, [key], what, split)
    elif suffix not in (".txt", ".jsonl"):
        raise TailorError(
            f"{what} {str(path)!r}: expected FILE.txt (one prompt per line), FILE.jsonl "
            f'(one {{"prompt": ...}} per line), FILE.parquet, FILE.arrow or a `datasets` '
            f"save_to_disk directory, got the suffix {suffix or '(none)'!r}"
        )
    elif split is not None:
        raise TailorError(f"{what} {str(path)!r}: a split is for a DatasetDict directory")
    elif suffix == ".txt":
        if column is not None:
            raise TailorError(f"{what} {str(path)!r}: a .txt file has no columns (one per line)")
        text = read_text_file(path, what)
        records = [(str(path), {key: line}) for line in text.splitlines() if line.strip()]
    else:
        records = json_lines(read_text_file(path, what), path, f"{{{json.dumps(key)}: ...}}")
    prompts: list[Prompt] = []
    for where, obj in records:
        if key not in obj:
            raise TailorError(f"{where}: missing key {key!r}")
        value = obj[key]
        if not isinstance(value, str):
            value = check_conversation(value, f"{where}: {key!r}")
        prompts.append(value)
    if not prompts:
        raise TailorError(f"{what} {str(path)!r} holds no prompts")
    return prompts


def render_chat(tokenizer: Any, messages: Conversation, generation_prompt: bool) -> str:
    """``messages`` as text through the tokenizer's chat template (``tokenize=False``).

    Raises:
        TailorError: the tokenizer has no chat template, or the template fails on ``messages``.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise TailorError(
            "conversational prompts (lists of role/content messages) need a chat template, and "
            "this model's tokenizer has none (no chat_template in tokenizer_config.json): give "
            "the prompts as text instead"
        )
    try:
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt
        )
    except Exception as exc:  # a jinja template error, a role the template refuses, ...
        raise TailorError(
            f"the tokenizer's chat template failed on {messages!r}: {type(exc).__name__}: {exc}"
        ) from None


def render_prompts(prompts: Sequence[Prompt], tokenizer: Any) -> list[str]:
    """The prompts as text: strings as they are, conversations through the chat template with
    the generation prompt (the assistant's turn begins where the completion will start)."""
    return [p if isinstance(p, str) else render_chat(tokenizer, p, True) for p in prompts]


def render_completions(
    tokenizer: Any, prompt: Conversation, completions: Sequence[Conversation]
) -> tuple[str, list[str]]:
    """``(prompt text, completion texts)`` of a conversational prompt and answers to it (lists
    of messages), as TRL renders a conversational preference pair: the prompt through the chat
    template with the generation prompt, each completion the rest of the rendered whole
    conversation after the prompt text. The prompt text is the longest common prefix of the
    rendered prompt and every rendered whole conversation (for ordinary templates, the rendered
    prompt itself)."""
    wholes = [render_chat(tokenizer, [*prompt, *c], False) for c in completions]
    head = render_chat(tokenizer, prompt, True)
    for w in wholes:  # the longest common prefix, character by character
        n = next((i for i, (a, b) in enumerate(zip(head, w, strict=False)) if a != b), None)
        head = head[: min(len(head), len(w)) if n is None else n]
    return head, [w[len(head) :] for w in wholes]
