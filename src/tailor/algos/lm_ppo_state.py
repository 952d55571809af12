"""LM runs you can leave: metrics.csv, TensorBoard, checkpoints and an exact ``--resume``.

:class:`LMRunState` is the run-directory hook of both LM loops: token-level PPO
(:func:`tailor.algos.lm_ppo.customize_ppo`, ``hooks=``) and the DPO family
(:func:`tailor.algos.dpo.customize_offline`, ``control.hooks``). Each loop hands it its
:class:`LoopParts` (what its checkpoint holds besides the history) and calls ``start`` before
the first iteration (a resume puts the saved state back and says where to go on),
``after_iteration`` after each (a row of ``metrics.csv``, TensorBoard scalars under
``<run>/tb``, a checkpoint every ``checkpoint_every`` iterations) and ``finish`` after the last
(or after a stop request: Ctrl-C, SIGTERM, SIGHUP), which commits the final checkpoint.

A checkpoint is ONE file, ``lm-state.safetensors``, committed through
:func:`tailor.rundir.commit_checkpoint` (``checkpoints/step-<N>/`` + the manifest
``checkpoint.json``; only the latest is kept: a language model's state is large). It holds,
as safetensors tensors and a JSON header (never pickle):

* ``policy.<name>``: every trainable parameter of the policy (all of them for a full fine-tune,
  the adapter of a LoRA run; the frozen ones are the prior's and come back with it);
* PPO: ``value_head.<name>``; ``opt.optim.*`` (and PPO's ``vopt.optim.*``): the Adam states,
  flattened by :func:`tailor.checkpoint.flatten_optimizer` (their ``param_groups`` and scalars
  in the header);
* ``rng.sampler``: the run's generator (PPO: sampling, prompt order, minibatch order; DPO: the
  minibatch draws); ``rng.torch``: torch's global generator; PPO's ``schedule.queue``: the
  prompts left in the shuffled epoch of :class:`~tailor.algos.lm_ppo.PromptSchedule`;
* the header: the iteration count, the history so far (NaN written as ``null``) and the run's
  :class:`LMRunRecord`, which a resume must match (``steps`` may grow).

What a loop can recompute from the record is not saved: DPO's training data (the prior's samples
of the same seed, or the same preference file) and its reference log-probs
(:class:`~tailor.algos.dpo.ReferenceLogp` computes them again on demand, in the same fixed
chunks, so the same bits).

A resumed run then continues exactly as the uninterrupted one (same history, same weights;
``tests/test_lm_runs.py``), given the same torch build and thread count. If ``steps`` changes on
resume, PPO's critic warm-up (a fraction of ``steps``) is recomputed from the new value.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from tailor.algos.logs import tensorboard_writer
from tailor.checkpoint import flatten_optimizer, load_meta, unflatten_optimizer
from tailor.errors import TailorError
from tailor.rundir import (
    METRICS_FILE,
    MetricsLog,
    Retention,
    commit_checkpoint,
    config_change_error,
    config_diff,
    latest_checkpoint,
)

__all__ = [
    "LM_STATE_FILE",
    "LM_STATE_FORMAT",
    "LMRunRecord",
    "LMRunState",
    "LoopParts",
    "pairs_digest",
    "prompts_digest",
]

LM_STATE_FILE = "lm-state.safetensors"
LM_STATE_FORMAT = "tailor-lm-state"
# Config fields a resume may change; every other one must equal the saved value.
MUTABLE_ON_RESUME = frozenset({"steps"})


def prompts_digest(prompts: Sequence[str]) -> str:
    """SHA-256 of the prompts (as JSON): a resume must train on the same ones, in that order."""
    return hashlib.sha256(json.dumps(list(prompts)).encode("utf-8")).hexdigest()


def pairs_digest(pairs: Sequence[Any]) -> str:
    """SHA-256 of preference pairs (``prompt``, ``chosen``, ``rejected`` each, as JSON): a
    resumed DPO run must train on the same pairs, in that order."""
    rows = [[p.prompt, p.chosen, p.rejected] for p in pairs]
    return hashlib.sha256(json.dumps(rows).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class LMRunRecord:
    """What every checkpoint records about the run, for the checks of a resume.

    Attributes:
        config: the :class:`~tailor.algos.lm_ppo.LMPPOConfig` /
            :class:`~tailor.algos.dpo.LMDPOConfig` as JSON.
        method: the method's name.
        coefficients: its resolved coefficients.
        reward: the add-on reward's name (DPO: the one that ranks the prior's samples; ``None``
            with a preference file).
        prompts: :func:`prompts_digest` of the rendered prompts.
        prior: the prior's directory (resolved).
        trained: which weights train (``lora_r``, ``lora_alpha``, ``lora_dropout``,
            ``lora_targets``: a LoRA run resumes as one, with the same adapter).
        pairs: :func:`pairs_digest` of the rendered preference pairs (DPO with a preference
            file; ``None`` otherwise).
    """

    config: dict[str, Any]
    method: str
    coefficients: dict[str, float]
    reward: str | None
    prompts: str
    prior: str
    trained: dict[str, Any] = field(default_factory=dict)
    pairs: str | None = None


@dataclass
class LoopParts:
    """What one LM loop's checkpoint holds besides the history; each loop makes its own.

    Attributes:
        policy: the model being trained: its trainable parameters (``policy.<name>``).
        optimizers: ``{prefix: optimizer}``, flattened to ``<prefix>.*`` (``param_groups`` and
            scalars in the header's ``optimizers``).
        generators: ``{name: generator}`` saved as ``rng.<name>`` (``rng.torch``, torch's
            global generator, always).
        modules: ``{prefix: module}`` saved whole (``state_dict``) as ``<prefix>.<name>``.
        device_generator: an accelerator's sampling generator (``rng.tokens``; ``None`` on the
            CPU, where the sampler is ``generators["sampler"]``); restored when saved.
        schedule: PPO's :class:`~tailor.algos.lm_ppo.PromptSchedule` (its queue,
            ``schedule.queue``) or ``None``.
    """

    policy: torch.nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    generators: dict[str, torch.Generator]
    modules: dict[str, torch.nn.Module] = field(default_factory=dict)
    device_generator: torch.Generator | None = None
    schedule: Any = None

    def tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """``(tensors on the CPU, {"optimizers": their JSON parts})``."""
        tensors = {
            f"policy.{k}": p.detach() for k, p in self.policy.named_parameters() if p.requires_grad
        }
        for prefix, module in self.modules.items():
            tensors.update({f"{prefix}.{k}": v for k, v in module.state_dict().items()})
        optimizers = {}
        for prefix, opt in self.optimizers.items():
            flat, optimizers[prefix] = flatten_optimizer(opt.state_dict())
            tensors.update({f"{prefix}.{k}": v for k, v in flat.items()})
        tensors.update({f"rng.{k}": g.get_state() for k, g in self.generators.items()})
        if self.device_generator is not None:
            tensors["rng.tokens"] = self.device_generator.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        if self.schedule is not None:
            tensors["schedule.queue"] = torch.tensor(self.schedule._queue, dtype=torch.int64)
        tensors = {k: v.detach().cpu() for k, v in tensors.items()}  # a GPU run saves as well
        return tensors, {"optimizers": optimizers}

    def load(self, tensors: dict[str, torch.Tensor], header: dict[str, Any]) -> None:
        """Put a checkpoint's state back (``KeyError`` / ``ValueError`` / ... when it does not
        fit: the caller names the run)."""
        _load_policy(self.policy, _strip(tensors, "policy."))
        for prefix, module in self.modules.items():
            module.load_state_dict(_strip(tensors, f"{prefix}."))
        for prefix, opt in self.optimizers.items():
            opt.load_state_dict(
                unflatten_optimizer(_strip(tensors, f"{prefix}."), header["optimizers"][prefix])
            )
        for name, g in self.generators.items():
            g.set_state(tensors[f"rng.{name}"])
        if "rng.tokens" in tensors and self.device_generator is not None:
            self.device_generator.set_state(tensors["rng.tokens"])
        torch.set_rng_state(tensors["rng.torch"])
        if self.schedule is not None:
            self.schedule._queue = [int(i) for i in tensors["schedule.queue"].tolist()]


class LMRunState:
    """The run directory of one LM run, PPO or DPO (see the module docstring).

    Args:
        run_dir: the claimed run directory.
        record: the run's :class:`LMRunRecord`.
        checkpoint_every: iterations (DPO: steps) between checkpoints (>= 1); the last one is
            always saved.
        resume: continue from the run's latest checkpoint.
        tensorboard: also write TensorBoard scalars to ``<run>/tb``.
    """

    def __init__(
        self,
        run_dir: str | Path,
        record: LMRunRecord,
        checkpoint_every: int = 50,
        resume: bool = False,
        tensorboard: bool = True,
    ) -> None:
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int):
            raise TailorError(f"checkpoint_every must be an integer, got {checkpoint_every!r}")
        if checkpoint_every < 1:
            raise TailorError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
        self.run_dir, self.record = Path(run_dir), record
        self.every, self.resume, self.tensorboard = checkpoint_every, resume, tensorboard
        self.start_iteration = 0
        self.saved_at: int | None = None
        self._csv: MetricsLog | None = None
        self._tb: Any = None
        self._t0 = time.perf_counter()

    # --- the hooks --------------------------------------------------------------------------

    def start(self, parts: LoopParts) -> tuple[int, list[dict[str, float]]]:
        """Before the first iteration: ``(iterations done, history so far)``; on resume the
        loop's ``parts`` (policy, optimizers, generators, ...) are restored."""
        history: list[dict[str, float]] = []
        if self.resume:
            history = self._restore(parts)
        self.start_iteration = self.saved_at = len(history)
        if self.tensorboard:
            purge = self.start_iteration + 1 if self.resume else None
            self._tb = tensorboard_writer(self.run_dir, purge_step=purge)
        self._t0 = time.perf_counter()
        return len(history), history

    def after_iteration(self, parts: LoopParts, history: list[dict[str, float]]) -> None:
        """Log the newest row; commit a checkpoint every ``checkpoint_every`` iterations."""
        n, row = len(history), history[-1]
        out = {"iteration": n, **{k: v for k, v in row.items() if k != "iteration"}}
        out["wall_s"] = round(time.perf_counter() - self._t0, 3)
        if self._csv is None:  # the columns are the loop's own keys (1-based iteration first)
            self._csv = MetricsLog(
                self.run_dir / METRICS_FILE,
                tuple(out),
                resume_at=self.start_iteration if self.resume else None,
            )
        self._csv.write(out)
        if self._tb is not None:
            for key, value in out.items():
                if key not in ("iteration", "wall_s") and isinstance(value, float):
                    self._tb.add_scalar(key, value, n)
            self._tb.flush()
        if n % self.every == 0:
            self.save(parts, history)

    def finish(self, parts: LoopParts, history: list[dict[str, float]]) -> None:
        """After the loop (done or stopped): commit the last state if it is not saved yet."""
        if self.saved_at != len(history):
            self.save(parts, history)
        self.close()

    def close(self) -> None:
        """Close metrics.csv and TensorBoard (idempotent)."""
        for part in (self._csv, self._tb):
            if part is not None:
                part.close()
        self._csv = self._tb = None

    # --- checkpoints ------------------------------------------------------------------------

    def save(self, parts: LoopParts, history: list[dict[str, float]]) -> None:
        """Commit the loop's ``parts`` after ``len(history)`` iterations as one checkpoint."""
        tensors, extra = parts.tensors()
        header = {
            "format": LM_STATE_FORMAT,
            "iteration": len(history),
            "record": asdict(self.record),
            **extra,
            "history": [{k: _json_float(v) for k, v in row.items()} for row in history],
        }
        keep = Retention(full=1, policies=1)  # the latest only: a model's state is large
        commit_checkpoint(
            self.run_dir, {LM_STATE_FILE: (tensors, header)}, len(history), keep,
            json_copies=(), publish=(),
        )  # fmt: skip
        self.saved_at = len(history)

    def check_resume(self) -> None:
        """On resume, refuse now (before the model and data are made) a checkpoint of another
        run; only the checkpoint's header is read. :meth:`start` checks it again."""
        if self.resume:
            self._check_record(load_meta(self._latest().path(LM_STATE_FILE), LM_STATE_FORMAT)
                               .get("record"))  # fmt: skip

    def _latest(self) -> Any:
        ckpt = latest_checkpoint(self.run_dir)
        if ckpt is None or LM_STATE_FILE not in ckpt.files:
            raise TailorError(
                f"cannot resume {str(self.run_dir)!r}: it has no LM checkpoint (the run stopped "
                "before its first one, or was written by a tailor without LM checkpoints); start "
                "it afresh with --overwrite"
            )
        return ckpt

    def _restore(self, parts: LoopParts) -> list[dict[str, float]]:
        tensors, header = self._latest().load(LM_STATE_FILE, LM_STATE_FORMAT)
        self._check_record(header.get("record"))
        try:
            parts.load(tensors, header)
            history = [
                {k: math.nan if v is None else float(v) for k, v in row.items()}
                for row in header["history"]
            ]
        except (KeyError, RuntimeError, ValueError, TypeError, AttributeError) as exc:
            raise TailorError(
                f"cannot resume {str(self.run_dir)!r}: its checkpoint does not match this run "
                f"({type(exc).__name__}: {exc})"
            ) from None
        if len(history) != header["iteration"]:
            raise TailorError(
                f"cannot resume {str(self.run_dir)!r}: its checkpoint is inconsistent"
            )
        return history

    def _check_record(self, saved: Any) -> None:
        """Raise unless the saved run trains what this one would (``steps`` may differ)."""
        if not isinstance(saved, dict):
            raise TailorError(f"cannot resume {str(self.run_dir)!r}: its checkpoint has no record")
        given = asdict(self.record)
        for key in ("method", "coefficients", "pairs", "reward", "prompts", "prior", "trained"):
            if saved.get(key, {} if key == "trained" else None) != given[key]:
                what = f"the {key} differ" if key in ("prompts", "pairs") else (
                    f"it was run with {key} {saved.get(key)!r}, not {given[key]!r}"
                )  # fmt: skip
                raise TailorError(
                    f"cannot resume {str(self.run_dir)!r}: {what}; resume with the run's own "
                    "settings or start a new run with another --out"
                )
        old = saved.get("config") or {}
        diff = config_diff(old, given["config"], set(MUTABLE_ON_RESUME))
        if diff:
            raise config_change_error(self.run_dir, old, given["config"], diff)


def _json_float(value: Any) -> Any:
    """A history value for JSON: NaN (a loss not computed that iteration) as ``None``."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


@torch.no_grad()
def _load_policy(policy: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    """Copy the saved trainable parameters into ``policy`` (the same names, the same shapes)."""
    params = {k: p for k, p in policy.named_parameters() if p.requires_grad}
    if set(params) != set(saved):
        missing, extra = sorted(set(params) - set(saved)), sorted(set(saved) - set(params))
        raise ValueError(f"trainable parameters differ: missing {missing[:3]}, extra {extra[:3]}")
    for name, p in params.items():
        if p.shape != saved[name].shape:
            raise ValueError(f"{name} has shape {tuple(saved[name].shape)}, not {tuple(p.shape)}")
        p.copy_(saved[name])
