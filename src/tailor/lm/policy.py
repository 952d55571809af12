"""The policy an LM loop trains and the prior it is measured against (:class:`PolicyPair`).

Three shapes, one interface for :mod:`tailor.algos.lm_ppo` and :mod:`tailor.algos.dpo`:

* full fine-tuning (the default): the policy is a deep copy of the prior, every weight trained;
  the prior stays frozen beside it;
* LoRA (``LMRuntime.lora_r > 0``): the prior is wrapped in place into a ``peft`` LoRA model (no
  copy); only the adapter is trained and the prior is the same model with the adapter disabled;
* a ``peft.PeftModel`` given as the prior: its LoRA adapter is the policy's trainable part and
  its base (adapter disabled) is the prior; its base weights never change.

It also carries the run's precision (:mod:`tailor.lm.runtime`: frozen weights in the prior's
dtype, trained weights float32 under ``torch.autocast``, float16 loss-scaled), gradient
checkpointing and gradient accumulation (:meth:`PolicyPair.micro_batches`).

Gradient checkpointing needs transformers' checkpointed blocks to be in training mode, while
dropout must stay off (PPO's first ratio is 1, DPO's steps are deterministic). So during
:meth:`PolicyPair.learning` only the flag ``training`` of the blocks that checkpoint is set
(not their children's: every dropout and attention module stays in eval mode).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch

from tailor.errors import TailorError
from tailor.lm.runtime import LMRuntime

__all__ = ["PolicyPair", "as_policy_pair"]


class PolicyPair:
    """A prior, the policy trained from it, and how (see the module docstring).

    Args:
        prior: the prior causal LM (a ``transformers`` model or a ``peft.PeftModel``), on the
            device and in the dtype the run computes in.
        runtime: LoRA, gradient checkpointing and accumulation settings (``None``: defaults).
    """

    def __init__(self, prior: torch.nn.Module, runtime: LMRuntime | None = None) -> None:
        from tailor.lm.lora import is_peft_model

        self.runtime = runtime or LMRuntime()
        self.prior = prior
        self.given_peft = is_peft_model(prior)
        if self.given_peft and self.runtime.lora:
            raise TailorError(
                "the prior is already a PeftModel (a LoRA policy on its base): its adapter is "
                "trained as it is; leave lora_r at 0"
            )
        self.lora = self.given_peft or self.runtime.lora
        weight = prior.get_input_embeddings().weight
        self.device, self.dtype = weight.device, weight.dtype
        self.policy: torch.nn.Module | None = None
        self.params: list[torch.nn.Parameter] = []
        self._checkpointed: list[torch.nn.Module] = []
        self._lora_dropout: list[torch.nn.Module] = []
        self.scaler: Any = None

    # -- set-up --------------------------------------------------------------------------------

    def freeze_prior(self) -> torch.nn.Module:
        """Freeze the prior (eval mode, no gradients) and return it; done by :meth:`start`, and
        a no-op after it (a LoRA policy's adapter lives inside the prior's modules)."""
        if self.policy is not None:
            return self.prior
        self.prior.eval()
        for p in self.prior.parameters():
            p.requires_grad_(False)
        return self.prior

    def start(self, seed: int) -> torch.nn.Module:
        """Make the policy (once): a deep copy of the prior, or the LoRA-wrapped prior (adapter
        ``A`` drawn with ``seed``). Eval mode (dropout off); its trainable weights float32."""
        if self.policy is not None:
            return self.policy
        from tailor.lm.lora import attach_lora, lora_parameters

        self.freeze_prior()
        if self.given_peft:
            policy = self.prior
            self.params = lora_parameters(policy)
        elif self.runtime.lora:
            policy = attach_lora(self.prior, self.runtime, seed)
            self.params = lora_parameters(policy)
        else:
            policy = copy.deepcopy(self.prior)
            if self.dtype != torch.float32:
                policy.float()  # float32 master weights; the forward runs under autocast
            for p in policy.parameters():
                p.requires_grad_(True)
            self.params = list(policy.parameters())
        policy.eval()
        self.policy = policy
        if self.runtime.gradient_checkpointing:
            self._enable_checkpointing()
        self._lora_dropout = [
            m for n, m in policy.named_modules() if ".lora_dropout." in f"{n}." and
            isinstance(m, torch.nn.Dropout)
        ]  # fmt: skip
        if self.dtype == torch.float16:
            # float16 gradients underflow: dynamic loss scaling (the master weights are float32).
            self.scaler = torch.amp.GradScaler(self.device.type)
        return policy

    def _hf_model(self) -> torch.nn.Module:
        assert self.policy is not None
        return self.policy.get_base_model() if self.lora else self.policy

    def _enable_checkpointing(self) -> None:
        hf = self._hf_model()
        kwargs = {"use_reentrant": False}  # no need for inputs that require grad (LoRA)
        try:
            if hasattr(hf, "activation_checkpointing_enable"):  # transformers >= 5
                hf.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
            else:
                hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        except (ValueError, AttributeError) as exc:
            raise TailorError(f"gradient checkpointing: {exc}") from None
        self._checkpointed = [
            m for m in hf.modules() if getattr(m, "gradient_checkpointing", False) is True
        ]

    def finish(self) -> torch.nn.Module:
        """The trained policy, in eval mode without gradients, checkpointing off. A fully
        fine-tuned policy of a half-precision prior stays in float32 (its master weights; cast
        it to hold it like the prior: ``lm_customize`` saves it in the prior's dtype)."""
        assert self.policy is not None
        if self._checkpointed:
            hf = self._hf_model()
            if hasattr(hf, "activation_checkpointing_disable"):
                hf.activation_checkpointing_disable()
            else:
                hf.gradient_checkpointing_disable()
        policy = self.policy
        policy.eval()
        for p in policy.parameters():
            p.requires_grad_(False)
        return policy

    # -- forward passes ------------------------------------------------------------------------

    def autocast(self) -> contextlib.AbstractContextManager:
        """Matmuls in the prior's dtype when it is a half precision; nothing in float32."""
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @contextlib.contextmanager
    def reference(self) -> Iterator[torch.nn.Module]:
        """The model whose log-probs are the prior's: the frozen prior, or the LoRA policy with
        its adapter disabled (no copy)."""
        from tailor.lm.lora import is_peft_model

        model = self.policy if self.policy is not None else self.prior
        with self.autocast():
            if self.lora and is_peft_model(model):
                with model.disable_adapter():
                    yield model
            else:
                yield self.prior

    @contextlib.contextmanager
    def learning(self) -> Iterator[torch.nn.Module]:
        """The policy for a differentiable forward pass: autocast, and the checkpointed blocks
        (only their own flag) and LoRA dropout in training mode; all back in eval mode after."""
        assert self.policy is not None
        switched = [*self._checkpointed, *self._lora_dropout]
        for m in switched:
            m.training = True
        try:
            with self.autocast():
                yield self.policy
        finally:
            for m in switched:
                m.training = False

    def sampler_generator(self, generator: torch.Generator, seed: int) -> torch.Generator:
        """The generator to sample tokens with: ``generator`` on the CPU; on an accelerator a
        generator there (``torch.multinomial`` draws with a generator of the tensor's device)."""
        if self.device.type == "cpu":
            return generator
        return torch.Generator(self.device).manual_seed(seed)

    # -- updates -------------------------------------------------------------------------------

    def micro_batches(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """``idx`` (a minibatch's rows) in ``runtime.grad_accum`` consecutive parts.

        Raises:
            TailorError: more parts than rows.
        """
        k = self.runtime.grad_accum
        if k == 1:
            return [idx]
        if k > len(idx):
            raise TailorError(
                f"grad_accum={k} needs minibatches of at least {k} rows, got {len(idx)}"
            )
        return list(idx.tensor_split(k))

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()`` (loss-scaled for float16)."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, opt: torch.optim.Optimizer, max_grad_norm: float) -> None:
        """Clip the summed gradients' norm to ``max_grad_norm`` and take the optimizer step."""
        if self.scaler is not None:
            self.scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(self.params, max_grad_norm)
        if self.scaler is not None:
            self.scaler.step(opt)
            self.scaler.update()
        else:
            opt.step()


def as_policy_pair(prior: torch.nn.Module | PolicyPair) -> PolicyPair:
    """``prior`` itself when it is a :class:`PolicyPair`, else a default one around it."""
    return prior if isinstance(prior, PolicyPair) else PolicyPair(prior)
