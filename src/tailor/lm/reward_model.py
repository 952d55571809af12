"""Sequence-classification reward models as add-on rewards: ``reward-model:DIR``.

A reward model is a local Hugging Face directory (``config.json``, safetensors weights, its
tokenizer) that ``AutoModelForSequenceClassification`` loads, with ONE label
(``num_labels == 1``): the reward of a completion ``y`` to a prompt ``x`` is the model's single
logit on the text ``x + y`` (tokenized with the directory's tokenizer, its special tokens
added). Nothing is downloaded (``local_files_only``), pickled weights are refused unless
allowed, and the model runs in eval mode without gradients.

:class:`RewardModel` is a batched reward (:class:`tailor.lm.rewards.BatchedReward`): one call
scores a whole batch, ``batch_size`` sequences per forward pass, the sequences sorted by length
first so that a pass pads little. Padding never changes a score:

* each row is padded with the model's ``pad_token_id`` (the tokenizer's pad, else its eos, is
  set as the model's when its config has none, as transformers needs for batches), on the side
  the tokenizer asks for (``padding_side``), and masked out of attention;
* the score is read where transformers' sequence classifiers read it, at the last token that is
  not the pad token (for decoder models) or the first (encoders);
* with left padding the positions of the real tokens are passed as ``position_ids`` (counted
  over real tokens only), so a left-padded row sees the positions it would see alone.

A text longer than the model's position table keeps its LAST tokens (the completion, which the
reward judges). One caveat of transformers' own pooling: when the pad token is also a real token
ending the text (pad = eos and a tokenizer that appends eos), the score is read one token
earlier; that is the same whether scored alone or in a batch.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tailor.errors import TailorError
from tailor.lm.model import (
    _check_dir,
    _check_finite_model,
    _check_weights,
    auto_tokenizer,
    check_token_ids,
    import_transformers,
)
from tailor.lm.rewards import BatchedReward
from tailor.lm.sampling import _pad

__all__ = ["RewardModel", "load_reward_model", "register_reward_model"]


class RewardModel(BatchedReward):
    """A one-label sequence classifier scoring ``prompt + completion`` in batches.

    Args:
        model: a ``*ForSequenceClassification`` model with ``config.num_labels == 1``.
        tokenizer: its tokenizer.
        batch_size: sequences per forward pass (>= 1).
        name: the reward's name in messages and run records.
    """

    def __init__(
        self, model: torch.nn.Module, tokenizer: Any, batch_size: int = 32, name: str = ""
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise TailorError(f"the reward batch size must be an integer >= 1, got {batch_size!r}")
        super().__init__(self._score_all, name or "reward-model")
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.pad_id = _pad_id(model, tokenizer)
        self.left = getattr(tokenizer, "padding_side", "right") == "left"
        self.max_len = _max_positions(model.config)
        params = inspect.signature(model.forward).parameters
        self.positions = self.left and "position_ids" in params
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else self.pad_id
        self.start = tokenizer.eos_token_id if start is None else start

    def encode(self, prompts: Sequence[str], completions: Sequence[str]) -> list[list[int]]:
        """Token ids of each ``prompt + completion`` (at most the model's positions, the last
        ones kept; an empty text is the start token alone)."""
        texts = [p + c for p, c in zip(prompts, completions, strict=True)]
        rows = self.tokenizer(texts).input_ids if texts else []
        out = []
        for ids in rows:
            ids = list(ids) or [self.start]
            out.append(ids[-self.max_len :] if self.max_len else ids)
        return out

    @torch.no_grad()
    def score_ids(self, rows: list[list[int]]) -> torch.Tensor:
        """Scores of token-id rows scored together in one forward pass, ``[len(rows)]``."""
        ids, mask = _pad(rows, self.pad_id, self.left)
        device = next(self.model.parameters()).device
        kwargs: dict[str, torch.Tensor] = {}
        if self.positions:
            kwargs["position_ids"] = (mask.cumsum(1) - 1).clamp(min=0).to(device)
        out = self.model(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
        return out.logits[:, 0].detach().double().cpu()

    def _score_all(self, prompts: list[str], completions: list[str]) -> torch.Tensor:
        """``[B]`` float64 scores, ``batch_size`` rows of similar length per pass."""
        rows = self.encode(prompts, completions)
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        scores = torch.empty(len(rows), dtype=torch.float64)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            scores[chunk] = self.score_ids([rows[i] for i in chunk])
        return scores


def _pad_id(model: torch.nn.Module, tokenizer: Any) -> int:
    """The id rows are padded with: the model config's ``pad_token_id``, else the tokenizer's
    pad (else eos) token, which then becomes the model's (transformers pools at the last token
    that is not it, and refuses batches without one)."""
    config = model.config
    pad = getattr(config, "pad_token_id", None)
    if pad is None:
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else None
        pad = tokenizer.eos_token_id if pad is None else pad
        if pad is None:
            raise TailorError(
                "the reward model has no pad token (neither its config's pad_token_id nor its "
                "tokenizer's pad or eos token): set pad_token_id in its config.json"
            )
        config.pad_token_id = pad
    if isinstance(pad, list):  # some configs list several ids; any one pads
        pad = pad[0]
    return int(pad)


def _max_positions(config: Any) -> int | None:
    for key in ("max_position_embeddings", "n_positions"):
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def load_reward_model(
    path: str | Path, batch_size: int = 32, allow_pickle: bool = False
) -> RewardModel:
    """Load the reward model in ``path`` (float32, CPU, eval mode, frozen) with its tokenizer.

    Raises:
        TailorError: not a model directory, pickled weights without ``allow_pickle``, a config
            with ``num_labels != 1``, a model ``AutoModelForSequenceClassification`` cannot load,
            no loadable tokenizer, NaN/infinite weights, or a bad ``batch_size``.
    """
    what = "reward model"
    p = _check_dir(path, what)
    safe = _check_weights(p, what, allow_pickle)
    tf = import_transformers()
    try:
        config = tf.AutoConfig.from_pretrained(p, local_files_only=True)
    except Exception as exc:
        raise TailorError(
            f"{what} {str(path)!r}: config.json is not a valid model config "
            f"({type(exc).__name__}: {exc})"
        ) from None
    labels = getattr(config, "num_labels", None)
    if labels != 1:
        raise TailorError(
            f"{what} {str(path)!r} has num_labels={labels}: a reward model gives ONE score per "
            "sequence (a sequence classifier with num_labels=1); a classifier over several "
            "classes is not a reward (wrap it in a batched reward of your own in a "
            "--rewards-file to turn its classes into a score)"
        )
    try:
        model = tf.AutoModelForSequenceClassification.from_pretrained(
            p, config=config, local_files_only=True, use_safetensors=safe or None
        )
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise TailorError(
            f"{what} {str(path)!r} is not a sequence-classification model that transformers can "
            f"load (model_type {getattr(config, 'model_type', '?')!r}; {type(exc).__name__}: "
            f"{first})"
        ) from None
    model.float().eval()
    for param in model.parameters():
        param.requires_grad_(False)
    _check_finite_model(model, path, what)
    tok = auto_tokenizer(p, what)
    reward = RewardModel(model, tok, batch_size, name=f"reward-model:{path}")
    check_token_ids(tok, model, f"{what} {str(path)!r}")
    if not 0 <= reward.pad_id < model.get_input_embeddings().num_embeddings:
        raise TailorError(f"{what} {str(path)!r}: pad_token_id {reward.pad_id} is not in its vocab")
    return reward


def register_reward_model(
    path: str | Path, batch_size: int = 32, allow_pickle: bool = False
) -> str:
    """Load the reward model in ``path`` and register it as the reward ``reward-model:<path>``
    (replacing an earlier registration of that name); returns the name."""
    from tailor.lm.rewards import register_reward

    name = f"reward-model:{path}"
    register_reward(name, load_reward_model(path, batch_size, allow_pickle), overwrite=True)
    return name
