"""LoRA policies with ``peft``: an adapter trained on a frozen base whose adapter-off output is
the prior.

A LoRA policy ``pi_theta`` is the prior's weights ``W`` plus a low-rank update ``alpha / r * B A``
on chosen linear layers (``B`` starts at 0, so the policy starts at the prior). The prior's
log-probs come from the same model with the adapter disabled (``with model.disable_adapter():``):
one copy of the base weights in memory, frozen; only ``A`` and ``B`` are trained (float32).

Saving (:func:`save_lora`): the adapter alone (``adapter_config.json`` +
``adapter_model.safetensors``, the base recorded as ``base_model_name_or_path``; reload with
``PeftModel.from_pretrained(base, DIR)`` or give the directory to tailor as a model/prior), or the
merged model (``merge_and_unload``: a plain Hugging Face directory). Always safetensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tailor.errors import TailorError
from tailor.lm.model import import_transformers, save_model
from tailor.lm.runtime import LMRuntime

__all__ = ["attach_lora", "import_peft", "is_peft_model", "lora_parameters", "save_lora"]


def import_peft() -> Any:
    """Import ``peft`` (part of the ``lm`` extra); a clear error when it is missing."""
    import_transformers()  # offline mode first
    try:
        import peft
    except ImportError:
        raise TailorError(
            "LoRA needs the optional 'peft' package (in the 'lm' extra): pip install "
            "'tailor-rl[lm]'"
        ) from None
    return peft


def is_peft_model(model: Any) -> bool:
    """Whether ``model`` is a ``peft.PeftModel`` (without importing peft when it is not)."""
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


def attach_lora(model: torch.nn.Module, runtime: LMRuntime, seed: int) -> torch.nn.Module:
    """Wrap ``model`` in place into a LoRA ``PeftModel`` (``runtime.lora_r``, ``lora_alpha``,
    ``lora_dropout``, ``lora_targets``); its base weights are frozen, the adapters float32.

    ``A`` is drawn from torch's generator seeded with ``seed`` (the global generator's state is
    left as it was), ``B`` is 0: the new policy equals the model.
    """
    peft = import_peft()
    config = peft.LoraConfig(
        r=runtime.lora_r,
        lora_alpha=runtime.lora_alpha if runtime.lora_alpha is not None else 2 * runtime.lora_r,
        lora_dropout=runtime.lora_dropout,
        target_modules=runtime.targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            wrapped = peft.get_peft_model(model, config)
        except ValueError as exc:  # e.g. target modules not found in the model
            raise TailorError(f"LoRA: {exc}") from None
    return wrapped


def lora_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The adapter weights of a LoRA ``PeftModel`` (every ``lora_*`` tensor), made trainable and
    float32; every other weight is frozen.

    Raises:
        TailorError: the model's adapter is not a LoRA adapter, or it has none.
    """
    kinds = {str(getattr(c, "peft_type", "")) for c in model.peft_config.values()}
    if any("LORA" not in k.upper() for k in kinds):
        raise TailorError(f"tailor trains LoRA adapters only; this PeftModel holds {kinds}")
    params = []
    for name, p in model.named_parameters():
        is_lora = ".lora_" in name
        if is_lora and p.dtype != torch.float32:
            p.data = p.data.float()  # float32 master weights (see tailor.lm.runtime)
        p.requires_grad_(is_lora)
        if is_lora:
            params.append(p)
    if not params:
        raise TailorError("the PeftModel has no LoRA weights to train")
    return params


def save_lora(
    policy: torch.nn.Module,
    tokenizer: Any,
    out: str | Path,
    meta: dict,
    base: str | Path,
    merged_dtype: torch.dtype | None = None,
) -> Path:
    """Save a LoRA policy: the adapter + tokenizer (``merged_dtype`` None) or the merged model in
    ``merged_dtype`` (a plain model directory); ``tailor.json`` either way.

    ``base`` is written as the adapter's ``base_model_name_or_path`` (an absolute path, so the
    adapter reloads from anywhere).
    """
    out = Path(out)
    if merged_dtype is not None:
        plain = policy.merge_and_unload()
        return save_model(plain.to(dtype=merged_dtype), tokenizer, out, meta)
    for cfg in policy.peft_config.values():
        cfg.base_model_name_or_path = str(Path(base).resolve())
    out.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(out, safe_serialization=True)
    # save_model with the tokenizer only: the adapter directory holds no config.json of a model.
    return save_model(None, tokenizer, out, meta)
