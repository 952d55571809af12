"""The names inside a run directory (``--out``) and the run kinds; no logic.

A run directory written through :mod:`tailor.rundir` looks like::

    run.json                  marker: {"format": "tailor-run", "kind": "ppo", ...}
    .lock  .lock.pid          advisory lock held for the whole run; the holder's pid
    checkpoint.json           manifest: the ONE consistent checkpoint (directory, step, files)
    checkpoints/step-<N>/     policy.safetensors, policy.json, trainer.safetensors of step N
    policy.safetensors        convenience copy of the latest policy (+ policy.json)
    metrics.csv               one row per iteration, appended, never rewritten in place
"""

from __future__ import annotations

import re

from tailor.checkpoint import POLICY_FILE, POLICY_JSON, TRAINER_FILE

RUN_MARKER = "run.json"
MANIFEST_FILE = "checkpoint.json"
CHECKPOINTS_DIR = "checkpoints"
LOCK_FILE = ".lock"
LOCK_PID_FILE = ".lock.pid"
METRICS_FILE = "metrics.csv"
RUN_FORMAT = "tailor-run"
MANIFEST_FORMAT = "tailor-checkpoint"

# What `run.json` may call a run. One kind per trainer whose run directories differ.
KINDS = ("ppo", "dqn", "sac", "mcts", "lm-ppo", "lm-dpo", "lm-model", "tensor-ppo")

_STEP_DIR = re.compile(r"^step-(\d+)(?:-r(\d+))?$")
_MANIFEST_DIR = re.compile(rf"^{CHECKPOINTS_DIR}/step-\d+(?:-r\d+)?$")
_STAGING_PREFIX = ".staging-"
_TRASH_PREFIX = ".trash-"
# Leftovers of the atomic writes of tailor's own files (".<name>.<8 random chars>.tmp", see
# tailor.checkpoint) and of the writability probe. Only these: a user's own hidden files in an
# --out directory are none of our business.
_TMP_FILE = re.compile(
    r"^\.(policy\.safetensors|policy\.json|trainer\.safetensors|checkpoint\.json|run\.json"
    r"|\.lock\.pid|metrics\.csv)\.[A-Za-z0-9_]{8}\.tmp$|^\.tailor-probe-"
)

# Names a run directory may hold that `overwrite=True` clears (globs), and those of a Hugging
# Face model directory, cleared only where there is a model (a bare config.json may well belong
# to something else). Anything else in the directory (a user's notes, data) is left alone.
_RUN_NAMES = (
    RUN_MARKER,
    MANIFEST_FILE,
    CHECKPOINTS_DIR,
    POLICY_FILE,
    POLICY_JSON,
    TRAINER_FILE,
    METRICS_FILE,
    "tb",
    "prior",
    "eval.json",
    "rsl-rl",  # a tensor PPO run's rsl-rl checkpoint (tailor.algos.tensor_ppo_state)
)
_MODEL_WEIGHTS = ("model.safetensors", "model-*.safetensors", "pytorch_model*.bin")
_MODEL_NAMES = (
    *_MODEL_WEIGHTS,
    "config.json",
    "generation_config.json",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "tailor.json",
    "adapter_config.json",  # a LoRA run's adapter (peft's save_pretrained)
    "adapter_model.safetensors",
)
