"""Customizing causal language models: add-on sequence rewards, the DPO family, the exact toy.

This package imports cheaply (torch and numpy only, never ``transformers``). Submodules:

* :mod:`tailor.lm.rewards` - add-on rewards ``reward(prompt, completion) -> float`` by name;
* :mod:`tailor.lm.losses` - ``dpo_loss``, ``ce_dpo_loss``, ``decoupled_dpo_loss`` (eqs. 22, 24, 25);
* :mod:`tailor.lm.preferences` - preference pairs from JSONL or from ranked samples;
* :mod:`tailor.lm.toy` - the enumerable toy that checks every method against the closed form;
* :mod:`tailor.lm.gpt2fast` - GPT-2's arithmetic in plain torch (KV-cache decoding, packed
  padding-free log-probs), which sampling, scoring and training use for a plain GPT-2.

Submodules that need the optional ``lm`` extra (``transformers``), imported on use:

* :mod:`tailor.lm.model` - load a local causal LM (never the hub), the char tokenizer, ``pretrain``;
* :mod:`tailor.lm.sampling` - batched KV-cache sampling, token and sequence log-probs;
* :mod:`tailor.lm.ppo` - token-level PPO for ``residual``, ``kl``, ``greedy``: the per-token
  reward is :func:`tailor.reward.reformulate`, the same call as the MuJoCo PPO;
* :mod:`tailor.lm.dpo` - offline training of ``dpo``, ``ce-dpo``, ``decoupled-dpo``;
* :mod:`tailor.lm.evaluate` - add-on success, naturalness, KL to the prior, distinct samples.

A user's rewards file does::

    from tailor.lm import register_reward
    register_reward("has-z", lambda prompt, completion: float("z" in completion))
"""

from tailor.lm.losses import ce_dpo_loss, decoupled_dpo_loss, dpo_loss
from tailor.lm.preferences import (
    PreferencePair,
    load_preferences,
    pairs_from_samples,
    save_preferences,
)
from tailor.lm.rewards import (
    evaluate_reward,
    get_reward,
    list_rewards,
    load_rewards_file,
    register_reward,
    unregister_reward,
)

__all__ = [
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
