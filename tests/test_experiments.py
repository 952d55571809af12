"""tailor.experiments: preset expansion, the sweep runner (local and Ray), tables and plots."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest

from tailor.cli import main
from tailor.errors import TailorError
from tailor.experiments import run, runners
from tailor.experiments.presets import BUDGETS, Job, expand, select
from tailor.experiments.sweep import (
    FAILED_FILE,
    RESULT_FILE,
    _resumable,
    job_state,
    load_results,
    reselect_best,
    run_job,
    run_sweep,
)
from tailor.experiments.tables import cell, preset_table

# Two PPO iterations of 8 envs x 16 steps on the point mass: a job takes about a second.
TINY = (("num_envs", 8), ("num_steps", 16), ("num_minibatches", 1), ("tensorboard", False))


def tiny_jobs(seeds=(0, 1)) -> list[Job]:
    return [Job("train", "pointmass", "soft", s, steps=256, episodes=2, ppo=TINY) for s in seeds]


# --- presets ---------------------------------------------------------------------------------


def test_table1_expands_to_every_method_task_and_seed():
    jobs = expand("table1", "local")
    budget = BUDGETS["local"]
    assert len(jobs) == 4 * 3 * len(budget.seeds)
    assert len({j.id for j in jobs}) == len(jobs)
    assert {j.method for j in jobs} == {"no-entropy", "end-entropy", "repeat-entropy", "soft"}
    assert {j.kind for j in jobs} == {"train"}
    assert all(j.steps == budget.train_steps and j.episodes == budget.episodes for j in jobs)
    assert "hopper-jump/soft-global-150k-seed1" in {j.id for j in jobs}


def test_table2_has_prior_customizations_and_full_policy(tmp_path):
    jobs = expand("table2", "paper")
    assert len(jobs) == 5 * 3 * 5  # (prior, greedy, kl, residual, full) x 3 tasks x 5 seeds
    kinds = {(j.kind, j.method) for j in jobs}
    assert kinds == {
        ("prior", "prior"),
        ("customize", "greedy"),
        ("customize", "kl"),
        ("customize", "residual"),
        ("train", "full"),
    }
    custom = [j for j in jobs if j.kind == "customize"]
    assert all(Path(j.prior).is_absolute() and j.steps == 5_000_000 for j in custom)
    assert {j.episodes for j in jobs} == {100}  # 5 seeds x 100 = the paper's 500 episodes
    # An override changes the prior and therefore the jobs' identity.
    other = expand("table2", "paper", {"hopper-jump": str(tmp_path)})
    assert {j.id for j in other} != {j.id for j in jobs}
    with pytest.raises(TailorError, match="not a task of table2"):
        expand("table2", "local", {"walker": "x"})


def test_table3_shares_its_global_runs_with_table1():
    t1 = {j.id for j in expand("table1", "local")}
    t3 = expand("table3", "local")
    assert {j.std_type for j in t3} == {"global", "state"}
    shared = {j.id for j in t3 if j.std_type == "global"}
    assert shared and shared <= t1
    assert not {j.id for j in t3 if j.std_type == "state"} & t1


def test_unknown_preset_and_budget():
    with pytest.raises(TailorError, match="unknown preset"):
        expand("table9", "local")
    with pytest.raises(TailorError, match="unknown budget"):
        expand("table1", "huge")


# --- the sweep runner -------------------------------------------------------------------------


def test_sweep_resume_skips_finished_jobs_and_records_failures(tmp_path):
    bad = Job("train", "no-such-task", "soft", 0, steps=256, episodes=2, ppo=TINY)
    jobs = [*tiny_jobs(), bad]
    lines: list[str] = []
    report = run_sweep(jobs, tmp_path, workers=2, log=lines.append)
    # The failing job is recorded; the others finish regardless.
    assert sorted(report.done) == sorted(j.id for j in tiny_jobs())
    assert list(report.failed) == [bad.id] and "unknown task" in report.failed[bad.id]
    failure = json.loads((tmp_path / bad.id / FAILED_FILE).read_text())
    assert "TailorError" in failure["traceback"]
    for job in tiny_jobs():
        result = json.loads((tmp_path / job.id / RESULT_FILE).read_text())
        assert result["eval"]["episodes"] == 2 and result["job"]["seed"] == job.seed
        assert (tmp_path / job.id / "metrics.csv").is_file()
    assert any("FAILED" in line for line in lines) and any("[3/3]" in line for line in lines)
    mtimes = {j.id: (tmp_path / j.id / RESULT_FILE).stat().st_mtime_ns for j in tiny_jobs()}
    assert job_state(bad, tmp_path) == ("failed", f"see {tmp_path / bad.id / FAILED_FILE}")
    assert job_state(tiny_jobs()[0], tmp_path) == ("finished", "")
    assert job_state(dataclasses.replace(bad, seed=7), tmp_path) == ("to run", "")

    # Rerun: finished jobs are skipped (their results untouched), the failed one is retried.
    report = run_sweep(jobs, tmp_path, workers=1, log=None)
    assert sorted(report.skipped) == sorted(mtimes) and report.done == []
    assert list(report.failed) == [bad.id]
    assert mtimes == {i: (tmp_path / i / RESULT_FILE).stat().st_mtime_ns for i in mtimes}
    log = [json.loads(x) for x in (tmp_path / "sweeps.jsonl").read_text().splitlines()]
    assert [(e["done"], e["skipped"]) for e in log] == [(2, 0), (0, 2)]


def test_a_job_is_deterministic(tmp_path):
    (job,) = tiny_jobs(seeds=(3,))
    a = run_job(job, tmp_path / "a")["eval"]["per_episode"]
    b = run_job(job, tmp_path / "b")["eval"]["per_episode"]
    assert a == b
    # Running it again in the same place starts the run over instead of mixing two sessions.
    assert run_job(job, tmp_path / "a")["eval"]["per_episode"] == a


def test_an_invalid_result_is_rerun_not_skipped(tmp_path):
    (job,) = tiny_jobs(seeds=(0,))
    run_sweep([job], tmp_path, log=None)
    result = tmp_path / job.id / RESULT_FILE
    good = json.loads(result.read_text())
    # A truncated result.json: listed as invalid, rerun (continuing from the run's own final
    # checkpoint: only the evaluation runs again), ending with the same numbers.
    result.write_text(result.read_text()[:200])
    state, detail = job_state(job, tmp_path)
    assert state == "invalid" and "not valid JSON" in detail
    report = run_sweep([job], tmp_path, log=None)
    assert report.done == [job.id] and report.skipped == []
    again = json.loads(result.read_text())
    assert again["eval"]["per_episode"] == good["eval"]["per_episode"]
    assert again["resumed_at_step"] == job.steps
    # A result without its evaluation, and one whose metrics.csv lost its rows.
    result.write_text(json.dumps({"id": job.id}))
    assert job_state(job, tmp_path)[0] == "invalid"
    with pytest.raises(TailorError, match=r"result.json.*lacks the field 'eval'.*rerun"):
        load_results([job], tmp_path)
    result.write_text(json.dumps(good))
    assert job_state(job, tmp_path) == ("finished", "")
    metrics = tmp_path / job.id / "metrics.csv"
    metrics.write_text(metrics.read_text().splitlines()[0] + "\n")
    state, detail = job_state(job, tmp_path)
    assert state == "invalid" and "metrics.csv' has no rows" in detail


def test_a_job_another_sweep_runs_is_left_to_it(tmp_path):
    """Two sweeps on one --out: a job whose lock another process holds is neither run nor
    touched (its directory is not removed) nor recorded as failed; the lock is taken before
    anything in the job's directory."""
    from tailor.experiments.sweep import LOCKS_DIR
    from tailor.rundir.lock import held

    a, b = tiny_jobs()
    (tmp_path / a.id).mkdir(parents=True)
    (tmp_path / a.id / "marker").write_text("the other sweep's work")
    with held(tmp_path / LOCKS_DIR / a.id, "held by this test"):
        state, detail = job_state(a, tmp_path)
        assert state == "running" and f"pid {os.getpid()}" in detail
        lines: list[str] = []
        report = run_sweep([a, b], tmp_path, log=lines.append)
        assert report.done == [b.id] and report.failed == {} and list(report.busy) == [a.id]
        assert (tmp_path / a.id / "marker").read_text() == "the other sweep's work"
        assert not (tmp_path / a.id / FAILED_FILE).exists()
        busy = f"skipped {a.id}: job {a.id} is being run by another process"
        assert any(busy in line for line in lines)
    report = run_sweep([a, b], tmp_path, log=None)  # released: this sweep runs it
    assert report.done == [a.id] and report.skipped == [b.id]


def test_a_job_whose_directory_is_replaced_mid_run_fails(tmp_path, monkeypatch):
    (job,) = tiny_jobs(seeds=(0,))
    real = run.train_prior

    def train_then_vanish(*args, **kwargs):
        out = real(*args, **kwargs)
        shutil.rmtree(out)  # another process removes the job directory ...
        Path(out).mkdir()  # ... and something recreates it
        return out

    monkeypatch.setattr(run, "train_prior", train_then_vanish)
    with pytest.raises(TailorError, match="was removed and recreated while the job ran"):
        run_job(job, tmp_path)
    assert not (tmp_path / job.id / RESULT_FILE).exists()
    assert job_state(job, tmp_path) == ("to run", "")


def test_sweep_rejects_bad_arguments(tmp_path):
    with pytest.raises(TailorError, match="backend"):
        run_sweep(tiny_jobs(), tmp_path, backend="slurm")
    with pytest.raises(TailorError, match="--address"):
        run_sweep(tiny_jobs(), tmp_path, address="auto")
    with pytest.raises(TailorError, match="same id"):
        run_sweep(tiny_jobs(seeds=(0, 0)), tmp_path)


def test_ray_backend_end_to_end(tmp_path):
    pytest.importorskip("ray")
    bad = Job("train", "no-such-task", "soft", 0, steps=256, episodes=2, ppo=TINY)
    lines: list[str] = []
    report = run_sweep([*tiny_jobs(), bad], tmp_path, workers=2, backend="ray", log=lines.append)
    assert "ray: 2 CPU slot(s) on 1 node(s): up to 2 jobs at once" in lines
    assert sorted(report.done) == sorted(j.id for j in tiny_jobs())
    assert list(report.failed) == [bad.id]
    for job in tiny_jobs():
        assert json.loads((tmp_path / job.id / RESULT_FILE).read_text())["id"] == job.id


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (ConnectionError("InvalidAuthToken: missing token"), "RAY_AUTH_TOKEN=<token>"),
        (ConnectionError("Unauthenticated: bad bearer"), "ray get-auth-token"),
        (ConnectionError("GCS did not answer"), "cannot start on the Ray cluster at 'h:1'"),
    ],
)
def test_ray_start_errors_say_what_to_do(error, words):
    from tailor.experiments.sweep import _ray_start_error

    assert words in str(_ray_start_error(error, "h:1"))


def test_a_local_ray_start_beside_a_running_cluster_names_it():
    from tailor.experiments.sweep import _ray_start_error

    # Ray 2.60's words when ray.init(num_cpus=...) finds a cluster that `ray start` began
    error = ValueError(
        "When connecting to an existing cluster, num_cpus and num_gpus must not be provided."
    )
    text = str(_ray_start_error(error, None))
    assert "pass --address auto to run on it, or end it with `ray stop`" in text
    assert "cannot start on" in str(_ray_start_error(error, "h:1"))  # an address: Ray's words


# --- tables and plots from a fixture of result files ------------------------------------------


def _fake_result(out: Path, job: Job, per_episode: dict[str, list[float]]) -> None:
    d = out / job.id
    d.mkdir(parents=True)
    ev = {k: {"mean": sum(v) / len(v), "std": 0.0} for k, v in per_episode.items()}
    ev["per_episode"] = per_episode
    (d / RESULT_FILE).write_text(json.dumps({"id": job.id, "job": job.to_json(), "eval": ev}))
    rows = ["iteration,steps,phase,return_basic,return_addon"]
    rows += [f"{i},{1000 * i},ppo,{10.0 * i + job.seed},{-float(i)}" for i in range(1, 6)]
    (d / "metrics.csv").write_text("\n".join(rows) + "\n")


def _episodes(basic: list[float], addon: list[float]) -> dict[str, list[float]]:
    total = [b + a for b, a in zip(basic, addon, strict=True)]
    return {"total": total, "basic": basic, "addon": addon, "statistic": [0.5] * len(basic)}


def test_cell_pools_seeds_and_picks_the_best_seed():
    results = [
        {"job": {"seed": 0}, "eval": {"per_episode": {"basic": [1.0, 3.0]}}},
        {"job": {"seed": 1}, "eval": {"per_episode": {"basic": [5.0, 7.0]}}},
    ]
    c = cell(results, "basic", "basic")
    assert c["avg"] == pytest.approx((4.0, 5.0**0.5))  # pooled: 1, 3, 5, 7
    assert c["best"] == pytest.approx((6.0, 1.0)) and c["best_seed"] == 1
    assert c["seeds"] == 2 and c["episodes"] == 4
    assert cell([], "basic", "basic") is None


def test_table1_markdown_from_fixture(tmp_path):
    jobs = {j.id: j for j in expand("table1", "local")}
    soft0, soft1 = (jobs[f"hopper-jump/soft-global-150k-seed{s}"] for s in (0, 1))
    _fake_result(tmp_path, soft0, _episodes([1000.0, 3000.0], [1.0, 1.0]))
    _fake_result(tmp_path, soft1, _episodes([5000.0, 7000.0], [1.0, 1.0]))
    _fake_result(
        tmp_path, jobs["ant-sideways/no-entropy-global-150k-seed0"], _episodes([10.0], [0.0])
    )
    text = preset_table("table1", tmp_path, "local")
    row = next(r for r in text.splitlines() if r.startswith("| hopper-jump | Soft PPO |"))
    assert row == (
        "| hopper-jump | Soft PPO | 4000.0 ± 2236.1 | 3105.3 ± 829.5 | 6000.0 ± 1000.0 (seed 1) "
        "| 3689.4 ± 29.2 |"
    )
    partial = next(r for r in text.splitlines() if r.startswith("| ant-sideways | No-Entropy"))
    assert "10.0 ± 0.0 (1/2 seeds)" in partial and "3918.9 ± 1032.9" in partial
    missing = next(r for r in text.splitlines() if r.startswith("| hopper-jump | No-Entropy"))
    assert missing.split(" | ")[2] == "-"
    assert "Finished jobs: 3/24" in text


def test_table2_and_plots_from_fixture(tmp_path):
    for job in expand("table2", "local"):
        if job.task == "hopper-jump":
            basic = {"prior": 3000.0, "residual": 2900.0}.get(job.method, 1000.0) + job.seed
            _fake_result(tmp_path, job, _episodes([basic, basic], [1500.0, 1500.0]))
    text = preset_table("table2", tmp_path, "local")
    row = next(r for r in text.splitlines() if r.startswith("| hopper-jump | Residual PPO |"))
    assert "4400.5 ± 0.5 | 4401.4 ± 505.3 | 2900.5 ± 0.5 | 2951.6 ± 333.5" in row
    assert "(seed 1)" in text and "| halfcheetah-hindleg | KL PPO | - |" in text

    assert main(["plot", "table2", str(tmp_path), "--out", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / "table2-curves.png").stat().st_size > 10_000
    assert (tmp_path / "p" / "table2-tradeoff.png").stat().st_size > 10_000


def _metrics(run_dir: Path) -> list[dict[str, str]]:
    import csv

    with open(run_dir / "metrics.csv", newline="") as f:  # wall-clock columns left out
        return [
            {k: v for k, v in r.items() if k not in ("sps", "wall_s")} for r in csv.DictReader(f)
        ]


@pytest.mark.parametrize("kind", ["train", "customize"])
def test_a_killed_job_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_one(
    tmp_path, monkeypatch, kind
):
    if kind == "train":
        job = Job("train", "pointmass", "soft", 0, steps=8 * 16 * 6, episodes=2, ppo=TINY)
    else:
        prior = tmp_path / "prior"
        run.train_prior("pointmass", "ppo", 512, 0, prior, log=None, num_envs=8, num_steps=16,
                        tensorboard=False)  # fmt: skip
        job = Job("customize", "pointmass", "residual", 0, steps=8 * 16 * 6, episodes=2,
                  prior=str(prior), ppo=TINY)  # fmt: skip
    straight = run_job(job, tmp_path / "straight")
    real_train = runners.train_ppo

    def killed_after_two_iterations(*args, **kwargs):
        real_train(*args, **kwargs, callback=lambda row: row["iteration"] >= 2)
        raise RuntimeError("killed")  # the session ends with a checkpoint on disk

    monkeypatch.setattr(runners, "train_ppo", killed_after_two_iterations)
    with pytest.raises(RuntimeError, match="killed"):
        run_job(job, tmp_path / "split")
    monkeypatch.setattr(runners, "train_ppo", real_train)
    job_dir = tmp_path / "split" / job.id
    assert len(_metrics(job_dir)) == 2 and _resumable(job, tmp_path / "split") == 2 * 8 * 16
    # Another job's directory is not continued (here: another seed), nor a finished one.
    assert _resumable(dataclasses.replace(job, seed=1), tmp_path / "split") is None
    assert _resumable(job, tmp_path / "straight") is None
    # `tailor sweep --list` says so (the lock was released when the run raised).
    assert job_state(job, tmp_path / "split") == (
        "partial", "continues from its checkpoint at step 256 of 768"
    )  # fmt: skip
    assert straight["resumed_at_step"] is None
    resumed = []
    real_resume = run.resume
    monkeypatch.setattr(run, "resume", lambda *a, **k: resumed.append(a) or real_resume(*a, **k))
    record = run_job(job, tmp_path / "split")
    assert len(resumed) == 1 and record["resumed_at_step"] == 2 * 8 * 16
    assert _metrics(job_dir) == _metrics(tmp_path / "straight" / job.id)
    for key in ("total", "basic", "addon"):
        assert record["eval"][key] == straight["eval"][key]
        assert record["eval_best"][key] == straight["eval_best"][key]
    (job_dir / RESULT_FILE).unlink()  # as during the evaluation, after the run let its lock go
    assert job_state(job, tmp_path / "split")[0] == "trained"


def test_a_worker_ends_when_the_sweep_process_is_killed(tmp_path):
    """No orphan keeps training (and holding the job's lock) after `kill -9` of the sweep."""
    import os
    import signal
    import subprocess
    import sys
    import time

    job = Job("train", "pointmass", "soft", 0, steps=10**9, episodes=1, ppo=TINY)
    script = (
        "import json\n"
        "from tailor.experiments.presets import Job\n"
        "from tailor.experiments.sweep import run_sweep\n"
        "if __name__ == '__main__':\n"
        f"    job = Job.from_json(json.loads({json.dumps(job.to_json())!r}))\n"
        f"    run_sweep([job], {str(tmp_path)!r}, log=None)\n"
    )
    (tmp_path / "sweep.py").write_text(script)
    sweep = subprocess.Popen([sys.executable, str(tmp_path / "sweep.py")])
    pid_file = tmp_path / job.id / ".lock.pid"
    worker = None
    try:
        for _ in range(300):  # the worker takes the job's lock once it starts the run
            if pid_file.is_file() and pid_file.read_text().strip():
                worker = json.loads(pid_file.read_text())["pid"]
                break
            time.sleep(0.1)
        assert worker is not None and worker != sweep.pid
        state, holder = job_state(job, tmp_path)
        assert state == "running" and holder.startswith(f"pid {worker} ")
        sweep.send_signal(signal.SIGKILL)
        sweep.wait(10)
        for _ in range(100):
            try:
                os.kill(worker, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the worker outlived the sweep process by 10 s")
    finally:
        sweep.kill()
        if worker is not None:
            try:
                os.kill(worker, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_select_keeps_the_preset_jobs_it_names_in_their_order():
    jobs = expand("table2", "paper")
    some = select(jobs, tasks=["hopper-jump"], seeds=[2, 0], methods=["residual", "full"])
    assert [j.id for j in some] == [
        "hopper-jump/residual-5M-from-hopper-seed0",
        "hopper-jump/full-global-5M-seed0",
        "hopper-jump/residual-5M-from-hopper-seed2",
        "hopper-jump/full-global-5M-seed2",
    ]
    assert all(j in jobs for j in some)  # the same jobs, so the whole preset finds them finished
    assert select(jobs) == jobs
    state = select(expand("table3", "1m"), std_types=["state"])
    assert len(state) == 15 and {j.std_type for j in state} == {"state"}
    with pytest.raises(TailorError, match="no job has seed 5; the jobs have 0, 1, 2, 3, 4"):
        select(jobs, seeds=[0, 5])
    with pytest.raises(TailorError, match="no job has task walker"):
        select(jobs, tasks=["walker"])


# --- command line -----------------------------------------------------------------------------


def test_cli_sweep_list_table_and_errors(tmp_path, capsys):
    assert main(["sweep", "table3", "--budget", "smoke", "--out", str(tmp_path), "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 7 and all(x.startswith("to run") for x in lines[:6])
    assert lines[6] == "6 jobs: 6 to run"
    # A directory without results is an error, not a table of dashes (issue 13).
    assert main(["table", "table3", str(tmp_path), "--budget", "smoke"]) == 2
    assert "no finished table3 jobs (budget smoke)" in capsys.readouterr().err
    assert main(["plot", "table1", str(tmp_path)]) == 2
    assert "no finished table1 jobs" in capsys.readouterr().err
    assert main(["sweep", "table2", "--out", str(tmp_path), "--prior", "hopper-jump"]) == 2
    assert "TASK=PATH" in capsys.readouterr().err
    subset = ["--list", "--tasks", "hopper-jump", "--seeds", "0", "--std", "state"]
    assert main(["sweep", "table3", "--budget", "smoke", "--out", str(tmp_path), *subset]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "to run    hopper-jump/soft-state-8192-seed0", "1 job: 1 to run"
    ]  # fmt: skip
    assert main(["sweep", "table1", "--out", str(tmp_path), "--methods", "softer"]) == 2
    assert "no job has method softer" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "table1", "--out", str(tmp_path), "--seeds", "0,,1"])
    assert exc.value.code == 2 and "expected a comma-separated list" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # checked while parsing (tailor.cli.args)
        main(["sweep", "table1", "--out", str(tmp_path), "--workers", "0"])
    assert exc.value.code == 2 and "--workers: must be an integer >= 1" in capsys.readouterr().err


def test_a_job_reports_its_best_snapshot_beside_the_last(tmp_path):
    (job,) = tiny_jobs(seeds=(3,))
    record = run_job(job, tmp_path)
    best = record["best"]
    assert record["eval_best"]["episodes"] == record["eval"]["episodes"]
    # Chosen on selection episodes that are not the reported ones.
    assert best["selection_seed"] == job.eval_seed + run.SELECTION_SEED_OFFSET
    assert best["step"] == max(best["selection"], key=lambda s: s["total"])["step"]
    assert best["last_step"] == best["selection"][-1]["step"]


def test_best_checkpoint_picks_the_snapshot_with_the_best_selection_return(tmp_path):
    out = tmp_path / "r"
    run.train_prior("pointmass", "ppo", 2048, 0, out, log=None, num_envs=8, num_steps=32,
                    checkpoint_every=2, tensorboard=False)  # fmt: skip
    best = run.best_checkpoint(out, episodes=3, seed=7)
    steps = [s["step"] for s in best["selection"]]
    assert steps == [512, 1024, 1536, 2048]  # every kept snapshot, oldest first
    for snap in best["selection"]:  # the scores are the snapshots' own evaluations
        policy = out / "checkpoints" / f"step-{snap['step']}" / "policy.safetensors"
        assert run.evaluate(policy, episodes=3, seed=7)["total"]["mean"] == snap["total"]
    assert best["step"] == max(best["selection"], key=lambda s: s["total"])["step"]
    few = run.best_checkpoint(out, episodes=1, seed=7, max_candidates=2)
    assert [s["step"] for s in few["selection"]] == [512, 2048]
    with pytest.raises(TailorError, match="no policy snapshots"):
        run.best_checkpoint(tmp_path / "empty")


def test_cell_reads_the_best_checkpoint_and_falls_back_to_the_last():
    def record(seed, last, best):
        ev = {"per_episode": {"total": last}}
        return {
            "job": {"seed": seed},
            "eval": ev,
            "eval_best": best and {"per_episode": {"total": best}},
        }

    rs = [record(0, [1.0, 3.0], [5.0, 7.0]), record(1, [2.0, 2.0], None)]
    assert cell(rs, "total", "total")["avg"][0] == 2.0
    c = cell(rs, "total", "total", "eval_best")
    assert c["avg"][0] == (5.0 + 7.0 + 2.0 + 2.0) / 4 and c["best_seed"] == 0


def test_best_checkpoint_skips_snapshots_that_are_still_the_prior(tmp_path):
    # A customization's critic warm-up leaves the actor as the prior: those snapshots are not
    # candidates (choosing one would report the prior under the method's name).
    prior = run.train_prior("pointmass", "ppo", 1024, 0, tmp_path / "p", log=None, num_envs=8,
                            num_steps=32, tensorboard=False)  # fmt: skip
    out = tmp_path / "c"
    run.customize("pointmass", "ppo", prior, 2048, 0, out, method="greedy", log=None, num_envs=8,
                  num_steps=32, checkpoint_every=1, critic_warmup_fraction=0.5,
                  tensorboard=False)  # fmt: skip
    best = run.best_checkpoint(out, episodes=2, seed=7)
    snaps = [int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("step-*")]
    warm = [s for s in sorted(snaps) if s <= 1024]
    assert best["skipped_as_prior"] == warm and len(warm) == 4
    assert all(s["step"] > 1024 for s in best["selection"]) and best["step"] > 1024
    assert run.same_as_prior(out, out / "checkpoints" / f"step-{warm[0]}" / "policy.safetensors")
    assert not run.same_as_prior(out, out / "policy.safetensors")
    assert not run.same_as_prior(prior, prior / "policy.safetensors")  # no prior: a prior run
    # Without the run's own copy (sweep directories do not commit it) the prior's path serves.
    shutil.rmtree(out / "prior")
    snap = out / "checkpoints" / f"step-{warm[0]}" / "policy.safetensors"
    assert not run.same_as_prior(out, snap) and run.same_as_prior(out, snap, prior)


def test_reselect_best_replaces_a_recorded_prior_choice(tmp_path):
    prior = run.train_prior("pointmass", "ppo", 512, 0, tmp_path / "p", log=None, num_envs=8,
                            num_steps=16, tensorboard=False)  # fmt: skip
    warm = (("critic_warmup_fraction", 0.0),)
    job = Job("customize", "pointmass", "greedy", 0, steps=1024, episodes=2, prior=str(prior),
              ppo=TINY + warm)  # fmt: skip
    out = tmp_path / "sweep"
    run_job(job, out)
    job_dir = out / job.id
    path = job_dir / RESULT_FILE
    record = json.loads(path.read_text())
    # An older tailor's record: no skip list, and its choice a snapshot equal to the prior.
    first = record["best"]["selection"][0]["step"]
    snap = job_dir / "checkpoints" / f"step-{first}" / "policy.safetensors"
    snap.write_bytes((prior / "policy.safetensors").read_bytes())
    record["best"].pop("skipped_as_prior")
    record["best"]["step"] = first
    record["eval_best"] = None
    path.write_text(json.dumps(record))
    assert reselect_best(job, out)
    new = json.loads(path.read_text())
    rest = [s for s in new["best"]["selection"] if s["step"] != first]
    assert new["best"]["skipped_as_prior"] == [first] and new["best"]["reselected"]
    assert new["best"]["step"] == max(rest, key=lambda s: s["total"])["step"]
    assert new["eval_best"]["episodes"] == 2  # evaluated anew
    assert not reselect_best(job, out)  # already annotated: nothing to do


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_customize_reads_the_prior_once(tmp_path, monkeypatch, algo):
    """The entry point reads the prior (for the coefficient defaults) and hands the loaded prior
    to the runner: its policy file is read once per run, not once per use."""
    import tailor.policyfile

    task = "pointmass" if algo == "ppo" else "cartpole-centered"
    fast = (
        {"num_envs": 8, "num_steps": 16, "tensorboard": False}
        if algo == "ppo"
        else {"learning_starts": 50, "batch_size": 16, "hidden": (16, 16), "log_interval": 0}
    )
    prior = run.train_prior(task, algo, 128 if algo == "ppo" else 60, 0, tmp_path / "p",
                            log=None, **fast)  # fmt: skip
    real = tailor.policyfile.load_tensors
    reads: list[Path] = []

    def counting(path, expect_format):
        if Path(path).is_relative_to(prior):
            reads.append(Path(path))
        return real(path, expect_format)

    monkeypatch.setattr(tailor.policyfile, "load_tensors", counting)
    run.customize(task, algo, prior, 128 if algo == "ppo" else 60, 0, tmp_path / "c", log=None,
                  **fast)  # fmt: skip
    assert len(reads) == 1, reads


def test_entry_points_name_an_unknown_option(tmp_path):
    with pytest.raises(TailorError, match="unknown PPOConfig option"):
        run.train_prior("pointmass", "ppo", 64, 0, tmp_path / "x", log=None, nmu_envs=8)
    with pytest.raises(TailorError, match=r"lm_customize: unknown option\(s\) sed"):
        run.lm_customize(tmp_path / "prior", "kl", tmp_path / "y", reward="x", sed=1)
    with pytest.raises(TypeError, match="multiple values for argument 'omega_prime'"):
        run.customize("pointmass", "ppo", tmp_path, 64, 0, tmp_path / "z", 0.1, omega_prime=0.2)
