"""`tailor frontier`: a few KL targets of one prior side by side, the knee named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tailor.cli import main
from tailor.errors import TailorError
from tailor.experiments import run
from tailor.experiments.frontier import frontier_jobs, frontier_table, keeps_basic, knee
from tailor.experiments.presets import Job


def _points(basic: list[float], addon: list[float], kl: list[float]) -> list[dict]:
    return [
        {"kl_target": k, "kl": k, "basic": b, "addon": a, "run": ""}
        for b, a, k in zip(basic, addon, kl, strict=True)
    ]


def test_knee_is_the_most_addon_that_keeps_the_basic_return() -> None:
    # prior 100 / -10; the second run keeps 95% and gains most among those keeping >= 90%
    points = _points([100, 98, 95, 60], [-10, -8, -5, 3], [0, 0.1, 0.3, 1.0])
    at, rule = knee(points)
    assert at == 2 and "90%" in rule
    table = frontier_table(points, at, rule)
    assert "| kl_target 0.3 | 0.300 | 95.0 | -5.0 | 1.00 | **knee** |" in table


def test_knee_without_a_keeping_run_is_the_chord_point() -> None:
    # nothing keeps 90%: the point farthest above the chord (0, -10) -> (1, 0) in unit scale
    points = _points([100, 50, 40, 30], [-10, -1, -0.5, 0], [0, 0.1, 0.5, 1.0])
    at, rule = knee(points)
    assert at == 1 and "chord" in rule


def test_knee_keeps_a_share_of_a_negative_basic_return() -> None:
    # A cost-like basic return (the point mass's): the prior -20; keeping 90% means losing at
    # most 10% of |-20| = 2, i.e. basic >= -22. -21.5 keeps it (add-on -3), -25 does not.
    points = _points([-20, -21.5, -25], [-4, -3, -1], [0, 0.1, 0.5])
    at, rule = knee(points)
    assert at == 1 and "90%" in rule
    assert keeps_basic(-22.0, -20.0) and not keeps_basic(-22.5, -20.0)
    assert keeps_basic(90.0, 100.0) and not keeps_basic(89.0, 100.0)  # positive: >= 90% of it


def test_frontier_jobs_scale_the_target_by_the_action_size() -> None:
    base = Job("customize", "pointmass", "residual", 0, 4096, 2)
    jobs = frontier_jobs("pointmass", "p", [0.1, 0.01], 2, base)
    assert [j.kind for j in jobs] == ["prior", "customize", "customize"]
    assert [dict(j.ppo)["kl_target"] for j in jobs[1:]] == [0.02, 0.2]
    with pytest.raises(TailorError, match="positive"):
        frontier_jobs("pointmass", "p", [0.0], 2, base)


def test_cli_frontier_end_to_end(tmp_path: Path, capsys, monkeypatch) -> None:
    run.train_prior("pointmass", "ppo", 1024, 0, tmp_path / "prior", log=None,
                    num_envs=8, num_steps=16, tensorboard=False)  # fmt: skip
    monkeypatch.chdir(tmp_path)  # a relative --prior: the jobs get it absolute (for Ray workers)
    out = tmp_path / "frontier"
    argv = ["frontier", "--task", "pointmass", "--prior", "prior", "--kl", "0.01,1",
            "--steps", "8192", "--episodes", "2", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "| prior | 0.000 |" in text and "**knee**" in text and "kl_target 0.02" in text
    assert (out / "frontier.png").stat().st_size > 0 and (out / "frontier.md").is_file()
    results = sorted(out.glob("pointmass/*/result.json"))
    assert len(results) == 3 and all(json.loads(r.read_text())["eval"] for r in results)
    assert {json.loads(r.read_text())["job"]["prior"] for r in results} == {str(tmp_path / "prior")}
    assert main(argv) == 0  # resumable: a rerun trains nothing and prints the same table
    assert "**knee**" in capsys.readouterr().out
