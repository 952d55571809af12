"""`tailor train/customize --resume` with flags that would change the saved run is an error naming
them; flags left at their defaults, or given with the saved values, are not."""

from __future__ import annotations

from pathlib import Path

import pytest

from tailor.cli import main

FAST = ["--num-envs", "8", "--no-progress", "--num-steps", "16"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("resume") / "run"
    argv = ["train", "--task", "pointmass", "--method", "soft", "--steps", "256", *FAST]
    assert main([*argv, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--std-type", "state"], ["--std-type state (the run has 'global')"]),
        (["--seed", "3"], ["--seed 3 (the run has 0)"]),
        (["--num-envs", "16"], ["--num-envs 16 (the run has 8)"]),
        (["--num-epochs", "3"], ["--num-epochs 3 (the run has 5)"]),
        (["--hidden", "8", "8"], ["--hidden 8 8 (the run has 64 64)"]),
        (["--alpha", "0.5"], ["--alpha 0.5 (the run has alpha=0.01)"]),
        (["--seed", "1", "--lam", "0.9"], ["--seed 1", "--lam 0.9 (the run has 0.95)"]),
    ],
)
def test_changed_flags_on_resume_are_named(capsys, run: Path, flags, named) -> None:
    before = (run / "metrics.csv").read_text()
    code = main(["train", "--resume", str(run), "--steps", "512", "--no-progress", *flags])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot resume" in err
    for text in named:
        assert text in err
    assert (run / "metrics.csv").read_text() == before  # nothing ran


def test_same_values_and_mutable_flags_resume(capsys, run: Path) -> None:
    same = ["--seed", "0", "--num-envs", "8", "--num-steps", "16", "--std-type", "global"]
    argv = ["train", "--resume", str(run), "--steps", "384", "--no-progress", *same]
    mutable = ["--no-tensorboard", "--checkpoint-every", "7", "--num-workers", "2"]
    assert main([*argv, *mutable]) == 0, capsys.readouterr()
    from tailor.algos.ppo import read_run

    config = read_run(run)["config"]
    got = (config.tensorboard, config.checkpoint_every, config.total_steps, config.num_workers)
    assert got == (False, 7, 384, 2)


def test_customize_resume_refuses_prior_flags(capsys, run: Path, tmp_path: Path) -> None:
    out = tmp_path / "custom"
    argv = ["customize", "--task", "pointmass", "--method", "residual", "--prior", str(run)]
    assert main([*argv, "--steps", "128", "--out", str(out), *FAST]) == 0
    capsys.readouterr()
    base = ["customize", "--resume", str(out), "--steps", "256", "--no-progress"]
    assert main([*base, "--prior", str(run), "--warmup-fraction", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "--prior (the run continues from its copy of the prior)" in err
    assert "--warmup-fraction 0.5 (the run has 0.05)" in err
