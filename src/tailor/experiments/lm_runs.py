"""Language-model runs: customize a causal LM with token-level PPO or the DPO family.

The LM loops (:mod:`tailor.algos.lm_ppo`, :mod:`tailor.algos.dpo`) and :mod:`tailor.lm` need the
``lm`` extra; they are imported on use. The machine settings of a run (device, dtype, threads,
LoRA, gradient accumulation and checkpointing, merged or adapter-only saving) are one
:class:`tailor.lm.runtime.LMRuntime` (``LMOptions.runtime``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tailor.algos.logs import LoopControl
from tailor.experiments.configs import split_options
from tailor.methods import Method, resolve
from tailor.rundir import Stopped, claim_run_dir, stop_on_interrupt

__all__ = ["LMOptions", "lm_customize", "lm_method"]


def lm_method(name: str, **given: float | None) -> Method:
    """Resolve an LM method (token-level PPO or the DPO family) with the character model's
    default coefficients (:data:`tailor.lm.DEFAULT_COEFFICIENTS`) for what is not given."""
    from tailor.lm import DEFAULT_COEFFICIENTS

    return resolve(name, DEFAULT_COEFFICIENTS.get(name), flags=True, **given)


@dataclasses.dataclass(frozen=True)
class LMOptions:
    """The named options of :func:`lm_customize`.

    Attributes:
        pairs: preference pairs for the offline methods (conversational ones are rendered with
            the prior's chat template, :func:`tailor.lm.preferences.render_pairs`).
        prompts: prompts (default: the empty prompt); a conversation (a list of role/content
            messages) is rendered with the prior's chat template.
        seed: seed of the run.
        max_new_tokens: longest completion (default: the config's).
        overrides: fields of :class:`~tailor.algos.lm_ppo.LMPPOConfig` /
            :class:`~tailor.algos.dpo.LMDPOConfig` to set.
        progress: show a progress bar.
        coefficients: ``omega_prime`` / ``alpha_hat`` / ``beta`` (``None``: the defaults).
        record: extra keys for the saved metadata (e.g. the reward file).
        overwrite: replace a run or model already in ``out`` (never the prior's directory).
        allow_pickle_weights: also load a prior whose weights are a pickle
            (``pytorch_model.bin``); by default only safetensors weights are read.
        resume: continue the stopped run in ``out`` from its latest checkpoint (the same
            prior, method, coefficients, reward, prompts, preference pairs, LoRA setting and
            config; ``steps`` may grow).
        checkpoint_every: PPO iterations / DPO steps between checkpoints of the run (the last
            one, and a stop by Ctrl-C / SIGTERM / SIGHUP, always write one).
        tensorboard: also write the metrics as TensorBoard scalars to ``<out>/tb``.
        runtime: device, dtype, threads, LoRA, gradient accumulation / checkpointing and how a
            LoRA policy is saved (:class:`tailor.lm.runtime.LMRuntime`; ``None``: its defaults).
    """

    pairs: list | None = None
    prompts: list | None = None
    seed: int = 0
    max_new_tokens: int | None = None
    overrides: Mapping[str, Any] | None = None
    progress: bool = True
    coefficients: Mapping[str, float | None] | None = None
    record: Mapping[str, Any] | None = None
    overwrite: bool = False
    allow_pickle_weights: bool = False
    resume: bool = False
    checkpoint_every: int = 50
    tensorboard: bool = True
    runtime: Any = None


def _mean_last(history: list[dict[str, float]], key: str, n: int = 10) -> float:
    vals = [h[key] for h in history[-n:] if not math.isnan(h[key])]
    return sum(vals) / len(vals) if vals else float("nan")


def lm_customize(
    prior_dir: str | Path,
    method: str,
    out: str | Path,
    *,
    reward: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Customize a causal LM with token-level PPO (``residual``/``kl``/``greedy``) or the DPO
    family (``dpo``/``ce-dpo``/``decoupled-dpo``) and save it to ``out``.

    Args:
        prior_dir: the prior model directory.
        method: the method name.
        out: output model directory.
        reward: add-on reward name (PPO: required; DPO: ranks prior samples when no ``pairs``).
        **options: the fields of :class:`LMOptions` (``pairs``, ``prompts``, ``seed``,
            ``max_new_tokens``, ``overrides``, ``progress``, ``coefficients``, ``record``,
            ``overwrite``, ``allow_pickle_weights``, ``runtime``).

    Returns:
        The metadata saved with the model (``method``, ``config``, ``data``, ``final``,
        ``history``, ``wall_seconds``, ...).

    Raises:
        TailorError: an unknown option, a bad method, prior or config field.
    """
    from tailor.lm.policy import PolicyPair
    from tailor.lm.preferences import render_pairs
    from tailor.lm.prompts import render_prompts
    from tailor.lm.runtime import LMRuntime

    opts, _ = split_options(LMOptions, options, where="lm_customize", rest=False)
    m = lm_method(method, **dict(opts.coefficients or {}))
    rt = opts.runtime or LMRuntime()
    prior, tok, placed = _load_prior(prior_dir, rt, opts.allow_pickle_weights)
    prompts = render_prompts(list(opts.prompts or [""]), tok)  # conversations: chat template
    pairs = render_pairs(opts.pairs, tok) if opts.pairs is not None else None
    base = {"seed": opts.seed} | (
        {"max_new_tokens": opts.max_new_tokens} if opts.max_new_tokens else {}
    )
    settings = {**base, **dict(opts.overrides or {})}
    if not m.offline:
        from tailor.algos.lm_ppo import LMPPOConfig

        config: Any = LMPPOConfig(**settings)
    else:
        from tailor.algos.dpo import LMDPOConfig

        config = LMDPOConfig(**settings)
    kind = "lm-dpo" if m.offline else "lm-ppo"
    # Claimed once the prior and the config are known good, before the training: a refused --out
    # costs nothing, and no directory is made for a run that cannot start.
    notice = "interrupted: saving the model learnt so far (Ctrl-C again to stop at once)"
    claim = {"resume": opts.resume, "overwrite": opts.overwrite, "prior_path": prior_dir}
    with claim_run_dir(out, kind, **claim), stop_on_interrupt(notice) as interrupt:
        t0 = time.perf_counter()
        data = _Data(prompts, pairs)
        state = _run_state(out, opts, rt, m, config, reward, data, prior_dir)
        control = LoopControl(progress=opts.progress, interrupt=interrupt, hooks=state)
        pair = PolicyPair(prior, rt)
        try:
            policy, history, info, final = _train(pair, tok, m, config, reward, data, control)
        finally:
            state.close()
        wall = time.perf_counter() - t0
        meta = {
            "kind": "customize",
            "method": method,
            "prior": str(prior_dir),
            "reward": reward,
            **dict(opts.record or {}),
            "prompts": prompts,
            "config": dataclasses.asdict(config),
            "data": info,
            "wall_seconds": round(wall, 1),
            "final": final,
            "history": history,
            "runtime": {**rt.record(), **placed},
        }
        if interrupt.requested:  # a stop signal: the steps done so far are saved, then exit
            meta["interrupted_at_step"] = len(history)
        _save(policy, tok, out, meta, (rt, prior_dir))
    if interrupt.requested:
        code = 128 + int(interrupt.signum or 2)  # 2: SIGINT
        raise Stopped(f"saved the model after {len(history)} steps in {str(out)!r}",
                      exit_code=code)  # fmt: skip
    return meta


def _run_state(
    out: str | Path,
    opts: LMOptions,
    rt: Any,
    m: Method,
    config: Any,
    reward: str | None,
    data: _Data,
    prior_dir: str | Path,
) -> Any:
    """The run's :class:`~tailor.algos.lm_ppo_state.LMRunState` (metrics, checkpoints,
    resume) with the record a resume is checked against (a DPO run's data: the preference
    pairs' digest, or the reward that ranks the prior's samples)."""
    from tailor.algos.lm_ppo_state import LMRunRecord, LMRunState, pairs_digest, prompts_digest

    record = LMRunRecord(
        config=dataclasses.asdict(config),
        method=m.name,
        coefficients=dict(m.coefficients),
        reward=reward if data.pairs is None else None,  # a preference file ranks nothing
        prompts=prompts_digest(data.prompts),
        prior=str(Path(prior_dir).resolve()),
        trained={k: v for k, v in rt.record().items() if k.startswith("lora_")} if rt.lora else {},
        pairs=None if data.pairs is None else pairs_digest(data.pairs),
    )
    state = LMRunState(out, record, opts.checkpoint_every, opts.resume, opts.tensorboard)
    state.check_resume()  # another run's checkpoint is refused before any sampling or training
    return state


@dataclasses.dataclass(frozen=True)
class _Data:
    """What a loop trains on and writes to.

    Attributes:
        prompts: the rendered prompts.
        pairs: the rendered preference pairs (offline methods; ``None``: ranked prior samples).
    """

    prompts: list[str]
    pairs: list | None


def _load_prior(prior_dir: str | Path, rt: Any, allow_pickle: bool) -> tuple[Any, Any, dict]:
    """The prior and its tokenizer, on the run's device in the run's dtype (``rt``, an
    :class:`~tailor.lm.runtime.LMRuntime`); the threads set. Returns ``(prior, tokenizer,
    placement)``, ``placement`` the resolved ``device``, ``dtype`` and ``saved_dtype`` (the
    prior's own, which the customized model is saved in) as text."""
    from tailor.lm.model import load_model, load_tokenizer, saved_dtype
    from tailor.lm.runtime import apply_threads, resolve_device, torch_dtype

    apply_threads(rt)
    device = resolve_device(rt)
    saved = saved_dtype(prior_dir)
    dtype = torch_dtype(rt, saved, device)
    prior = load_model(prior_dir, "prior", allow_pickle, dtype, device, rt.base)
    tok = load_tokenizer(prior_dir, what="prior", model=prior, base=rt.base)
    name = str(saved or "torch.float32").removeprefix("torch.")
    placed = {"device": str(device), "dtype": str(dtype).removeprefix("torch."),
              "saved_dtype": name}  # fmt: skip
    return prior, tok, placed


def _save(policy: Any, tok: Any, out: str | Path, meta: dict, how: tuple[Any, Any]) -> None:
    """Save the customized model in the prior's saved dtype: a full model directory, or (a LoRA
    run) the adapter alone or merged (``how`` is ``(runtime, prior_dir)``)."""
    import torch

    from tailor.lm.model import save_model

    rt, prior_dir = how
    dtype = getattr(torch, meta["runtime"]["saved_dtype"])
    if rt.lora:
        from tailor.lm.lora import save_lora

        save_lora(policy, tok, out, meta, prior_dir, dtype if rt.save_merged else None)
    else:
        save_model(policy.to(dtype=dtype), tok, out, meta)


def _train(
    prior: Any,
    tok: Any,
    m: Method,
    config: Any,
    reward: str | None,
    data: _Data,
    control: LoopControl,
) -> tuple[Any, list[dict[str, float]], dict[str, Any], dict[str, float]]:
    """Run the LM loop of ``m``: ``(policy, history, data info, final means)``."""
    prompts, pairs = data.prompts, data.pairs
    if not m.offline:
        from tailor.algos.lm_ppo import customize_ppo

        policy, history = customize_ppo(
            prior, tok, reward, m, config, prompts, control, control.hooks
        )
        info: dict[str, Any] = {
            "coefficients": dict(m.coefficients),
            "source": "on-policy samples",
        }
        final = {k: _mean_last(history, k) for k in ("addon", "success", "kl_to_prior")}
        return policy, history, info, final
    from tailor.algos.dpo import customize_offline

    policy, history, info = customize_offline(
        prior,
        tok,
        m,
        config,
        reward=reward,
        pairs=pairs,
        prompts=prompts,
        control=control,
    )
    final = {k: _mean_last(history, k) for k in ("loss", "accuracy")}
    return policy, history, info, final
