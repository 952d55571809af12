"""Evaluate a customized language model against its prior, from samples.

For ``N`` completions ``y_i`` sampled from the model (temperature 1, the model's own
distribution) given prompts ``x_i``:

* ``addon``: mean add-on reward ``mean_i r_R(x_i, y_i)``;
* ``success``: fraction of samples that satisfy the requirement: ``r_R >= 1`` when the reward took
  only the values 0 and 1 on these samples (every built-in reward), else ``r_R > 0``;
* ``prior_logp_per_token``: how natural the samples stay, ``sum_i log pi_prior(y_i|x_i) /
  sum_i |y_i|`` (tokens pooled over all samples, eos included; higher is more natural);
* ``kl_to_prior``: ``KL(pi_model || pi_prior)`` estimated as ``mean_i [log pi_model(y_i|x_i) -
  log pi_prior(y_i|x_i)]`` (an unbiased estimate in nats per sequence);
* ``distinct``: number of distinct completions divided by ``N``;
* ``samples``: the first few ``{prompt, completion, reward}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tailor.errors import TailorError
from tailor.lm.rewards import RewardFn, evaluate_reward
from tailor.lm.sampling import sample, token_logprobs

__all__ = ["EvalSampling", "evaluate_model", "success_rate"]


def success_rate(rewards: np.ndarray) -> float:
    """``mean(r >= 1)`` for 0/1 rewards, ``mean(r > 0)`` otherwise (see the module docstring)."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.size == 0:
        return float("nan")
    if bool(np.isin(r, (0.0, 1.0)).all()):
        return float((r >= 1.0).mean())
    return float((r > 0.0).mean())


@dataclass(frozen=True)
class EvalSampling:
    """How :func:`evaluate_model` draws its completions (temperature 1).

    Attributes:
        samples: ``N``, completions drawn in all (an integer >= 1).
        prompts: the prompts ``x_i``, cycled over the samples (empty: the empty prompt).
        seed: seed of the sampling generator.
        max_new_tokens: longest completion, eos included.
        batch_size: completions sampled together in one batch.
    """

    samples: int = 512
    prompts: Sequence[str] = ("",)
    seed: int = 0
    max_new_tokens: int = 16
    batch_size: int = 256


@torch.no_grad()
def evaluate_model(
    model: torch.nn.Module,
    prior: torch.nn.Module,
    tokenizer: Any,
    reward: str | RewardFn,
    sampling: EvalSampling | None = None,
    examples: int = 8,
) -> dict[str, Any]:
    """Sample ``sampling.samples`` completions from ``model`` and measure them (module
    docstring).

    Args:
        model, prior: the customized model and its prior (causal LMs sharing ``tokenizer``).
        tokenizer: their tokenizer.
        reward: the add-on reward ``r_R`` (a built-in name or a function).
        sampling: how to sample (:class:`EvalSampling`; ``None``: its defaults).
        examples: how many ``{prompt, completion, reward}`` to return under ``samples``.

    Returns:
        A JSON-ready dict with the keys ``addon``, ``success``, ``prior_logp_per_token``,
        ``kl_to_prior``, ``distinct``, ``samples`` and, for context, ``n``, ``mean_length``
        (generated tokens, eos included) and ``model_logp_per_token``.
    """
    cfg = sampling if sampling is not None else EvalSampling()
    samples, batch_size = cfg.samples, cfg.batch_size
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise TailorError(f"samples must be an integer >= 1, got {samples!r}")
    model.eval()
    prior.eval()
    prompts = list(cfg.prompts) or [""]
    g = torch.Generator().manual_seed(cfg.seed)
    all_prompts: list[str] = []
    completions: list[str] = []
    model_lp: list[torch.Tensor] = []
    prior_lp: list[torch.Tensor] = []
    lengths: list[torch.Tensor] = []
    done = 0
    while done < samples:
        k = min(batch_size, samples - done)
        ps = [prompts[(done + i) % len(prompts)] for i in range(k)]
        s = sample(model, tokenizer, ps, cfg.max_new_tokens, generator=g)
        plp, _ = token_logprobs(prior, s.prompt_ids, s.prompt_mask, s.tokens, s.mask)
        all_prompts.extend(s.prompts)
        completions.extend(s.completions)
        model_lp.append(s.seq_logp)
        prior_lp.append(plp.sum(1))
        lengths.append(s.lengths)
        done += k
    r = evaluate_reward(reward, all_prompts, completions)
    m_lp, p_lp, n_tok = torch.cat(model_lp), torch.cat(prior_lp), torch.cat(lengths).double()
    return {
        "n": samples,
        "addon": float(r.mean()),
        "success": success_rate(r),
        "prior_logp_per_token": float(p_lp.double().sum() / n_tok.sum()),
        "model_logp_per_token": float(m_lp.double().sum() / n_tok.sum()),
        "kl_to_prior": float((m_lp - p_lp).double().mean()),
        "distinct": len(set(zip(all_prompts, completions, strict=True))) / samples,
        "mean_length": float(n_tok.mean()),
        "samples": [
            {"prompt": p, "completion": c, "reward": float(v)}
            for p, c, v in list(zip(all_prompts, completions, r, strict=True))[:examples]
        ],
    }
