"""`tailor sweep --task`: a user's own grid x seeds, through the presets' job machinery."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tailor.cli import main
from tailor.errors import TailorError
from tailor.experiments import run
from tailor.experiments.grid import GridSpec, grid_jobs, grid_summary, parse_grid
from tailor.experiments.presets import Job
from tailor.experiments.sweep import LOCKS_DIR, RESULT_FILE, job_state, run_job, run_sweep

TINY = ["num_envs=8", "num_steps=16", "num_minibatches=1", "tensorboard=false"]


def _tasks_file(path: Path, name: str = "pointmass-user", extra: str = "") -> Path:
    """A user task: the point mass under another name (what a worker must load to run it)."""
    path.write_text(
        "import dataclasses\n"
        "from tailor.envs import get_task, register_task\n"
        "base = get_task('pointmass')\n"
        f"register_task(dataclasses.replace(base, name={name!r}, coefficients={{}}))\n" + extra
    )
    return path


@pytest.fixture(scope="module")
def user_prior(tmp_path_factory) -> tuple[Path, Path]:
    """``(tasks file, prior)``: a prior trained in about a second on the user's task."""
    root = tmp_path_factory.mktemp("user")
    tasks = _tasks_file(root / "my_tasks.py")
    run.load_user_tasks(tasks)
    prior = run.train_prior("pointmass-user", "ppo", 512, 0, root / "prior", log=None,
                            num_envs=8, num_steps=16, tensorboard=False)  # fmt: skip
    return tasks, prior


# --- the grid ---------------------------------------------------------------------------------


def test_parse_grid_types_each_value_by_its_field() -> None:
    grid = parse_grid(["omega_prime=0.01,1", "num_envs=8", "normalize_obs=false,True"], "customize")
    assert grid == (("omega_prime", (0.01, 1.0)), ("num_envs", (8,)),
                    ("normalize_obs", (False, True)))  # fmt: skip
    assert type(grid[0][1][1]) is float and type(grid[1][1][0]) is int
    assert parse_grid(["alpha=0.2"], "train") == (("alpha", (0.2,)),)
    bad = {
        "omega_prime": "KEY=V1,V2",
        "omega_prime=0.1,,1": "KEY=V1,V2",
        "num_envs=8.5": "'8.5' is not an integer",
        "alpha_hat=nan": "not a finite number",
        "normalize_obs=maybe": "true or false",
        "seed=1,2": "set by --seeds",
        "hidden=64": "cannot be a grid key",
        "omega_prime=0.1,0.1": "listed twice",
        "lr=0.1": "not a grid key; known: omega_prime, alpha_hat, omega, activation",
        "alpha=0.1": "a coefficient of training from scratch",
    }
    for item, words in bad.items():
        with pytest.raises(TailorError, match=words.replace("(", r"\(")):
            parse_grid([item], "customize")
    with pytest.raises(TailorError, match="given twice"):
        parse_grid(["omega_prime=1", "omega_prime=2"], "customize")
    with pytest.raises(TailorError, match="coefficient of a customization"):
        parse_grid(["omega_prime=1"], "train")


def test_grid_jobs_are_every_point_times_every_seed(tmp_path) -> None:
    grid = parse_grid(["omega_prime=0.01,0.1,1", "alpha_hat=0.1,0.2", "num_envs=8"], "customize")
    spec = GridSpec("pointmass", "residual", 2000, prior=str(tmp_path), grid=grid, seeds=(0, 1))
    jobs = grid_jobs(spec)
    assert len(jobs) == 3 * 2 * 2 and len({j.id for j in jobs}) == len(jobs)
    # the first key varies slowest, seeds innermost
    assert [(dict(j.ppo)["omega_prime"], dict(j.ppo)["alpha_hat"], j.seed) for j in jobs[:5]] == [
        (0.01, 0.1, 0), (0.01, 0.1, 1), (0.01, 0.2, 0), (0.01, 0.2, 1), (0.1, 0.1, 0)
    ]  # fmt: skip
    assert jobs[0].id == (
        f"pointmass/residual-2k-from-{tmp_path.name}-omega_prime0.01-alpha_hat0.1-num_envs8-seed0"
    )
    assert all(j.kind == "customize" and j.prior == str(tmp_path) for j in jobs)
    # from scratch, no grid: one job per seed
    (job,) = grid_jobs(GridSpec("pointmass", "soft", 2000))
    assert job.kind == "train" and job.ppo == () and job.id == "pointmass/soft-global-2k-seed0"


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (
            dict(method="residual", grid=(("alpha_hat", (0.1, -1.0)),)),
            "alpha_hat is an entropy temperature and must be >= 0",
        ),
        (dict(method="greedy", grid=(("omega_prime", (0.1,)),)), "greedy"),
        (dict(method="residual", grid=(("num_envs", (0,)),)), "PPOConfig.num_envs"),
        (dict(method="soft"), "'soft' trains from scratch"),
        (dict(method="residual", seeds=(0, 0)), "distinct seeds"),
        (dict(method="residual", task="no-such-task"), "unknown task"),
    ],
)
def test_grid_jobs_refuse_a_bad_point_before_any_job(tmp_path, spec, words) -> None:
    spec = {"task": "pointmass", "steps": 2048, "prior": str(tmp_path), **spec}
    with pytest.raises(TailorError, match=words):
        grid_jobs(GridSpec(**spec))


def _fake_result(out: Path, job: Job, addon: float, kl_rows: list[tuple[float, float]]) -> None:
    """A finished job's result.json (evaluation means) and metrics.csv (entropy, logp_prior)."""
    d = out / job.id
    d.mkdir(parents=True)
    ev = {
        k: {"mean": v, "std": 0.0}
        for k, v in {
            "total": addon - 10,
            "basic": -10.0,
            "addon": addon,
            "statistic": -addon,
        }.items()
    }
    ev["per_episode"] = {"total": [addon - 10], "basic": [-10.0]}  # fmt: skip
    ev["episodes"] = 1
    (d / RESULT_FILE).write_text(json.dumps({"id": job.id, "eval": ev, "eval_best": None}))
    rows = "".join(f"{i},{e},{p}\n" for i, (e, p) in enumerate(kl_rows))
    (d / "metrics.csv").write_text("iteration,entropy,logp_prior\n" + rows)


def test_grid_summary_pools_the_seeds_of_each_point(tmp_path) -> None:
    grid = (("omega_prime", (0.1, 1.0)), ("num_envs", (8,)))
    spec = GridSpec("pointmass", "residual", 2048, prior=str(tmp_path / "p"), grid=grid,
                    seeds=(0, 1), episodes=1)  # fmt: skip
    (tmp_path / "p").mkdir()
    jobs = grid_jobs(spec)
    # omega_prime=0.1: add-on 1 and 3 -> mean 2, sample sd sqrt(2) = 1.41 (total = add-on - 10,
    # statistic = -add-on alike). KL held = the mean of -entropy - logp_prior over a run's rows:
    # seed 0: (1 - 0.5 + 2 - 0.5) / 2 = 1, seed 1: 4 - 1 = 3 -> 2 ± 1.41.
    # omega_prime=1: one seed finished: add-on 5, KL 0 + 0.25, no sd.
    _fake_result(tmp_path, jobs[0], 1.0, [(-1.0, 0.5), (-2.0, 0.5)])
    _fake_result(tmp_path, jobs[1], 3.0, [(-4.0, 1.0)])
    _fake_result(tmp_path, jobs[2], 5.0, [(0.0, -0.25)])
    text = grid_summary(spec, jobs, tmp_path)
    assert "fixed: num_envs=8" in text
    assert (
        "| omega_prime=0.1 | 2/2 | -8 ± 1.41 | -10 ± 0 | 2 ± 1.41 | -2 ± 1.41 | 2 ± 1.41 |" in text
    )
    assert "| omega_prime=1.0 | 1/2 | -5 | -10 | 5 | -5 | 0.25 |" in text


# --- end to end -------------------------------------------------------------------------------


def test_cli_user_sweep_with_a_user_task_and_prior(tmp_path, user_prior, capsys) -> None:
    tasks, prior = user_prior
    out = tmp_path / "sweep"
    argv = ["sweep", "--task", "pointmass-user", "--tasks-file", str(tasks), "--prior",
            str(prior), "--grid", "omega_prime=0.01,1", *[x for t in TINY for x in ("--grid", t)],
            "--steps", "512", "--episodes", "2", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "| omega_prime=0.01 | 1/1 |" in text and "| omega_prime=1.0 | 1/1 |" in text
    assert (out / "summary.md").read_text() in text
    runs = sorted(out.glob("pointmass-user/*/result.json"))
    assert len(runs) == 2
    for path in runs:
        record = json.loads(path.read_text())
        # workers get absolute paths, and each run trained with its grid point's coefficient
        assert record["job"]["tasks_file"] == str(tasks.resolve())
        assert record["job"]["prior"] == str(prior.resolve())
        want = dict(map(tuple, record["job"]["ppo"]))["omega_prime"]
        assert run.read_ppo_run(path.parent)["coefficients"]["omega_prime"] == want
        assert (out / LOCKS_DIR / record["id"] / ".lock").is_file()  # the job lock was taken
    # A rerun trains nothing and prints the same table; --list says every job is finished.
    mtimes = [p.stat().st_mtime_ns for p in runs]
    assert main(argv) == 0
    assert "2 already finished, 0 to run" in capsys.readouterr().out
    assert mtimes == [p.stat().st_mtime_ns for p in runs]
    assert main([*argv, "--list"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2 jobs: 2 finished"


def test_cli_user_sweep_refuses_mixed_or_missing_flags(tmp_path, capsys) -> None:
    out = ["--out", str(tmp_path)]
    cases = {
        ("table1", "--task", "pointmass"): "not both",
        (): "give a PRESET",
        ("table1", "--grid", "alpha=1"): "--grid: for your own sweep",
        ("--task", "pointmass", "--budget", "smoke", "--steps", "8"): "--budget: for a preset",
        ("--task", "pointmass"): "needs --steps",
        ("--task", "pointmass", "--prior", "a", "--prior", "b", "--steps", "8"): "one --prior",
        ("--task", "pointmass", "--method", "kl", "--steps", "8"): "'kl' customizes a prior",
    }
    for argv, words in cases.items():
        assert main(["sweep", *argv, *out]) == 2, argv
        assert words in capsys.readouterr().err, argv


def test_ray_retry_of_a_lost_worker_resumes_from_its_checkpoint(tmp_path, user_prior, monkeypatch):
    """A Ray worker that dies mid-job (a lost node, an OOM kill) is not a failed job: Ray runs the
    task again (RAY_RETRIES) and the job continues from the checkpoint the dead worker committed,
    ending with the numbers of an uninterrupted run. The job's task comes from a tasks file that
    the worker loads (Job.tasks_file); it also kills its worker once, right after the run's
    second checkpoint is committed."""
    pytest.importorskip("ray")
    import tailor.rundir.faults

    monkeypatch.setattr(tailor.rundir.faults, "hook", None)  # restored: the file sets it here too
    _, prior = user_prior
    mark = tmp_path / "died-once"
    dying = _tasks_file(tmp_path / "dying_tasks.py", "pointmass-dying", (
        "import os\n"
        "from pathlib import Path\n"
        "import tailor.rundir.faults\n"
        "seen = []\n"
        "def die_once(point):\n"
        f"    if os.getpid() == {os.getpid()} or point != 'retained':  # not in the test itself\n"
        "        return\n"
        "    seen.append(point)\n"
        f"    if len(seen) == 2 and not Path({str(mark)!r}).exists():\n"
        f"        Path({str(mark)!r}).write_text('x')\n"
        "        os._exit(1)  # the worker process dies, as on a lost node\n"
        "tailor.rundir.faults.hook = die_once\n"
    ))  # fmt: skip
    spec = GridSpec("pointmass-dying", "residual", 8 * 16 * 6, prior=str(prior), episodes=2,
                    grid=parse_grid(["omega_prime=0.05", *TINY], "customize"),
                    tasks_file=str(dying))  # fmt: skip
    (job,) = grid_jobs(spec)
    report = run_sweep([job], tmp_path / "ray", workers=1, backend="ray", log=None)
    assert mark.exists()  # the first attempt died
    assert report.done == [job.id] and report.failed == {}
    record = json.loads((tmp_path / "ray" / job.id / RESULT_FILE).read_text())
    assert record["resumed_at_step"] == 2 * 8 * 16  # its second checkpoint, not step 0
    straight = run_job(job, tmp_path / "straight")  # here: the hook spares the test's process
    assert straight["resumed_at_step"] is None
    for key in ("total", "basic", "addon"):
        assert record["eval"][key] == straight["eval"][key]
    metrics = [(tmp_path / d / job.id / "metrics.csv").read_text().splitlines() for d in
               ("ray", "straight")]  # fmt: skip
    # the same rows (wall-clock columns dropped)
    assert [r.split(",")[:-2] for r in metrics[0]] == [r.split(",")[:-2] for r in metrics[1]]
    assert job_state(job, tmp_path / "ray") == ("finished", "")
