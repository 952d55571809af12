"""DPO-family runs you can leave: metrics.csv, TensorBoard, checkpoints, SIGTERM and an exact
``--resume`` (a stopped and resumed run equals the uninterrupted one, bit for bit), through the
same :class:`~tailor.algos.lm_ppo_state.LMRunState` as the LM PPO runs."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from safetensors.torch import load_file

import tailor.algos.dpo as dpo
from tailor.algos.lm_ppo_state import LM_STATE_FILE
from tailor.cli import main
from tailor.errors import TailorError
from tailor.experiments.lm_runs import lm_customize
from tailor.lm.preferences import PreferencePair
from tailor.rundir import Stopped, latest_checkpoint
from test_lm_model import tiny_model_dir
from test_lm_runs import _csv_rows

PROMPTS = ["a", "b", "c"]
# 96 prior samples in groups of 4: well over 64 rows (the reference log-probs' chunk), so the
# reference is computed over several steps, and a resumed run must make the rest again.
SETTINGS = {"steps": 6, "batch_size": 8, "lr": 1e-3, "samples": 32}
PAIRS = [PreferencePair("", "mia", "bob"), PreferencePair("an", "na", "ugo")] * 3


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def prior(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory)


def _trouble(monkeypatch, at: int, how: str) -> None:
    """Make the ``at``-th micro-batch loss (step ``at`` without accumulation) send SIGTERM to
    this process (as ``timeout`` or Slurm would) or raise (as a bug would)."""
    real, calls = dpo._micro_loss, [0]

    def micro_loss(*args, **kwargs):
        calls[0] += 1
        if calls[0] == at:
            if how == "stop":
                os.kill(os.getpid(), signal.SIGTERM)
            else:
                raise RuntimeError("the accelerator went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(dpo, "_micro_loss", micro_loss)


def _run(prior: Path, out: Path, method: str = "dpo", **options):
    overrides = {**SETTINGS, **options.pop("overrides", {})}
    options.setdefault("reward", None if "pairs" in options else "ends-with-vowel")
    return lm_customize(
        prior, method, out, prompts=PROMPTS, max_new_tokens=6, overrides=overrides,
        progress=False, **options,
    )  # fmt: skip


def _same_run(a: Path, b: Path, model: str = "model.safetensors") -> None:
    ha, hb = (json.loads((r / "tailor.json").read_text())["history"] for r in (a, b))
    assert len(ha) == SETTINGS["steps"] and ha == hb
    assert len({h["loss"] for h in ha}) == len(ha)  # it trained: every step's loss differs
    wa, wb = load_file(str(a / model)), load_file(str(b / model))
    assert sorted(wa) == sorted(wb)
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name
    assert _csv_rows(a) == _csv_rows(b)
    assert [r["iteration"] for r in _csv_rows(a)] == [str(i) for i in range(1, 7)]
    assert [float(r["loss"]) for r in _csv_rows(a)] == [h["loss"] for h in ha]


@pytest.fixture(scope="module")
def straight(prior, tmp_path_factory) -> dict[str, Path]:
    """One uninterrupted run of each method (checkpoints every 2 steps)."""
    base = tmp_path_factory.mktemp("dporun")
    runs = {}
    for method in ("dpo", "ce-dpo", "decoupled-dpo"):
        runs[method] = base / method
        _run(prior, runs[method], method, checkpoint_every=2)
    return runs


@pytest.mark.parametrize("method", ["dpo", "ce-dpo", "decoupled-dpo"])
def test_sigterm_then_resume_equals_the_uninterrupted_run(
    prior, straight, tmp_path, monkeypatch, method
):
    out = tmp_path / "stopped"
    _trouble(monkeypatch, 3, "stop")
    with pytest.raises(Stopped) as stop:
        _run(prior, out, method, checkpoint_every=50)
    assert stop.value.exit_code == 128 + signal.SIGTERM
    # the stop committed the state after step 3 (the signal came during step 3)
    assert latest_checkpoint(out).step == 3 and LM_STATE_FILE in latest_checkpoint(out).files
    assert json.loads((out / "tailor.json").read_text())["interrupted_at_step"] == 3
    assert len(_csv_rows(out)) == 3
    monkeypatch.undo()
    _run(prior, out, method, resume=True, checkpoint_every=50)
    _same_run(straight[method], out)
    assert latest_checkpoint(out).step == 6
    assert any((out / "tb").iterdir())  # TensorBoard scalars as they happen


def test_crash_resumes_from_the_periodic_checkpoint(prior, straight, tmp_path, monkeypatch):
    out = tmp_path / "crashed"
    _trouble(monkeypatch, 4, "crash")
    with pytest.raises(RuntimeError, match="accelerator went away"):
        _run(prior, out, checkpoint_every=2)
    assert latest_checkpoint(out).step == 2  # the one committed after step 2
    assert len(_csv_rows(out)) == 3  # row 3 was written; the resume redoes it
    monkeypatch.undo()
    _run(prior, out, resume=True, checkpoint_every=2)
    _same_run(straight["dpo"], out)


def test_the_checkpoint_holds_the_weights_adam_and_the_generator(straight):
    tensors = load_file(str(latest_checkpoint(straight["dpo"]).path(LM_STATE_FILE)))
    model = load_file(str(straight["dpo"] / "model.safetensors"))
    policy = {k.removeprefix("policy."): v for k, v in tensors.items() if k.startswith("policy.")}
    assert policy and all(torch.equal(v, model[k]) for k, v in policy.items() if k in model)
    assert any(k.startswith("opt.") for k in tensors) and "rng.sampler" in tensors
    assert not any(k.startswith(("value_head.", "vopt.", "schedule.")) for k in tensors)


def test_resume_refuses_another_run(prior, straight, tmp_path):
    run = straight["dpo"]
    with pytest.raises(TailorError, match=r"lr=0\.002 \(saved 0\.001\)"):
        _run(prior, run, resume=True, overrides={"lr": 2e-3})
    with pytest.raises(TailorError, match="coefficients"):
        _run(prior, run, resume=True, coefficients={"beta": 0.5})
    with pytest.raises(TailorError, match="decoupled-dpo"):
        _run(prior, run, "decoupled-dpo", resume=True)
    with pytest.raises(TailorError, match="prompts differ"):
        lm_customize(prior, "dpo", run, reward="ends-with-vowel", prompts=["z"],
                     max_new_tokens=6, overrides=SETTINGS, progress=False, resume=True)  # fmt: skip
    with pytest.raises(TailorError, match="pairs differ"):
        _run(prior, run, resume=True, pairs=PAIRS)
    with pytest.raises(TailorError, match="trained"):
        from tailor.lm.runtime import LMRuntime

        _run(prior, run, resume=True, runtime=LMRuntime(lora_r=4))
    other = tmp_path / "other-prior"
    shutil.copytree(prior, other)
    with pytest.raises(TailorError, match="prior"):
        _run(other, run, resume=True)
    with pytest.raises(TailorError, match="'lm-ppo' run"):
        lm_customize(prior, "residual", run, reward="ends-with-vowel", resume=True)
    assert latest_checkpoint(run).step == 6  # nothing was changed by the refusals


def test_a_preference_file_run_refuses_other_pairs(prior, tmp_path):
    out = tmp_path / "pairs"
    _run(prior, out, pairs=PAIRS, overrides={"steps": 2})
    with pytest.raises(TailorError, match="pairs differ"):
        _run(prior, out, pairs=PAIRS[:4], resume=True, overrides={"steps": 4})
    meta = _run(prior, out, pairs=PAIRS, resume=True, overrides={"steps": 4})
    assert len(meta["history"]) == 4 and latest_checkpoint(out).step == 4


def test_the_run_directory_changes_no_number(prior, straight):
    from tailor.algos.dpo import LMDPOConfig, customize_offline
    from tailor.lm.model import load_model, load_tokenizer

    config = LMDPOConfig(**SETTINGS, max_new_tokens=6, seed=0)
    model, tok = load_model(prior), load_tokenizer(prior)
    _, hist, _ = customize_offline(
        model, tok, "dpo", config, reward="ends-with-vowel", prompts=PROMPTS
    )
    assert hist == json.loads((straight["dpo"] / "tailor.json").read_text())["history"]


def test_a_lora_run_resumes_exactly_and_only_as_lora(prior, tmp_path, monkeypatch):
    """A LoRA run's checkpoint holds its adapter (and Adam's state of it) only."""
    from tailor.lm.runtime import LMRuntime

    lora = LMRuntime(lora_r=4)
    straight = tmp_path / "lora-straight"
    _run(prior, straight, runtime=lora, checkpoint_every=50)
    saved = load_file(str(latest_checkpoint(straight).path(LM_STATE_FILE)))
    trained = [k for k in saved if k.startswith("policy.")]
    assert trained and all("lora_" in k for k in trained)  # the adapter, not the base
    out = tmp_path / "lora-stopped"
    _trouble(monkeypatch, 3, "stop")
    with pytest.raises(Stopped):
        _run(prior, out, runtime=lora, checkpoint_every=50)
    monkeypatch.undo()
    with pytest.raises(TailorError, match="trained"):
        _run(prior, out, resume=True, checkpoint_every=50)  # a full run cannot continue it
    _run(prior, out, resume=True, runtime=lora, checkpoint_every=50)
    _same_run(straight, out, "adapter_model.safetensors")


def test_cli_checkpoints_and_resume(prior, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["lm", "customize", "--prior", str(prior), "--reward", "ends-with-vowel"]
    args += ["--method", "ce-dpo", "--batch-size", "8", "--max-new-tokens", "6", "--quiet"]
    args += ["--samples", "16"]
    assert main([*args, "--steps", "3", "--out", str(out), "--checkpoint-every", "2"]) == 0
    assert latest_checkpoint(out).step == 3 and len(_csv_rows(out)) == 3
    assert main([*args, "--steps", "5", "--resume", str(out)]) == 0
    assert latest_checkpoint(out).step == 5 and len(_csv_rows(out)) == 5
    assert len(json.loads((out / "tailor.json").read_text())["history"]) == 5
    capsys.readouterr()
    assert main([*args, "--steps", "5", "--resume", str(out), "--beta", "0.3"]) == 2
    assert "beta" in capsys.readouterr().err
