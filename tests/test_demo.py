"""`tailor demo` end to end on the cheap pointmass task, and the learning-curve plot."""

import json

import pytest

from tailor.cli import main
from tailor.experiments.demo import DemoConfig, acceptance, run_demo, side_by_side
from tailor.experiments.plots import plot_learning_curve, read_metrics


@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("prior") / "pm"
    args = ["train", "--task", "pointmass", "--method", "soft", "--steps", "8192", "--seed", "1"]
    assert main([*args, "--out", str(out), "--num-envs", "16", "--no-progress"]) == 0
    return out


def test_demo_customizes_evaluates_and_plots(prior_dir, tmp_path, capsys):
    out = tmp_path / "demo"
    cfg = DemoConfig(
        out=out,
        prior=prior_dir,
        task="pointmass",
        steps=8192,
        episodes=4,
        progress=False,
        video=False,
        omega_prime=0.01,
        alpha_hat=0.01,
    )
    result = run_demo(cfg)
    text = capsys.readouterr().out
    assert "exact identities hold" in text and "FAIL" not in text
    assert "customize pointmass from" in text and "residual, kl PPO side by side" in text
    for key in ("total (basic + add-on)", "basic return", "add-on return", "kl PPO"):
        assert key in text
    assert "basic + add-on beats the prior" in text  # the acceptance lines
    assert result["curve"].read_bytes()[:4] == b"\x89PNG"
    for name in ("customized", "prior", "kl"):
        ev = json.loads((out / f"eval-{name}.json").read_text())
        assert ev["episodes"] == 4 and set(ev) >= {"total", "basic", "addon", "statistic"}
    assert (out / "residual-pointmass" / "metrics.csv").is_file()
    assert (out / "kl-pointmass" / "metrics.csv").is_file()
    # Same seed and config: a second run gives the same numbers (it replaces its own run dirs),
    # however the two runs were scheduled on the worker processes.
    again = run_demo(DemoConfig(**{**cfg.__dict__, "verify": False, "workers": 1}))
    assert again["customized"]["per_episode"] == result["customized"]["per_episode"]
    assert again["kl"]["per_episode"] == result["kl"]["per_episode"]


def test_acceptance_checks_the_three_conditions():
    def ev(total, addon, addon_std):
        return {"total": {"mean": total}, "addon": {"mean": addon, "std": addon_std}}

    ok = acceptance(ev(100.0, -50.0, 2.0), ev(120.0, -30.0, 1.0))
    assert ok["accepted"] and all(ok["checks"].values())
    # +20 on the add-on is 40% of |-50| but below 3 std (3 * 10 = 30).
    noisy = acceptance(ev(100.0, -50.0, 10.0), ev(120.0, -30.0, 1.0))
    assert not noisy["accepted"] and sum(noisy["checks"].values()) == 2
    # A better add-on that costs more basic return than it gains fails the first check.
    worse = acceptance(ev(100.0, -50.0, 2.0), ev(90.0, -30.0, 1.0))
    assert not worse["accepted"] and not worse["checks"]["basic + add-on beats the prior"]


def test_side_by_side_shows_the_change():
    def ev(total, stat):
        s = {"mean": total, "std": 1.0}
        return {"total": s, "basic": s, "addon": s, "statistic": {"mean": stat, "std": 0.0}}

    table = side_by_side(ev(10.0, 0.5), ev(12.5, 0.25), "mean |y|")
    assert "+2.50" in table and "-0.250" in table and "mean |y|" in table


def test_learning_curve_reads_metrics_only(prior_dir, tmp_path):
    cols = read_metrics(prior_dir)
    assert len(cols["steps"]) >= 1 and "return_basic" in cols
    png = plot_learning_curve(prior_dir / "metrics.csv", tmp_path / "c.png", "title")
    assert png.stat().st_size > 5_000


def test_demo_without_a_prior_is_a_clear_error(tmp_path, capsys):
    code = main(["demo", "--prior", str(tmp_path / "missing"), "--out", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 2 and "no prior at" in err and "tailor train" in err


def test_the_demo_says_why_it_chose_its_coefficients(prior_dir, tmp_path, capsys, monkeypatch):
    from tailor.experiments import demo

    task = demo.DemoTask(str(prior_dir), 2048, {"residual": {"omega_prime": 0.02}}, "a reason")
    monkeypatch.setitem(demo.DEMO_TASKS, "pointmass", task)
    common = dict(task="pointmass", episodes=2, progress=False, video=False, verify=False)
    run_demo(DemoConfig(out=tmp_path / "a", **common))
    text = capsys.readouterr().out
    assert "omega'=0.02" in text and "why these coefficients: a reason" in text
    run_demo(DemoConfig(out=tmp_path / "b", omega_prime=0.01, **common))  # the user's own
    assert "why these coefficients" not in capsys.readouterr().out
