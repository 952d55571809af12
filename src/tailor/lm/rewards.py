"""Add-on requirements for language models: sequence rewards ``reward(prompt, completion)``.

A reward is looked up by name. Built-ins carry their parameter in the name, after a colon:

* ``ends-with-vowel``: the completion (trailing whitespace ignored) ends in a, e, i, o or u;
* ``starts-with-vowel``: the completion (leading whitespace ignored) starts with a vowel;
* ``max-length:N``: the completion has at most ``N`` characters;
* ``min-length:N``: the completion has at least ``N`` characters;
* ``contains:X``: the completion contains the text ``X``;
* ``ends-with:X``: the completion ends with the text ``X``.

Each returns 1.0 when the completion satisfies it and 0.0 otherwise; vowel tests ignore case.
User-defined rewards live in a Python file that registers them::

    from tailor.lm import register_reward
    register_reward("has-z", lambda prompt, completion: float("z" in completion))

and every ``tailor lm`` subcommand taking ``--reward`` loads it with ``--rewards-file FILE.py``
(:func:`load_rewards_file`). :func:`evaluate_reward` calls a reward on a batch and turns a
non-number, a non-finite value or an exception into a :class:`TailorError` naming the reward and
the completion.

**Batched rewards.** A reward that scores many completions at once (a reward model, a remote
scorer) takes the lists ``(prompts, completions)`` (length ``B`` each) and returns ``B`` numbers
(a list, a numpy array or a tensor of shape ``[B]``). It says so by ``batched = True``: wrap it
in :class:`BatchedReward` or register it with ``batched=True``::

    register_reward("len", lambda prompts, completions: [len(c) for c in completions],
                    batched=True)

:func:`evaluate_reward` then calls it once per batch (the training loops: once per iteration)
with every value checked as for a per-completion reward. ``reward-model:DIR`` names a
sequence-classification reward model in a local directory (:mod:`tailor.lm.reward_model`,
loaded on first use).
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Callable, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from tailor.errors import TailorError
from tailor.paths import check_input_path

__all__ = [
    "BatchedReward",
    "BatchedRewardFn",
    "RewardFn",
    "evaluate_reward",
    "get_reward",
    "is_batched",
    "list_rewards",
    "load_rewards_file",
    "register_reward",
    "unregister_reward",
]

RewardFn = Callable[[str, str], float]
# (prompts [B], completions [B]) -> B rewards (a sequence, numpy array or tensor of shape [B]).
BatchedRewardFn = Callable[[list[str], list[str]], Any]


class BatchedReward:
    """A reward that scores a whole batch in one call: ``fn(prompts, completions) -> [B]``.

    ``batched = True`` is what :func:`evaluate_reward` looks at; any callable carrying that
    attribute is treated the same way (e.g. :class:`tailor.lm.reward_model.RewardModel`).

    Args:
        fn: ``(prompts: list[str], completions: list[str]) -> B numbers``.
        name: the reward's name in messages (default: ``fn.__name__``).
    """

    batched = True

    def __init__(self, fn: BatchedRewardFn, name: str | None = None) -> None:
        if not callable(fn):
            raise TailorError(f"BatchedReward needs a function, got {type(fn).__name__}")
        self.fn = fn
        self.__name__ = name or getattr(fn, "__name__", "batched-reward")

    def __call__(self, prompts: list[str], completions: list[str]) -> Any:
        return self.fn(prompts, completions)


def is_batched(fn: object) -> bool:
    """Whether ``fn`` is a batched reward (its ``batched`` attribute is ``True``)."""
    return getattr(fn, "batched", False) is True


VOWELS = frozenset("aeiou")

# name -> reward function, for fixed-name rewards (built-in and user-registered).
_REGISTRY: dict[str, RewardFn | BatchedReward] = {}
# prefix -> (factory taking the text after the colon, help text), for parametric built-ins.
_PARAMETRIC: dict[str, tuple[Callable[[str], RewardFn], str]] = {}


def register_reward(
    name: str, fn: RewardFn | BatchedRewardFn, overwrite: bool = False, batched: bool = False
) -> None:
    """Register ``fn(prompt, completion) -> float`` under ``name``; with ``batched=True`` (or a
    ``fn`` that is already batched, see :class:`BatchedReward`) ``fn(prompts, completions) ->
    [B]`` instead.

    Raises:
        TailorError: ``name`` is empty, contains whitespace, or is already registered (pass
            ``overwrite=True`` to replace it); ``fn`` is not callable.
    """
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise TailorError(f"a reward name must be a non-empty string without spaces, got {name!r}")
    if not callable(fn):
        raise TailorError(
            f"reward {name!r}: expected a function (prompt, completion) -> float, "
            f"got {type(fn).__name__}"
        )
    if name in _REGISTRY and not overwrite:
        raise TailorError(
            f"a reward named {name!r} is already registered; choose another name "
            "or pass overwrite=True"
        )
    _REGISTRY[name] = BatchedReward(fn, name) if batched and not is_batched(fn) else fn


def unregister_reward(name: str) -> None:
    """Remove a registered reward (no error if it is not registered)."""
    _REGISTRY.pop(name, None)


def list_rewards() -> list[str]:
    """Known reward names: registered ones, then the parametric built-ins as ``prefix:PARAM``."""
    return sorted(_REGISTRY) + [f"{p}:{_PARAMETRIC[p][1]}" for p in sorted(_PARAMETRIC)]


def get_reward(name: str) -> RewardFn | BatchedReward:
    """The reward function called ``name`` (a registered name or ``prefix:param``).

    Raises:
        TailorError: unknown name (the message lists the known ones) or a bad parameter.
    """
    if not isinstance(name, str):
        raise TailorError(f"a reward name must be a string, got {name!r}")
    if name in _REGISTRY:
        return _REGISTRY[name]
    prefix, sep, param = name.partition(":")
    if sep and prefix in _PARAMETRIC:
        return _PARAMETRIC[prefix][0](param)
    if prefix in _PARAMETRIC:
        raise TailorError(
            f"reward {name!r} needs a parameter: use {prefix}:{_PARAMETRIC[prefix][1]}"
        )
    raise TailorError(
        f"unknown reward {name!r}; known rewards: {', '.join(list_rewards())}"
        " (load your own with --rewards-file FILE.py)"
    )


def load_rewards_file(path: str | Path) -> list[str]:
    """Run a user's Python file that calls :func:`register_reward`; return the new names.

    Raises:
        TailorError: the file does not exist, is not a ``.py`` file, or raises while importing
            (the message names the file and the original error).
    """
    p = check_input_path(path, "rewards file")
    if not p.is_file():
        raise TailorError(f"rewards file {str(path)!r} does not exist or is not a file")
    if p.suffix != ".py":
        raise TailorError(f"rewards file {str(path)!r} must be a Python file ending in .py")
    before = set(_REGISTRY)
    # A unique module name per file keeps two rewards files (or the same one loaded twice by
    # different tests) from replacing each other in sys.modules.
    mod_name = f"tailor_user_rewards_{abs(hash(str(p.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, p)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has a loader
        raise TailorError(f"could not load rewards file {str(path)!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except TailorError as exc:
        sys.modules.pop(mod_name, None)
        raise TailorError(f"rewards file {str(path)!r}: {exc}") from exc
    except BaseException as exc:  # user code may raise anything, even SystemExit
        sys.modules.pop(mod_name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise TailorError(
            f"rewards file {str(path)!r} failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    return sorted(set(_REGISTRY) - before)


def evaluate_reward(
    reward: str | RewardFn | BatchedReward,
    prompts: Sequence[str] | str,
    completions: Sequence[str],
    name: str | None = None,
) -> np.ndarray:
    """Evaluate a reward on a batch, checking every value.

    Args:
        reward: a reward name (see :func:`get_reward`) or a function; a batched one
            (:func:`is_batched`) is called once on the whole batch.
        prompts: one prompt per completion, or a single prompt shared by all.
        completions: the completions, length ``B``.
        name: the reward's name for messages (defaults to ``reward`` if it is a name).

    Returns:
        Rewards, float64 array of shape ``[B]``.

    Raises:
        TailorError: naming the reward and the completion, if the reward raises, returns a
            non-number, or returns a non-finite value; a batched reward that returns other than
            ``B`` numbers; or if the lengths differ.
    """
    if isinstance(reward, str):
        name = name or reward
        fn = get_reward(reward)
    else:
        fn = reward
        name = name or getattr(reward, "__name__", "reward")
    completions = list(completions)
    if isinstance(prompts, str):
        prompts = [prompts] * len(completions)
    prompts = list(prompts)
    if len(prompts) != len(completions):
        raise TailorError(
            f"reward {name!r}: got {len(prompts)} prompts for {len(completions)} "
            "completions; give one prompt per completion or a single prompt"
        )
    if is_batched(fn):
        return _evaluate_batched(fn, name, prompts, completions)
    out = np.empty(len(completions), dtype=np.float64)
    for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
        try:
            value = fn(prompt, completion)
        except TailorError:
            raise
        except Exception as exc:
            raise TailorError(
                f"reward {name!r} raised {type(exc).__name__}: {exc} on completion "
                f"{completion!r} (prompt {prompt!r})"
            ) from exc
        if getattr(value, "shape", None) == () and hasattr(value, "item"):
            value = value.item()  # a 0-d numpy array or torch tensor holding one number
        if not isinstance(value, (Real, np.bool_)):
            raise TailorError(
                f"reward {name!r} returned {value!r} ({type(value).__name__}), not "
                f"a number, on completion {completion!r} (prompt {prompt!r})"
            )
        out[i] = _finite(float(value), name, prompt, completion)
    return out


def _finite(value: float, name: str, prompt: str, completion: str) -> float:
    if not math.isfinite(value):
        raise TailorError(
            f"reward {name!r} returned the non-finite value {value} on "
            f"completion {completion!r} (prompt {prompt!r}); rewards must be finite"
        )
    return value


def _evaluate_batched(
    fn: Callable[[list[str], list[str]], Any], name: str, prompts: list[str], completions: list[str]
) -> np.ndarray:
    """One call of a batched reward on the whole batch; its ``B`` values checked."""
    if not completions:
        return np.empty(0, dtype=np.float64)
    try:
        raw = fn(prompts, completions)
    except TailorError:
        raise
    except Exception as exc:
        raise TailorError(
            f"batched reward {name!r} raised {type(exc).__name__}: {exc} on a batch of "
            f"{len(completions)} completions (the first {completions[0]!r})"
        ) from exc
    if hasattr(raw, "detach"):  # a torch tensor, on any device, with or without grad
        raw = raw.detach().cpu()
    try:
        values = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TailorError(
            f"batched reward {name!r} returned {type(raw).__name__}, not {len(completions)} "
            f"numbers ({exc})"
        ) from None
    if values.shape != (len(completions),):
        raise TailorError(
            f"batched reward {name!r} returned shape {values.shape} for {len(completions)} "
            f"completions; it must return one number per completion, shape [{len(completions)}]"
        )
    for i in np.flatnonzero(~np.isfinite(values))[:1]:
        _finite(float(values[i]), name, prompts[i], completions[i])
    return values


# ---------------------------------------------------------------------------------------------
# Built-ins
# ---------------------------------------------------------------------------------------------


def _ends_with_vowel(prompt: str, completion: str) -> float:
    text = completion.rstrip()
    return float(bool(text) and text[-1].lower() in VOWELS)


def _starts_with_vowel(prompt: str, completion: str) -> float:
    text = completion.lstrip()
    return float(bool(text) and text[0].lower() in VOWELS)


def _parse_count(prefix: str, param: str) -> int:
    if not (param.isascii() and param.isdigit()):
        raise TailorError(
            f"reward {prefix}:{param}: the parameter must be a whole number >= 0, e.g. {prefix}:8"
        )
    return int(param)


def _parse_text(prefix: str, param: str) -> str:
    if not param:
        raise TailorError(
            f"reward {prefix}: needs a non-empty text after the colon, e.g. {prefix}:an"
        )
    return param


def _max_length(param: str) -> RewardFn:
    n = _parse_count("max-length", param)

    def reward(prompt: str, completion: str) -> float:
        return float(len(completion) <= n)

    reward.__name__ = f"max-length:{n}"
    return reward


def _min_length(param: str) -> RewardFn:
    n = _parse_count("min-length", param)

    def reward(prompt: str, completion: str) -> float:
        return float(len(completion) >= n)

    reward.__name__ = f"min-length:{n}"
    return reward


def _contains(param: str) -> RewardFn:
    text = _parse_text("contains", param)

    def reward(prompt: str, completion: str) -> float:
        return float(text in completion)

    reward.__name__ = f"contains:{text}"
    return reward


def _ends_with(param: str) -> RewardFn:
    text = _parse_text("ends-with", param)

    def reward(prompt: str, completion: str) -> float:
        return float(completion.endswith(text))

    reward.__name__ = f"ends-with:{text}"
    return reward


_REGISTRY["ends-with-vowel"] = _ends_with_vowel
_REGISTRY["starts-with-vowel"] = _starts_with_vowel
_PARAMETRIC["max-length"] = (_max_length, "N")
_PARAMETRIC["min-length"] = (_min_length, "N")
_PARAMETRIC["contains"] = (_contains, "TEXT")
_PARAMETRIC["ends-with"] = (_ends_with, "TEXT")


def _reward_model(param: str) -> RewardFn | BatchedReward:
    """``reward-model:DIR``: the sequence-classification model in ``DIR``, loaded once and kept
    in the registry under that name (so every later lookup of the name reuses it)."""
    from tailor.lm.reward_model import register_reward_model  # needs transformers: on use

    if not param:
        raise TailorError("reward reward-model: needs the model directory, e.g. reward-model:rm/")
    return _REGISTRY[register_reward_model(param)]


_PARAMETRIC["reward-model"] = (_reward_model, "DIR")
