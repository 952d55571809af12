"""Same seed, same numbers: short fixed runs of every algorithm, pinned.

The pins in ``tests/data/pinned_metrics.json`` were written by this file *before* the code moved
into one house (issue 12) and must not change when code only moves: a refactor that changes any
number here changed behaviour. Floats are compared exactly (the same machine and torch build give
the same bits); the timing columns are left out.

Regenerate only when behaviour is meant to change, and say so in the commit:
``TAILOR_WRITE_PINS=1 .venv/bin/python -m pytest tests/test_pinned.py``.

The numbers hold for the package versions of ``requirements.lock`` (what ``make`` installs): a
newer ``transformers`` moved the DPO pins once. The test first checks that the installed versions
are the locked ones, so a drifted environment says so instead of failing on a number; refresh the
lock and the pins together (``docs/DEVELOPING.md``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import torch

from tailor.algos.ppo import PPOConfig, train
from tailor.envs import get_task
from tailor.experiments import run
from tailor.experiments.run import task_method
from tailor.priors import load_prior

PINS = Path(__file__).parent / "data" / "pinned_metrics.json"
LOCK = Path(__file__).parent.parent / "requirements.lock"
# The packages whose arithmetic the pinned runs go through.
NUMERIC = ("torch", "numpy", "gymnasium", "mujoco", "transformers", "tokenizers", "safetensors")
TIMING = {"sps", "wall_s"}


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the tensors' names and bytes (order-independent)."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(tensors[k].detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def _rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _ppo(tmp: Path) -> dict[str, Any]:
    cfg = PPOConfig(
        total_steps=1024,
        num_envs=8,
        num_steps=32,
        num_epochs=2,
        hidden=(16, 16),
        tensorboard=False,
        seed=3,
    )
    task = get_task("pointmass")
    prior = train(task, task_method(task, "soft"), cfg, tmp / "ppo-prior")
    custom = train(
        task,
        task_method(task, "residual"),
        PPOConfig(**{**cfg.__dict__, "seed": 4}),
        tmp / "ppo-custom",
        prior=load_prior(tmp / "ppo-prior"),
    )
    return {
        "prior_rows": _rows(prior.metrics),
        "custom_rows": _rows(custom.metrics),
        "custom_actor": _digest(custom.actor.state_dict()),
    }


DQN_FAST = {"learning_starts": 100, "batch_size": 16, "hidden": (16, 16), "log_interval": 0}
SAC_FAST = {**DQN_FAST, "warm_start_steps": 20}


def _rql(tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    runs = {
        "dqn": ("cartpole-centered", 400, DQN_FAST),
        "sac": ("mountaincar-noleft", 300, SAC_FAST),
    }
    for algo, (task, prior_steps, fast) in runs.items():
        prior = run.train_prior(task, algo, prior_steps, 0, tmp / f"{algo}-p", log=None, **fast)
        custom = run.customize(task, algo, prior, 300, 1, tmp / f"{algo}-c", log=None, **fast)
        out[f"{algo}_prior"] = _digest(run.load_policy(prior)[1])
        out[f"{algo}_custom"] = _digest(run.load_policy(custom)[1])
        out[f"{algo}_eval"] = run.evaluate(custom, episodes=2, seed=5, max_steps=50)["per_episode"]
    mcts = run.customize(
        "cartpole-centered", "mcts", tmp / "dqn-p", 0, 0, tmp / "mcts", simulations=10, horizon=3
    )
    out["mcts_eval"] = run.evaluate(mcts, episodes=2, seed=5, max_steps=20)["per_episode"]
    return out


def _lm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("transformers")
    from tailor.algos.dpo import LMDPOConfig, customize_offline
    from tailor.algos.lm_ppo import LMPPOConfig, customize_ppo
    from tailor.lm.model import load_model, load_tokenizer
    from test_lm_model import tiny_model_dir

    path = tiny_model_dir(tmp_path_factory)
    prior, tok = load_model(path), load_tokenizer(path)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ppo_cfg = LMPPOConfig(steps=3, batch_size=16, minibatch_size=8, max_new_tokens=8, lr=1e-3)
        ppo_model, ppo_hist = customize_ppo(
            prior, tok, "ends-with-vowel", "residual", ppo_cfg, omega_prime=0.3, alpha_hat=0.1
        )
        dpo_cfg = LMDPOConfig(steps=5, batch_size=8, lr=1e-3, samples=32, max_new_tokens=8)
        dpo_model, dpo_hist, _ = customize_offline(
            prior, tok, "decoupled-dpo", dpo_cfg, reward="ends-with-vowel"
        )
    finally:
        torch.set_num_threads(before)
    return {
        "lm_ppo_hist": _rows(ppo_hist),
        "lm_ppo_model": _digest(ppo_model.state_dict()),
        "lm_dpo_hist": _rows(dpo_hist),
        "lm_dpo_model": _digest(dpo_model.state_dict()),
    }


def _cli(tmp: Path) -> dict[str, Any]:
    """The CLI's own outputs: a PPO train + evaluate --json, the run's metrics.csv."""
    from tailor.cli import main

    run_dir = tmp / "cli-run"
    assert (
        main(
            [
                "train",
                "--task",
                "pointmass",
                "--method",
                "soft",
                "--steps",
                "1024",
                "--num-envs",
                "8",
                "--seed",
                "2",
                "--out",
                str(run_dir),
                "--no-progress",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "evaluate",
                "--policy",
                str(run_dir),
                "--episodes",
                "2",
                "--json",
                str(tmp / "eval.json"),
            ]
        )
        == 0
    )
    result = json.loads((tmp / "eval.json").read_text())
    result.pop("wall_s", None)
    result["policy"] = Path(result["policy"]).name
    with open(run_dir / "metrics.csv") as f:
        metrics = [
            {
                k: v
                for k, v in zip(header, line.rstrip("\n").split(","), strict=True)
                if k not in TIMING
            }
            for header in [f.readline().rstrip("\n").split(",")]
            for line in f
        ]
    return {"cli_eval": result, "cli_metrics": metrics}


def _canonical(obj: Any) -> Any:
    """JSON round trip: tuples become lists, numpy scalars plain floats."""
    return json.loads(json.dumps(obj, default=float))


def locked_versions(text: str) -> dict[str, str]:
    """``name==version`` lines of a requirements lock -> {normalized name: version}."""
    found = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", text, flags=re.MULTILINE)
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in found}


def test_locked_versions_parse() -> None:
    text = "# header\nTorch==2.13.0+cpu\n    # via x\nsafe_tensors==0.8.0 ; python_version\n"
    assert locked_versions(text) == {"torch": "2.13.0+cpu", "safe-tensors": "0.8.0"}


def test_installed_versions_are_the_locked_ones() -> None:
    locked = locked_versions(LOCK.read_text())
    drift = []
    for name in NUMERIC:
        if name not in locked:
            drift.append(f"{name} is not in requirements.lock")
            continue
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # an optional extra not installed: its pins are skipped below
        if have != locked[name]:
            drift.append(f"{name} {have} installed, {locked[name]} locked")
    assert not drift, (
        "the pinned numbers hold for requirements.lock's versions; "
        + "; ".join(drift)
        + " (run `make setup`, or refresh lock and pins together: docs/DEVELOPING.md)"
    )


@pytest.mark.slow
def test_pinned_runs_are_unchanged(tmp_path, tmp_path_factory) -> None:
    got = _canonical(
        {**_ppo(tmp_path), **_rql(tmp_path), **_cli(tmp_path), **_lm(tmp_path_factory)}
    )
    if os.environ.get("TAILOR_WRITE_PINS") == "1":
        PINS.parent.mkdir(exist_ok=True)
        PINS.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    want = json.loads(PINS.read_text())
    assert sorted(got) == sorted(want)
    for key in want:
        if key == "cli_eval":
            # One result schema for every policy kind (issue 12) added `length`, `success_rate`
            # and `per_episode.success` to PPO's evaluation: every pinned value stays.
            _assert_contains(got[key], want[key], key)
        else:
            assert got[key] == want[key], key


def _assert_contains(got: Any, want: Any, where: str) -> None:
    if isinstance(want, dict):
        for k, v in want.items():
            assert k in got, f"{where}.{k} is missing"
            _assert_contains(got[k], v, f"{where}.{k}")
    else:
        assert got == want, where
