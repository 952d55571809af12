"""How an LM run uses its machine: device, dtype, CPU threads, gradient accumulation and
checkpointing, LoRA, and how the result is saved (:class:`LMRuntime`).

None of these change *what* a run optimises; they change where and in what precision the
arithmetic happens and how much memory it takes. The defaults (``LMRuntime()``) are the CPU,
float32 runs of before: bit for bit the same numbers (tests/test_pinned.py).

Precision (``dtype``): the frozen weights (the prior; a LoRA policy's base) are held in the run
dtype, so a bfloat16 prior costs 2 bytes a parameter; the *trained* weights (a fully fine-tuned
policy; LoRA adapters) are float32 master weights with a float32 Adam state, and the forward
passes run under ``torch.autocast`` in the run dtype. Updates smaller than a bfloat16 ulp are
therefore not lost, and float16 gradients are loss-scaled (``torch.amp.GradScaler``) so that they
do not underflow. A customized model is saved in the prior's own dtype (a bfloat16 prior gives a
bfloat16 model, not a float32 one twice its size).

This module imports no torch at import time (the CLI builds an :class:`LMRuntime` cheaply).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from tailor.errors import TailorError

__all__ = ["DTYPES", "LMRuntime", "apply_threads", "resolve_device", "torch_dtype"]

DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class LMRuntime:
    """Machine and memory settings of an LM customization (none changes the objective).

    Attributes:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...; ``None``: cuda when available, else cpu.
            Used where a model is loaded (:func:`tailor.lm.model.load_model`); the loops run on
            the device the prior's weights are on.
        dtype: ``"auto"`` (the prior's saved dtype on a GPU, float32 on the CPU), ``"float32"``,
            ``"bfloat16"`` or ``"float16"``: the dtype the prior is held and computed in (the
            trained weights stay float32; module docstring).
        threads: torch CPU threads; ``None`` leaves torch's default (every core, or
            ``OMP_NUM_THREADS`` when set).
        grad_accum: each minibatch is split into this many micro-batches whose gradients are
            summed before the one optimizer step (same update up to float rounding; the memory
            of one micro-batch). Must not exceed the minibatch's rows.
        gradient_checkpointing: recompute each transformer block's activations in the backward
            pass instead of keeping them (``activation_checkpointing_enable`` of transformers;
            dropout stays off).
        lora_r: LoRA rank; 0 (default) fine-tunes every weight. With ``r > 0`` a LoRA adapter on
            the frozen prior is trained, and the prior's log-probs are the same model's with the
            adapter disabled (no second copy of the weights).
        lora_alpha: LoRA scale numerator (the update is ``alpha / r * B A``); ``None``: ``2 r``.
        lora_dropout: dropout on the adapter's input (0: none, so PPO's first ratio is 1).
        lora_targets: modules that get an adapter: ``"all-linear"`` (peft's: every linear layer
            but the output head) or a comma-separated list of module names (``"q_proj,v_proj"``).
        save_merged: a LoRA run saves the merged model (a plain Hugging Face directory) instead
            of the adapter alone (``adapter_config.json`` + ``adapter_model.safetensors``).
        base: the base model directory of a prior that is a LoRA adapter directory (default: the
            adapter's ``base_model_name_or_path``).
    """

    device: str | None = None
    dtype: str = "auto"
    threads: int | None = None
    grad_accum: int = 1
    gradient_checkpointing: bool = False
    lora_r: int = 0
    lora_alpha: float | None = None
    lora_dropout: float = 0.0
    lora_targets: str = "all-linear"
    save_merged: bool = False
    base: str | None = None

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise TailorError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        for name, low in (("threads", 1), ("grad_accum", 1), ("lora_r", 0)):
            v = getattr(self, name)
            if v is None and name == "threads":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise TailorError(f"LMRuntime.{name} must be an integer >= {low}, got {v!r}")
        if self.lora_alpha is not None and not (
            math.isfinite(self.lora_alpha) and self.lora_alpha > 0
        ):
            raise TailorError(f"LMRuntime.lora_alpha must be finite and > 0, got {self.lora_alpha}")
        if not (0.0 <= self.lora_dropout < 1.0):
            raise TailorError(f"LMRuntime.lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not self.lora_targets.strip():
            raise TailorError("LMRuntime.lora_targets must name at least one module")
        if self.save_merged and not self.lora_r:
            raise TailorError("--save-merged is for LoRA runs (--lora-r R); a full run is merged")
        if self.device is not None:
            _check_device_name(self.device)

    @property
    def lora(self) -> bool:
        """Whether the run trains a LoRA adapter."""
        return self.lora_r > 0

    @property
    def targets(self) -> str | list[str]:
        """``lora_targets`` as peft's ``target_modules``."""
        t = self.lora_targets.strip()
        return t if t == "all-linear" else [s.strip() for s in t.split(",") if s.strip()]

    def record(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (saved with the model)."""
        return dataclasses.asdict(self)


def _check_device_name(name: str) -> None:
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise TailorError(f"unknown device {name!r} (e.g. cpu, cuda, cuda:1, mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TailorError(f"device {name!r}: torch sees no CUDA GPU here")


def resolve_device(runtime: LMRuntime) -> Any:
    """The ``torch.device`` of a run: the given one, else cuda when available, else cpu."""
    import torch

    if runtime.device is not None:
        return torch.device(runtime.device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def torch_dtype(runtime: LMRuntime, saved: Any, device: Any) -> Any:
    """The dtype to hold the prior in: the explicit one, else (``auto``) the prior's ``saved``
    dtype on an accelerator and float32 on the CPU (CPU kernels for half precision are slow and
    the small models tailor trains on a CPU gain nothing from them)."""
    import torch

    if runtime.dtype != "auto":
        return getattr(torch, runtime.dtype)
    if device.type == "cpu" or saved is None:
        return torch.float32
    return saved


def apply_threads(runtime: LMRuntime) -> None:
    """Set torch's CPU threads when ``runtime.threads`` is given (else torch's default)."""
    if runtime.threads is not None:
        import torch

        torch.set_num_threads(runtime.threads)
