"""The command line as a new user meets it: a fast ``--help``, default ``--steps`` and ``--out``,
``--algo`` read from the prior, ``tailor plot RUN``, the slow-path notice, the shipped priors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tailor.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


# ---- `tailor --help` imports no heavy library ---------------------------------------------------

HEAVY = ("torch", "gymnasium", "transformers", "matplotlib", "tyro")


@pytest.mark.parametrize("argv", [["--help"], ["--version"]])
def test_help_imports_no_heavy_library(argv: list[str]) -> None:
    script = (
        "import sys\n"
        "from tailor.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert "HEAVY []" in out, out


def test_prior_formats_match_the_detector() -> None:
    from tailor.cli.rl import prior_formats
    from tailor.priors.detect import FORMATS

    assert prior_formats() == FORMATS


def test_export_names_still_importable() -> None:
    from tailor.cli import export, exporter

    assert export.export_policy is exporter.export_policy
    assert export.DeterministicPolicy is exporter.DeterministicPolicy


# ---- default --steps and --out ------------------------------------------------------------------


@pytest.fixture
def captured(monkeypatch) -> dict:
    """``run.train_prior`` / ``run.customize`` / ``run.resume`` replaced by recorders."""
    from tailor.experiments import run

    calls: dict = {}

    def recorder(name):
        def record(*args, **kwargs):
            calls[name] = (args, kwargs)
            return args[0]

        return record

    for name in ("train_prior", "customize", "resume"):
        monkeypatch.setattr(run, name, recorder(name))
    return calls


def test_steps_default_per_algo_is_shown_and_used(capsys, captured, tmp_path) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "ppo 1,000,000, dqn 50,000, sac 60,000" in shown
    with pytest.raises(SystemExit):
        main(["customize", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "ppo 1,000,000, dqn 30,000, sac 30,000, mcts: no training" in shown
    for algo, steps in (("ppo", 1_000_000), ("dqn", 50_000), ("sac", 60_000)):
        argv = ["train", "--algo", algo, "--task", "pointmass", "--method", "soft"]
        assert run_cli(capsys, *argv, "--out", str(tmp_path / algo))[0] == 0
        args, _ = captured["train_prior"]
        assert args[1:3] == (algo, steps)


@pytest.mark.parametrize("algo", ["ppo", "dqn", "sac"])
def test_help_config_shows_no_default_that_is_refused(capsys, algo: str) -> None:
    """`--help-config` listed `--total-steps (default: 1)`, which --steps then refused."""
    with pytest.raises(SystemExit):
        main(["train", "--algo", algo, "--help-config"])
    shown = " ".join(capsys.readouterr().out.replace("│", " ").split())
    steps = {"ppo": 1_000_000, "dqn": 50_000, "sac": 60_000}[algo]
    total = shown[shown.index("--total-steps") :]
    total = total[: total.index(" --", 2)]
    assert f"(default: {steps})" in total, total
    with pytest.raises(SystemExit):
        main(["train", "--algo", algo, "--steps", "1234", "--seed", "7", "--help-config"])
    shown = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "(default: 1234)" in shown and "(default: 7)" in shown


def test_out_defaults_to_a_new_run_directory(capsys, captured, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--task", "pointmass", "--method", "soft", "--seed", "3", "--steps", "64"]
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0
    chosen = captured["train_prior"][0][4]
    assert out.splitlines()[0] == f"run directory: {chosen}"
    assert chosen.startswith("runs/pointmass/soft-3-")
    argv = ["customize", "--algo", "sac", "--task", "pointmass", "--prior", "p", "--steps", "9"]
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0
    assert captured["customize"][0][5].startswith("runs/pointmass/sac-residual-0-")


def test_new_run_dir_never_reuses_a_directory(tmp_path) -> None:
    import datetime as dt

    from tailor.cli.defaults import new_run_dir

    now = dt.datetime(2026, 1, 2, 3, 4, 5)
    first = new_run_dir("hopper-jump", "residual", 1, root=tmp_path, now=now)
    assert first == tmp_path / "hopper-jump" / "residual-1-20260102-030405"
    first.mkdir(parents=True)
    second = new_run_dir("hopper-jump", "residual", 1, root=tmp_path, now=now)
    assert second == first.with_name(first.name + "-1")
    second.mkdir()
    assert new_run_dir("hopper-jump", "residual", 1, root=tmp_path, now=now).name.endswith("-2")
    assert new_run_dir("max-length:5", "dpo", 0, root=tmp_path, now=now).parent.name == (
        "max-length_5"
    )


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ppo") / "run"
    argv = ["train", "--task", "pointmass", "--method", "soft", "--steps", "64", "--seed", "1"]
    fast = ["--num-envs", "4", "--num-steps", "16", "--no-progress"]
    assert main([*argv, *fast, "--out", str(out)]) == 0
    return out


def test_resume_without_steps_finishes_the_run(capsys, captured, ppo_run) -> None:
    capsys.readouterr()
    assert run_cli(capsys, "train", "--resume", str(ppo_run))[0] == 0
    assert captured["resume"][0][1] == 64
    code, _, err = run_cli(capsys, "train", "--resume", str(ppo_run / "nope"))
    assert code == 2 and "error: " in err


# ---- --algo from the prior ----------------------------------------------------------------------


def test_algo_from_a_tailor_run(capsys, captured, ppo_run, tmp_path) -> None:
    from tailor.experiments.algo_choice import algo_for_prior

    assert algo_for_prior(ppo_run) == "ppo"
    argv = ["customize", "--task", "pointmass", "--method", "kl", "--prior", str(ppo_run)]
    code, out, _ = run_cli(capsys, *argv, "--steps", "64", "--out", str(tmp_path / "c"))
    assert code == 0
    assert out.splitlines()[0] == "--algo ppo (from the prior's kind; pass --algo to choose)"
    assert captured["customize"][0][1] == "ppo"


def test_algo_from_sb3_priors(capsys, captured, tmp_path) -> None:
    sb3_models = pytest.importorskip("sb3_models")
    from stable_baselines3 import DQN

    from tailor.experiments.algo_choice import algo_for_prior

    sac_zip = sb3_models.tiny_sac(tmp_path, "MountainCarContinuous-v0", 60)
    argv = ["customize", "--task", "mountaincar-noleft", "--prior", str(sac_zip), "--steps", "9"]
    code, out, _ = run_cli(capsys, *argv, "--out", str(tmp_path / "c"))
    assert code == 0
    assert out.splitlines()[0].startswith("--algo sac (from the prior's kind")
    assert captured["customize"][0][1] == "sac"
    dqn = DQN("MlpPolicy", "CartPole-v1", learning_starts=10, policy_kwargs={"net_arch": [8]})
    (tmp_path / "q").mkdir()
    dqn.save(tmp_path / "q" / "dqn.zip")
    assert algo_for_prior(tmp_path / "q" / "dqn.zip", {"temperature": 1.0}) == "dqn"


def test_explicit_algo_that_does_not_fit_still_errors(capsys, tmp_path) -> None:
    sb3_models = pytest.importorskip("sb3_models")
    sac_zip = sb3_models.tiny_sac(tmp_path, "MountainCarContinuous-v0", 60)
    argv = ["customize", "--algo", "ppo", "--task", "mountaincar-noleft", "--method", "residual"]
    code, _, err = run_cli(capsys, *argv, "--prior", str(sac_zip), "--out", str(tmp_path / "c"))
    assert code == 2 and "customize with --algo sac" in err, err


def test_lm_customize_out_defaults_to_a_new_run_directory(capsys, monkeypatch, tmp_path) -> None:
    from tailor.experiments import run

    seen = {}

    def fake(prior, method, out, **kwargs):
        seen["out"] = out
        return {"final": {}, "wall_seconds": 0.0}

    monkeypatch.setattr(run, "lm_customize", fake)
    monkeypatch.chdir(tmp_path)
    argv = ["lm", "customize", "--prior", "p", "--reward", "max-length:5", "--method", "residual"]
    code, out, _ = run_cli(capsys, *argv, "--seed", "2", "--quiet")
    assert code == 0
    assert seen["out"].startswith("runs/lm-max-length_5/residual-2-")
    assert out.splitlines()[0] == f"run directory: {seen['out']}"


# ---- tailor plot RUN [RUN ...] ------------------------------------------------------------------

SWEEP = "results/sweeps/paper/hopper-jump"


@pytest.fixture
def runs(tmp_path):
    """Two run directories as `tailor train` leaves them (metrics.csv), one of them evaluated
    by a sweep (result.json)."""
    import shutil

    root = Path(__file__).resolve().parents[1] / SWEEP
    a, b = tmp_path / "a" / "residual-0", tmp_path / "b" / "full-0"
    for src, dst in (
        (root / "residual-5M-from-hopper-seed4", a),
        (root / "full-global-5M-seed2", b),
    ):
        dst.mkdir(parents=True)
        shutil.copy(src / "metrics.csv", dst)
    shutil.copy(root / "residual-5M-from-hopper-seed4" / "result.json", a)
    return a, b


def test_plot_runs(capsys, runs, tmp_path, monkeypatch) -> None:
    from tailor.experiments.plots import run_evaluation

    a, b = runs
    assert set(run_evaluation(a)) >= {"basic", "addon"} and run_evaluation(b) is None
    code, out, _ = run_cli(capsys, "plot", str(a))
    assert code == 0 and out == f"wrote {a / 'plot.png'}\n"
    assert (a / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # never replaced without --overwrite
    code, _, err = run_cli(capsys, "plot", str(a))
    assert code == 2 and "exists; pass --overwrite" in err
    assert run_cli(capsys, "plot", str(a), "--overwrite")[0] == 0
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "plot", str(a), str(b))
    assert code == 0 and out == "wrote plot.png\n" and (tmp_path / "plot.png").is_file()
    code, out, _ = run_cli(capsys, "plot", str(a), str(b), "--out", "figs/two.png")
    assert code == 0 and (tmp_path / "figs" / "two.png").is_file()


def test_plot_refuses_what_is_no_run(capsys, runs, tmp_path) -> None:
    a, _ = runs
    code, _, err = run_cli(capsys, "plot", str(a), str(tmp_path))
    assert code == 2 and f"not: {tmp_path}" in err and "PRESET DIR" in err
    code, _, err = run_cli(capsys, "plot", "table1", str(a))
    assert code == 2 and f"plot it with `tailor plot {a}`" in err
    code, _, err = run_cli(capsys, "plot", "table1", str(tmp_path))
    assert code == 2 and "no finished table1 jobs" in err


# ---- the slow-path notice -----------------------------------------------------------------------


def test_slow_path_notice_once_per_ppo_run(capsys, tmp_path) -> None:
    from tailor.envs import get_task
    from tailor.envs.backends import has_fast_path

    tasks = tmp_path / "pendulum.py"
    tasks.write_text(
        "from tailor.envs import Task, register_task\n"
        "register_task(Task(name='pendulum-still-notice', env_id='Pendulum-v1',\n"
        "    addon=lambda env, action, info: -abs(env.unwrapped.state[1]),\n"
        "    statistic=lambda env, action, info: abs(env.unwrapped.state[1])))\n"
    )
    fast = ["--num-envs", "2", "--num-steps", "16", "--no-progress", "--method", "soft"]
    argv = ["train", "--tasks-file", str(tasks), "--task", "pendulum-still-notice", *fast]
    code, _, err = run_cli(capsys, *argv, "--steps", "32", "--out", str(tmp_path / "w"))
    assert code == 0
    assert err.count("no fast path") == 1 and "--resume of this run will not" in err, err
    assert len(err.strip().splitlines()) == 1
    assert not has_fast_path(get_task("pendulum-still-notice"))
    code, _, err = run_cli(capsys, "train", "--resume", str(tmp_path / "w"), "--steps", "64")
    assert code == 0 and err.count("no fast path") == 1, err
    assert has_fast_path(get_task("pointmass"))
    argv = ["train", "--task", "pointmass", *fast, "--steps", "32", "--out", str(tmp_path / "p")]
    code, _, err = run_cli(capsys, *argv)
    assert code == 0 and "no fast path" not in err


# ---- the shipped priors in an installed package -------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_find_prior_redirects_only_missing_shipped_paths(tmp_path, monkeypatch) -> None:
    from tailor.shipped import REPOSITORY_PRIORS, find_prior

    monkeypatch.chdir(ROOT)
    assert find_prior("priors/hopper") == Path("priors/hopper")  # the repository's, as given
    monkeypatch.chdir(tmp_path)  # outside the repository
    assert find_prior("priors/hopper") == REPOSITORY_PRIORS / "hopper"
    assert (find_prior("priors/hopper") / "policy.safetensors").is_file()
    assert find_prior("priors/hopper/policy.safetensors").is_file()
    for other in ("priors/nope", "mine/hopper", str(tmp_path / "priors" / "hopper")):
        assert str(find_prior(other)) == other  # the caller's "does not exist"
    (tmp_path / "priors" / "hopper").mkdir(parents=True)  # a priors/ of your own wins
    assert find_prior("priors/hopper").resolve() == (tmp_path / "priors" / "hopper")
    from tailor.cli.args import prior_path

    assert prior_path("priors/ant") == str(REPOSITORY_PRIORS / "ant")


def test_build_copies_the_priors_into_the_package(tmp_path) -> None:
    import importlib.util

    from setuptools.dist import Distribution

    spec = importlib.util.spec_from_file_location("tailor_setup", ROOT / "setup.py")
    setup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup)  # defines the hook; setup() runs only as __main__
    cmd = setup.BuildPyWithPriors(Distribution({"name": "tailor-rl", "packages": []}))
    cmd.initialize_options()
    cmd.build_lib = str(tmp_path)
    cmd.finalize_options()
    cmd.run()
    shipped = tmp_path / "tailor" / "shipped_priors"
    for name in ("ant", "halfcheetah", "hopper"):
        assert (shipped / name / "policy.safetensors").is_file()
    assert (shipped / "lm-names" / "model.safetensors").is_file()
    assert "graft priors" in (ROOT / "MANIFEST.in").read_text().split("\n")  # in the sdist too


def test_demo_hint_names_the_task(capsys, tmp_path) -> None:
    missing = tmp_path / "nope"
    argv = ["demo", "--task", "hopper-jump", "--prior", str(missing), "--no-verify", "--no-video"]
    code, _, err = run_cli(capsys, *argv, "--out", str(tmp_path / "d"))
    assert code == 2
    assert f"tailor train --task hopper-jump --method soft --steps 5000000 --out {missing}" in err
