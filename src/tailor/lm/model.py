"""Causal language models on disk: load a prior, save a customized model, pretrain a small one.

A *model directory* is what ``transformers`` writes with ``save_pretrained``: ``config.json``,
``model.safetensors`` and the tokenizer files. Any local causal-LM directory can be a prior; it is
loaded with ``local_files_only=True`` and ``HF_HUB_OFFLINE=1`` (set before ``transformers`` is
first imported), so nothing is ever fetched from a hub.

:func:`pretrain` trains a small GPT-2 (``GPT2LMHeadModel``) with a *character* tokenizer (a
``tokenizers`` WordLevel model over single characters, wrapped in ``PreTrainedTokenizerFast``,
with ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>``). One corpus line is one sequence
``<bos> c_1 ... c_n <eos>``; the tokenizer adds ``<bos>`` itself, so ``tokenizer(prompt)`` is
ready for generation and ``AutoTokenizer`` / ``AutoModelForCausalLM`` load the directory as is.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from tailor.errors import TailorError
from tailor.output import write_json
from tailor.paths import check_input_path

__all__ = [
    "PretrainConfig",
    "adapter_base",
    "build_char_tokenizer",
    "check_token_ids",
    "encode_sequences",
    "import_transformers",
    "is_adapter_dir",
    "load_model",
    "load_tokenizer",
    "new_char_model",
    "pretrain",
    "save_model",
    "saved_dtype",
]

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")


def import_transformers() -> Any:
    """Import ``transformers`` in offline mode; a clear error if the ``lm`` extra is missing."""
    # Set before the first import: huggingface_hub reads these once, at import time.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    try:
        import transformers
    except ImportError:
        raise TailorError(
            "tailor lm needs the optional 'lm' dependencies: pip install 'tailor-rl[lm]'"
        ) from None
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # no bars for loading/saving weights
    return transformers


# ---------------------------------------------------------------------------------------------
# Loading and saving
# ---------------------------------------------------------------------------------------------


def _check_dir(path: str | Path, what: str) -> Path:
    p = check_input_path(path, what)
    if not p.is_dir():
        raise TailorError(f"{what} {str(path)!r} is not a directory (expected a model directory)")
    if not (p / "config.json").is_file() and not is_adapter_dir(p):
        raise TailorError(
            f"{what} {str(path)!r} has no config.json: it is not a Hugging Face model directory "
            "(make one with `tailor lm pretrain` or `model.save_pretrained(DIR)`) nor a LoRA "
            "adapter directory (adapter_config.json)"
        )
    return p


def is_adapter_dir(path: str | Path) -> bool:
    """Whether ``path`` is a peft adapter directory: ``adapter_config.json``, no ``config.json``."""
    p = Path(path)
    return (p / "adapter_config.json").is_file() and not (p / "config.json").is_file()


def adapter_base(path: str | Path, base: str | Path | None = None) -> Path:
    """The base model directory of the adapter directory ``path``: ``base`` when given, else its
    ``adapter_config.json``'s ``base_model_name_or_path`` (relative paths: from the working
    directory, else from the adapter's directory).

    Raises:
        TailorError: unreadable config, no base recorded, or the base is no local directory.
    """
    p = Path(path)
    if base is None:
        try:
            cfg = json.loads((p / "adapter_config.json").read_text())
        except (OSError, ValueError) as exc:
            raise TailorError(
                f"adapter {str(path)!r}: unreadable adapter_config.json ({exc})"
            ) from None
        base = cfg.get("base_model_name_or_path") if isinstance(cfg, dict) else None
        if not isinstance(base, str) or not base:
            raise TailorError(
                f"adapter {str(path)!r} records no base model (base_model_name_or_path): "
                "give it with --base DIR"
            )
        if not Path(base).is_dir() and (p / base).is_dir():
            base = p / base
    if not Path(base).is_dir():
        raise TailorError(
            f"adapter {str(path)!r}: its base model {str(base)!r} is not a local directory "
            "(tailor never downloads); give the base with --base DIR"
        )
    if Path(base).resolve() == p.resolve():
        raise TailorError(f"adapter {str(path)!r} names itself as its base model")
    return Path(base)


_SAFETENSORS_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def saved_dtype(path: str | Path) -> torch.dtype | None:
    """The dtype a model directory's weights were saved in (``config.json``'s ``dtype`` /
    ``torch_dtype``, else the first floating tensor of its safetensors file); an adapter
    directory's is its base's. ``None`` when neither says."""
    p = Path(path)
    if is_adapter_dir(p):
        try:
            return saved_dtype(adapter_base(p))
        except TailorError:
            return None
    try:
        cfg = json.loads((p / "config.json").read_text())
    except (OSError, ValueError):
        cfg = {}
    for key in ("dtype", "torch_dtype"):
        name = cfg.get(key) if isinstance(cfg, dict) else None
        if isinstance(name, str) and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
    from safetensors import safe_open

    for f in sorted(p.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():
                dt = st.get_slice(key).get_dtype()
                if dt in _SAFETENSORS_DTYPES:
                    return _SAFETENSORS_DTYPES[dt]
    return None


# Weight files that only torch.load (pickle) reads; safetensors files are read without it.
PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt")


def _check_weights(p: Path, what: str, allow_pickle: bool) -> bool:
    """Whether the directory's weights are safetensors; refuse pickled weights (PyTorch's
    ``pytorch_model.bin``, read by ``torch.load``) unless ``allow_pickle``."""
    if any(p.glob("*.safetensors")):
        return True
    pickled = sorted(f.name for pattern in PICKLE_WEIGHTS for f in p.glob(pattern))
    if pickled and not allow_pickle:
        raise TailorError(
            f"{what} {str(p)!r} holds its weights as {', '.join(pickled)}, a pickle file that "
            "loading could run code from; tailor reads safetensors weights only. Convert it "
            "(`model.save_pretrained(DIR, safe_serialization=True)`) or, for a file you trust, "
            "pass --allow-pickle-weights"
        )
    return False


def _check_finite_model(model: torch.nn.Module, path: str | Path, what: str) -> None:
    for name, t in itertools.chain(model.named_parameters(), model.named_buffers()):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise TailorError(
                f"{what} {str(path)!r}: {name} holds NaN or infinite values (saved by a run "
                "that diverged, or corrupted); tailor does not use such a model"
            )


def load_model(
    path: str | Path,
    what: str = "model",
    allow_pickle: bool = False,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    base: str | Path | None = None,
) -> torch.nn.Module:
    """Load a causal LM from a local directory (never a hub), in eval mode.

    Weights are read from safetensors files; a directory with only pickled weights
    (``pytorch_model.bin``) is refused unless ``allow_pickle`` (then transformers'
    ``torch.load`` reads it). A LoRA adapter directory (``adapter_config.json`` +
    ``adapter_model.safetensors``) is loaded onto its base (``base``, else the one it records)
    and merged: the result is the plain model that the adapter defines.

    Args:
        dtype: the dtype to hold the weights in; ``None``: float32 (whatever the checkpoint's).
        device: where to put the model; ``None``: the CPU.

    Raises:
        TailorError: the directory is missing, lacks ``config.json``, holds pickled weights
            only (without ``allow_pickle``), does not hold a causal language model that
            ``AutoModelForCausalLM`` can load, or holds NaN/infinite weights.
    """
    p = _check_dir(path, what)
    if is_adapter_dir(p):
        return _load_adapter(p, what, (allow_pickle, dtype, device), base)
    safe = _check_weights(p, what, allow_pickle)
    tf = import_transformers()
    try:
        config = tf.AutoConfig.from_pretrained(p, local_files_only=True)
    except Exception as exc:  # malformed JSON, unknown model_type, ...
        raise TailorError(
            f"{what} {str(path)!r}: config.json is not a valid model config "
            f"({type(exc).__name__}: {exc})"
        ) from None
    # Loaded straight into the dtype asked for (a bfloat16 checkpoint is never widened first).
    dtype_arg = {} if dtype is None else {_dtype_keyword(tf): dtype}
    try:
        model = tf.AutoModelForCausalLM.from_pretrained(
            p, config=config, local_files_only=True, use_safetensors=safe or None, **dtype_arg
        )
    except Exception as exc:
        raise TailorError(
            f"{what} {str(path)!r} is not a causal language model that transformers can load "
            f"(model_type {getattr(config, 'model_type', '?')!r}; {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    if dtype is None:
        model.float()  # float32, whatever dtype the checkpoint was saved in
    else:
        model.to(dtype=dtype)
    if device is not None:
        model.to(device)
    model.eval()
    _check_finite_model(model, path, what)
    return model


def _dtype_keyword(tf: Any) -> str:
    """``from_pretrained``'s dtype argument: ``dtype`` from transformers 4.56, ``torch_dtype``
    before."""
    major, minor = (int(x) for x in tf.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def _load_adapter(
    p: Path, what: str, how: tuple[bool, torch.dtype | None, Any], base: str | Path | None
) -> torch.nn.Module:
    """An adapter directory merged onto its base: ``how`` is ``(allow_pickle, dtype, device)``
    of :func:`load_model`."""
    if not (p / "adapter_model.safetensors").is_file():
        raise TailorError(
            f"{what} {str(p)!r}: a LoRA adapter directory needs adapter_model.safetensors "
            "(tailor reads no pickled adapter_model.bin)"
        )
    base_dir = adapter_base(p, base)
    model = load_model(base_dir, f"{what}'s base model", *how)
    from tailor.lm.lora import import_peft

    peft = import_peft()
    try:
        wrapped = peft.PeftModel.from_pretrained(model, p, is_trainable=False)
    except Exception as exc:
        raise TailorError(
            f"{what} {str(p)!r}: the adapter does not fit its base {str(base_dir)!r} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    merged = wrapped.merge_and_unload().eval()
    _check_finite_model(merged, p, what)
    return merged


def load_tokenizer(
    path: str | Path,
    what: str = "model",
    model: torch.nn.Module | None = None,
    base: str | Path | None = None,
) -> Any:
    """Load the tokenizer saved next to a model; it must have an end-of-sequence token.

    An adapter directory without tokenizer files uses its base's (``base``, else the recorded one).

    A tokenizer without a padding token gets its eos token as padding (as is usual for GPT-2);
    padded positions are always masked, so the choice does not matter. Its special tokens must
    be rows of the model's embedding (``model``'s, else the ``vocab_size`` of the directory's
    ``config.json``; :func:`check_token_ids`).

    Raises:
        TailorError: no loadable tokenizer in the directory, it has no eos token, or a special
            token's id is outside the model's vocabulary.
    """
    p = _check_dir(path, what)
    if is_adapter_dir(p) and not (p / "tokenizer_config.json").is_file():
        return load_tokenizer(adapter_base(p, base), f"{what}'s base model", model)
    tf = import_transformers()
    tok = auto_tokenizer(p, what)
    if tok.eos_token_id is None:
        raise TailorError(f"{what} {str(path)!r}: the tokenizer has no eos token")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if model is not None:
        check_token_ids(tok, model, f"{what} {str(path)!r}")
    else:
        try:
            size = tf.AutoConfig.from_pretrained(p, local_files_only=True).vocab_size
        except Exception:  # no or unreadable config.json: load_model says so
            size = None
        if isinstance(size, int) and not isinstance(size, bool):
            _check_ids(tok, size, f"{what} {str(path)!r}")
    return tok


def auto_tokenizer(path: Path, what: str) -> Any:
    """``AutoTokenizer`` of a local directory (no download), or a TailorError that says why."""
    tf = import_transformers()
    try:
        return tf.AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:
        raise TailorError(
            f"{what} {str(path)!r} has no tokenizer that transformers can load "
            f"({type(exc).__name__}: {exc})"
        ) from None


def check_token_ids(tokenizer: Any, model: torch.nn.Module, where: str) -> None:
    """Raise unless the tokenizer's pad / eos / bos ids are rows of ``model``'s input embedding
    (an id outside it would be an ``IndexError`` deep inside the forward pass)."""
    emb = model.get_input_embeddings()
    size = getattr(emb, "num_embeddings", None)
    if size is None:
        size = int(emb.weight.shape[0])
    _check_ids(tokenizer, int(size), where)


def _check_ids(tokenizer: Any, size: int, where: str) -> None:
    for name in ("pad", "eos", "bos"):
        tid = getattr(tokenizer, f"{name}_token_id", None)
        if tid is not None and not (isinstance(tid, int) and 0 <= tid < size):
            raise TailorError(
                f"{where}: the tokenizer's {name} token "
                f"{getattr(tokenizer, f'{name}_token', None)!r} has id {tid}, outside the "
                f"model's vocabulary of {size} embeddings; use the tokenizer the model was "
                "trained with (or set a pad token the model knows)"
            )


def save_model(
    model: torch.nn.Module | None, tokenizer: Any, out: str | Path, meta: dict | None = None
) -> Path:
    """Save model (safetensors) and tokenizer with ``save_pretrained``; optional ``tailor.json``.

    The weights are written in their own dtype (cast a model first to save it in another).
    ``model=None`` writes the tokenizer and ``tailor.json`` only (beside an adapter).

    Returns:
        The output directory as a :class:`~pathlib.Path`.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if model is not None:
        model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    cfg_path = out / "tokenizer_config.json"
    if cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text())
        if cfg.get("tokenizer_class") == "TokenizersBackend":
            # transformers 5 names its generic fast tokenizer "TokenizersBackend"; the older
            # name loads in 4.x and 5.x alike.
            cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
            write_json(cfg_path, cfg, sort_keys=True)
    if meta is not None:
        write_json(out / "tailor.json", meta, sort_keys=True)
    return out


# ---------------------------------------------------------------------------------------------
# Character tokenizer and small GPT-2
# ---------------------------------------------------------------------------------------------


def build_char_tokenizer(chars: Sequence[str] | str) -> Any:
    """A character-level ``PreTrainedTokenizerFast``: ids 0-3 are the special tokens, then chars.

    ``tokenizer(text)`` gives ``[<bos>, c_1, ..., c_n]``; characters outside ``chars`` map to
    ``<unk>``; ``decode(..., skip_special_tokens=True)`` joins the characters back without spaces.
    """
    import_transformers()
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    symbols = sorted(set(chars))
    if not symbols:
        raise TailorError("a character tokenizer needs at least one character")
    vocab = {t: i for i, t in enumerate([*SPECIAL_TOKENS, *symbols])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(
        Regex("."), behavior="isolated"
    )  # one char = one token
    core.decoder = decoders.Fuse()  # join tokens without spaces
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


@dataclass(frozen=True)
class PretrainConfig:
    """Pretraining a small GPT-2 on a line corpus.

    Attributes:
        n_layer: transformer blocks.
        n_embd: width (embedding size).
        n_head: attention heads (must divide ``n_embd``).
        n_positions: longest sequence, counting ``<bos>`` and ``<eos>``; longer lines are cut.
        dropout: dropout of embeddings, residuals and attention while pretraining (small corpora
            overfit); customization always runs with dropout off.
        steps: Adam steps.
        batch_size: lines per step, drawn with replacement.
        lr: peak learning rate (AdamW), reached after ``warmup`` steps, then cosine decay to 10%.
        warmup: linear warm-up steps.
        weight_decay: AdamW weight decay.
        seed: seeds the initial weights and the batches (runs are deterministic on CPU).
    """

    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 32
    dropout: float = 0.1
    steps: int = 3000
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_embd", "n_head", "n_positions", "steps", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise TailorError(f"PretrainConfig.{name} must be an integer >= 1, got {v!r}")
        if self.n_embd % self.n_head:
            raise TailorError(
                f"PretrainConfig: n_head={self.n_head} must divide n_embd={self.n_embd}"
            )
        if self.n_positions < 3:
            raise TailorError("PretrainConfig.n_positions must be >= 3 (bos, a char, eos)")
        if not (0.0 <= self.dropout < 1.0):
            raise TailorError(f"PretrainConfig.dropout must be in [0, 1), got {self.dropout}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise TailorError(f"PretrainConfig.lr must be > 0, got {self.lr}")
        if self.warmup < 0 or self.weight_decay < 0:
            raise TailorError("PretrainConfig.warmup and weight_decay must be >= 0")


def new_char_model(vocab_size: int, config: PretrainConfig, tokenizer: Any) -> torch.nn.Module:
    """A freshly initialised ``GPT2LMHeadModel`` (seeded by ``config.seed``)."""
    tf = import_transformers()
    gcfg = tf.GPT2Config(
        vocab_size=vocab_size,
        n_positions=config.n_positions,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(config.seed)
    return tf.GPT2LMHeadModel(gcfg)


def encode_sequences(
    tokenizer: Any, lines: Sequence[str], max_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``<bos> line <eos>`` for each line, right-padded: ``(ids [N, L], mask [N, L])``.

    ``L`` is the longest encoded line, at most ``max_len`` (longer lines are cut, keeping
    ``<bos>``, dropping their ``<eos>``).
    """
    enc = [[*tokenizer(line).input_ids, tokenizer.eos_token_id] for line in lines]
    enc = [e[:max_len] for e in enc]
    length = max(len(e) for e in enc)
    ids = torch.full((len(enc), length), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(enc), length), dtype=torch.long)
    for i, e in enumerate(enc):
        ids[i, : len(e)] = torch.tensor(e)
        mask[i, : len(e)] = 1
    return ids, mask


def pretrain(
    lines: Sequence[str],
    config: PretrainConfig = PretrainConfig(),  # frozen dataclass: an immutable default
    progress: bool = False,
) -> tuple[torch.nn.Module, Any, list[float]]:
    """Train a small character-level GPT-2 on ``lines`` (next-character cross-entropy).

    Returns:
        ``(model, tokenizer, losses)``: the model in eval mode, its tokenizer, and the training
        loss (nats per token) at every step.
    """
    if not lines:
        raise TailorError("pretrain needs a non-empty corpus")
    tokenizer = build_char_tokenizer("".join(lines))
    model = new_char_model(len(tokenizer), config, tokenizer)
    ids, mask = encode_sequences(tokenizer, lines, config.n_positions)
    # Padding never contributes to the loss: -100 is the ignore index of the model's loss.
    labels = ids.masked_fill(mask == 0, -100)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    g = torch.Generator().manual_seed(config.seed)

    def lr_at(step: int) -> float:
        if step < config.warmup:
            return config.lr * (step + 1) / config.warmup
        frac = (step - config.warmup) / max(config.steps - config.warmup, 1)
        return config.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * frac)))

    bar = _progress(progress, config.steps, "pretrain")
    losses: list[float] = []
    model.train()
    for step in range(config.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        idx = torch.randint(0, ids.shape[0], (config.batch_size,), generator=g)
        # Trim the batch to its longest line: fewer positions, same loss.
        width = int(mask[idx].sum(1).max())
        out = model(
            input_ids=ids[idx, :width], attention_mask=mask[idx, :width], labels=labels[idx, :width]
        )
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(out.loss.item())
        if bar is not None:
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
    if bar is not None:
        bar.close()
    model.eval()
    return model, tokenizer, losses


def pretrain_meta(config: PretrainConfig, corpus: str, losses: list[float], n_lines: int) -> dict:
    """The JSON record written next to a pretrained model (``tailor.json``)."""
    tail = losses[-min(100, len(losses)) :]
    return {
        "kind": "pretrain",
        "corpus": corpus,
        "lines": n_lines,
        "config": asdict(config),
        "final_loss_mean_last_100": sum(tail) / len(tail),
    }


def _progress(enabled: bool, total: int, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True)


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
