"""LM PPO runs you can leave: metrics.csv, TensorBoard, checkpoints, SIGTERM and an exact
``--resume`` (a stopped and resumed run equals the uninterrupted one, bit for bit)."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from safetensors.torch import load_file

from tailor.algos.lm_ppo_state import LM_STATE_FILE
from tailor.cli import main
from tailor.errors import TailorError
from tailor.experiments.lm_runs import lm_customize
from tailor.lm.rewards import get_reward, register_reward, unregister_reward
from tailor.rundir import Stopped, latest_checkpoint
from test_lm_model import tiny_model_dir

PROMPTS = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"]  # > 8 slots: shuffled epochs
SETTINGS = {"steps": 6, "batch_size": 8, "minibatch_size": 4, "critic_warmup": 0.2}
# When the test reward makes trouble: at which call, and how ("stop": SIGTERM to this process,
# as `timeout` or Slurm would send; "crash": an exception, as a bug in a reward would raise).
TROUBLE: dict[str, object] = {"at": None, "how": None, "calls": 0}


def _reward(prompt: str, completion: str) -> float:
    return get_reward("ends-with-vowel")(prompt, completion)


def _batched_trouble(prompts: list[str], completions: list[str]) -> list[float]:
    TROUBLE["calls"] = int(TROUBLE["calls"]) + 1  # type: ignore[call-overload]
    if TROUBLE["calls"] == TROUBLE["at"]:
        TROUBLE["at"] = None
        if TROUBLE["how"] == "stop":
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            raise RuntimeError("reward server went away")
    return [_reward(p, c) for p, c in zip(prompts, completions, strict=True)]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    register_reward("test-trouble", _batched_trouble, overwrite=True, batched=True)
    yield
    unregister_reward("test-trouble")
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def prior(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory)


def _run(prior: Path, out: Path, trouble: tuple[int, str] | None = None, **options):
    TROUBLE.update(at=trouble[0] if trouble else None, how=trouble[1] if trouble else None)
    TROUBLE["calls"] = 0
    overrides = {**SETTINGS, **options.pop("overrides", {})}
    return lm_customize(
        prior, "residual", out, reward="test-trouble", prompts=PROMPTS, max_new_tokens=6,
        overrides=overrides, progress=False, **options,
    )  # fmt: skip


def _csv_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "wall_s"} for row in csv.DictReader(f)]


def _plain(history: list[dict[str, float]]) -> list[dict[str, float | None]]:
    """The history with NaN (a loss not computed in the critic warm-up) as None, comparable."""
    return [{k: None if math.isnan(v) else v for k, v in row.items()} for row in history]


def _same_run(a: Path, b: Path) -> None:
    ha, hb = (json.loads((r / "tailor.json").read_text())["history"] for r in (a, b))
    assert len(ha) == SETTINGS["steps"] and _plain(ha) == _plain(hb)
    assert math.isnan(ha[0]["policy_loss"])  # the warm-up's NaN came back as NaN
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert sorted(wa) == sorted(wb)
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name
    assert _csv_rows(a) == _csv_rows(b)
    assert [r["iteration"] for r in _csv_rows(a)] == [str(i) for i in range(1, 7)]


@pytest.fixture(scope="module")
def straight(prior, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lmrun") / "straight"
    _run(prior, out, checkpoint_every=2)
    return out


def test_sigterm_then_resume_equals_the_uninterrupted_run(prior, straight, tmp_path):
    out = tmp_path / "stopped"
    with pytest.raises(Stopped) as stop:
        _run(prior, out, trouble=(3, "stop"), checkpoint_every=50)
    assert stop.value.exit_code == 128 + signal.SIGTERM
    # the stop committed the state after iteration 3 (the reward of iteration 3 got the signal)
    assert latest_checkpoint(out).step == 3 and LM_STATE_FILE in latest_checkpoint(out).files
    assert json.loads((out / "tailor.json").read_text())["interrupted_at_step"] == 3
    assert len(_csv_rows(out)) == 3
    _run(prior, out, resume=True, checkpoint_every=50)
    _same_run(straight, out)
    assert latest_checkpoint(out).step == 6
    assert any((out / "tb").iterdir())  # TensorBoard scalars as they happen


def test_crash_resumes_from_the_periodic_checkpoint(prior, straight, tmp_path):
    out = tmp_path / "crashed"
    with pytest.raises(TailorError, match="reward server went away"):
        _run(prior, out, trouble=(4, "crash"), checkpoint_every=2)
    assert latest_checkpoint(out).step == 2  # the one committed after iteration 2
    assert len(_csv_rows(out)) == 3  # row 3 was written; the resume redoes it
    _run(prior, out, resume=True, checkpoint_every=2)
    _same_run(straight, out)


def test_resume_can_extend_the_steps(prior, tmp_path):
    out = tmp_path / "short"
    _run(prior, out, overrides={"steps": 2})
    meta = _run(prior, out, resume=True, overrides={"steps": 4})
    assert [h["iteration"] for h in meta["history"]] == [0.0, 1.0, 2.0, 3.0]
    assert latest_checkpoint(out).step == 4


def test_resume_refuses_another_run(prior, straight, tmp_path):
    with pytest.raises(TailorError, match=r"lr=0\.001 \(saved 0\.0002\)"):
        _run(prior, straight, resume=True, overrides={"lr": 1e-3})
    with pytest.raises(TailorError, match="prompts differ"):
        TROUBLE["calls"] = 0
        lm_customize(prior, "residual", straight, reward="test-trouble", prompts=["z"],
                     max_new_tokens=6, overrides=SETTINGS, progress=False, resume=True)  # fmt: skip
    with pytest.raises(TailorError, match="ends-with-vowel"):
        lm_customize(prior, "residual", straight, reward="ends-with-vowel", prompts=PROMPTS,
                     max_new_tokens=6, overrides=SETTINGS, progress=False, resume=True)  # fmt: skip
    with pytest.raises(TailorError, match="it is a 'lm-ppo' run"):
        lm_customize(prior, "dpo", straight, reward="ends-with-vowel", resume=True)
    with pytest.raises(TailorError, match="does not exist"):
        _run(prior, tmp_path / "never", resume=True)
    # nothing was changed by the refusals
    assert latest_checkpoint(straight).step == 6


def test_cli_checkpoints_and_resume(prior, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["lm", "customize", "--prior", str(prior), "--reward", "ends-with-vowel"]
    args += ["--method", "kl", "--batch-size", "8", "--max-new-tokens", "6", "--quiet"]
    assert main([*args, "--steps", "3", "--out", str(out), "--checkpoint-every", "2"]) == 0
    assert latest_checkpoint(out).step == 3 and len(_csv_rows(out)) == 3
    assert main([*args, "--steps", "5", "--resume", str(out)]) == 0
    assert latest_checkpoint(out).step == 5 and len(_csv_rows(out)) == 5
    assert len(json.loads((out / "tailor.json").read_text())["history"]) == 5
    capsys.readouterr()
    assert main([*args, "--steps", "5", "--resume", str(out), "--lr", "0.5"]) == 2
    assert "lr=0.5" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_the_run_directory_changes_no_number(prior, straight):
    from tailor.algos.lm_ppo import LMPPOConfig, customize_ppo
    from tailor.lm.model import load_model, load_tokenizer

    TROUBLE.update(at=None, calls=0)
    config = LMPPOConfig(**SETTINGS, max_new_tokens=6, seed=0)
    model, tok = load_model(prior), load_tokenizer(prior)
    _, hist = customize_ppo(
        model, tok, "test-trouble", "residual", config, PROMPTS, omega_prime=0.15, alpha_hat=0.1
    )
    saved = json.loads((straight / "tailor.json").read_text())["history"]
    assert _plain(hist) == _plain(saved)  # the loop without hooks: the same numbers


def test_a_lora_run_resumes_exactly_and_only_as_lora(prior, tmp_path):
    """A LoRA run's checkpoint holds its adapter (and Adam's state of it); a stopped LoRA run
    resumed equals the uninterrupted one; resuming it as a full fine-tune is refused."""
    from tailor.lm.runtime import LMRuntime

    lora = LMRuntime(lora_r=4)
    straight = tmp_path / "lora-straight"
    _run(prior, straight, runtime=lora, checkpoint_every=50)
    saved = load_file(str(latest_checkpoint(straight).path(LM_STATE_FILE)))
    trained = [k for k in saved if k.startswith("policy.")]
    assert trained and all("lora_" in k for k in trained)  # the adapter, not the base
    out = tmp_path / "lora-stopped"
    with pytest.raises(Stopped):
        _run(prior, out, trouble=(3, "stop"), runtime=lora, checkpoint_every=50)
    with pytest.raises(TailorError, match="trained"):
        _run(prior, out, resume=True, checkpoint_every=50)  # a full run cannot continue it
    _run(prior, out, resume=True, runtime=lora, checkpoint_every=50)
    ha, hb = (json.loads((r / "tailor.json").read_text())["history"] for r in (straight, out))
    assert _plain(ha) == _plain(hb)
    wa, wb = (load_file(str(r / "adapter_model.safetensors")) for r in (straight, out))
    assert sorted(wa) == sorted(wb) and all(torch.equal(wa[k], wb[k]) for k in wa)
