"""`tailor frontier`: a few KL targets of one prior side by side, the knee named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tailor.cli import main
from tailor.errors import TailorError
from tailor.experiments import run
from tailor.experiments.frontier import (
    frontier_jobs,
    frontier_points,
    frontier_table,
    keeps_basic,
    knee,
)
from tailor.experiments.presets import Job


def _points(basic: list[float], addon: list[float], kl: list[float]) -> list[dict]:
    return [
        {"setting": "prior" if i == 0 else f"kl_target {k:g}", "kl": k, "basic": b, "addon": a,
         "run": ""}
        for i, (b, a, k) in enumerate(zip(basic, addon, kl, strict=True))
    ]  # fmt: skip


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


SAC_FAST = (("learning_starts", 50), ("batch_size", 16), ("warm_start_steps", 20),
            ("log_interval", 0), ("kl_every", 10), ("kl_horizon", 100))  # fmt: skip


def test_frontier_of_a_sac_prior_runs_residual_sac(tmp_path: Path) -> None:
    """A tanh-squashed prior's frontier customizes it with residual SAC, each run holding its
    KL target with SAC's controller; the held KL is its last measurements (``kl_held``)."""
    from tailor.experiments.sweep import run_sweep

    prior = run.train_prior("pointmass", "sac", 120, 0, tmp_path / "p", log=None,
                            learning_starts=50, batch_size=16, hidden=(16, 16))  # fmt: skip
    base = Job("customize", "pointmass", "residual", 0, 300, 1, algo="sac", ppo=SAC_FAST)
    jobs = frontier_jobs("pointmass", str(prior), [0.001, 10.0], 2, base)
    assert "residual-sac-300-from-p" in jobs[1].id and jobs[0].algo == "ppo"
    out = tmp_path / "f"
    assert not run_sweep(jobs, out, workers=1).failed
    points = frontier_points(jobs, out)
    assert points[0]["kl"] == 0.0
    for job, point in zip(jobs[1:], points[1:], strict=True):
        meta = json.loads((out / job.id / "policy.json").read_text())
        assert meta["algo"] == "sac" and meta["config"]["kl_target"] == dict(job.ppo)["kl_target"]
        assert point["kl"] == pytest.approx(meta["train_stats"]["kl_held"])
    # the tiny target pushes the scale up, the huge one down (clipped steps of 2%)
    scales = [json.loads((out / j.id / "policy.json").read_text())["train_stats"]["kl_scale"]
              for j in jobs[1:]]  # fmt: skip
    assert scales[0] > 1.0 > scales[1]


def test_frontier_of_a_q_prior_varies_omega(tmp_path: Path, capsys) -> None:
    """A Q-network prior's frontier: residual soft DQN once per omega, each run's KL held the
    exact categorical KL of its final acting policy to the prior on its last states (0 at
    omega = 1 before any update: Q_R starts at zero and acts as the prior)."""
    prior = run.train_prior("cartpole-centered", "dqn", 60, 0, tmp_path / "q", log=None,
                            learning_starts=50, batch_size=16, hidden=(16, 16))  # fmt: skip
    out = tmp_path / "f"
    argv = ["frontier", "--task", "cartpole-centered", "--prior", str(prior), "--steps", "300",
            "--episodes", "1", "--omega", "1,0.2", "--out", str(out)]  # fmt: skip
    assert main([*argv, "--kl", "0.1"]) == 2  # a KL target is no Q prior's setting
    assert "--omega" in capsys.readouterr().err and not out.exists()
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "| omega 1 | 0.000 |" in text and "| omega 0.2 |" in text
    metas = {
        p.parent.name: json.loads(p.read_text())
        for p in out.glob("cartpole-centered/*/policy.json")
    }
    assert sorted(metas) == [
        "residual-dqn-300-from-q-omega0.2-seed0",
        "residual-dqn-300-from-q-omega1.0-seed0",
    ]
    low, one = (metas[k]["train_stats"]["kl_held"] for k in sorted(metas))
    assert one == pytest.approx(0.0, abs=1e-6) and low > 1e-3
    # a tailor MCTS run is a search over its prior, not a prior of its own
    mcts = run.customize("cartpole-centered", "mcts", prior, 0, 0, tmp_path / "m", log=None)
    assert main([*argv[:4], str(mcts), "--out", str(tmp_path / "g")]) == 2
    assert "tailor mcts run" in capsys.readouterr().err


def test_an_older_job_record_reads_as_a_ppo_job() -> None:
    job = Job(
        "customize", "pointmass", "residual", 0, 4096, 2, prior="p", ppo=(("kl_target", 0.1),)
    )
    record = job.to_json()
    del record["algo"], record["prior_options"]
    again = Job.from_json(record)
    assert again == job and again.id == "pointmass/residual-4096-from-p-kl_target0.1-seed0"
    std = Job.from_json({**job.to_json(), "prior_options": [["std", 0.1]], "algo": "ppo"})
    assert std.id == "pointmass/residual-4096-from-p-std0.1-kl_target0.1-seed0"
