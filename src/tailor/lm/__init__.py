"""The language-model substrate: models, sampling, add-on rewards, preferences, evaluation.

The training loops live in :mod:`tailor.algos` (``lm_ppo``, ``dpo``); the losses in
:mod:`tailor.losses`; a run is assembled by :func:`tailor.experiments.run.lm_customize`. This
package imports cheaply (torch and numpy only, never ``transformers``). Submodules:

* :mod:`tailor.lm.rewards` - add-on rewards ``reward(prompt, completion) -> float`` by name, and
  batched ones (``BatchedReward``: ``reward(prompts, completions) -> [B]``);
* :mod:`tailor.losses` - ``dpo_loss``, ``ce_dpo_loss``, ``decoupled_dpo_loss`` (eqs. 22, 24, 25);
* :mod:`tailor.lm.preferences` - preference pairs from JSONL or from ranked samples;
* :mod:`tailor.lm.prompts` - prompt files (text, JSONL, chat conversations);
  :mod:`tailor.lm.tables` reads what the ``datasets`` library writes (.parquet, .arrow,
  ``save_to_disk`` directories) for both, with pyarrow (the ``lm`` extra; imported on use);
* :mod:`tailor.lm.toy` - the enumerable toy that checks every method against the closed form;
* :mod:`tailor.lm.gpt2fast` - GPT-2's arithmetic in plain torch (KV-cache decoding, packed
  padding-free log-probs), which sampling, scoring and training use for a plain GPT-2;
* :mod:`tailor.lm.llamafast` - the same for Llama / Qwen2 / Mistral (RMSNorm, rotary,
  grouped-query attention, SwiGLU); :mod:`tailor.lm.lean` - what the two share (packing,
  grouped attention, the KV cache and sampling loop).

Submodules that need the optional ``lm`` extra (``transformers``), imported on use:

* :mod:`tailor.lm.model` - load a local causal LM (never the hub), the char tokenizer, ``pretrain``;
* :mod:`tailor.lm.sampling` - batched KV-cache sampling, token and sequence log-probs;
* :mod:`tailor.lm.evaluate` - add-on success, naturalness, KL to the prior, distinct samples;
* :mod:`tailor.lm.reward_model` - a sequence-classification reward model (``reward-model:DIR``).

A user's rewards file does::

    from tailor.lm import register_reward
    register_reward("has-z", lambda prompt, completion: float("z" in completion))
"""

# Default coefficients of the LM methods for the small character model, the LM's counterpart of a
# task's ``coefficients`` (tailor.methods.resolve merges them with what the user gives).
# beta = 0.1 puts a weight of e**10 on a sequence that meets a 0/1 requirement; residual and
# decoupled DPO sharpen the prior by omega'/alpha_hat = 1.5.
DEFAULT_COEFFICIENTS: dict[str, dict[str, float]] = {
    "residual": {"omega_prime": 0.15, "alpha_hat": 0.1},
    "kl": {"beta": 0.1},
    "greedy": {"alpha_hat": 0.1},
    "dpo": {"beta": 0.1},
    "ce-dpo": {"beta": 0.1},
    "decoupled-dpo": {"omega_prime": 0.15, "alpha_hat": 0.1},
}

from tailor.lm.preferences import (  # noqa: E402
    PreferencePair,
    load_preferences,
    pairs_from_samples,
    save_preferences,
)
from tailor.lm.rewards import (  # noqa: E402
    BatchedReward,
    evaluate_reward,
    get_reward,
    list_rewards,
    load_rewards_file,
    register_reward,
    unregister_reward,
)
from tailor.losses import ce_dpo_loss, decoupled_dpo_loss, dpo_loss  # noqa: E402

__all__ = [
    "DEFAULT_COEFFICIENTS",
    "BatchedReward",
    "PreferencePair",
    "ce_dpo_loss",
    "decoupled_dpo_loss",
    "dpo_loss",
    "evaluate_reward",
    "get_reward",
    "list_rewards",
    "load_preferences",
    "load_rewards_file",
    "pairs_from_samples",
    "register_reward",
    "save_preferences",
    "unregister_reward",
]
