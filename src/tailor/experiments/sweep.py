"""Run a list of jobs once each, on worker processes or a Ray cluster; skip finished ones on rerun.

Layout of a sweep directory ``DIR``::

    DIR/<task>/<job name>/            the run (policy.safetensors, metrics.csv, tb/ ...)
    DIR/<task>/<job name>/result.json the job's evaluation; "finished" when it validates
                                      (RESULT_SCHEMA) and, for a trained job, metrics.csv has rows
    DIR/<task>/<job name>/failed.json the last failure (exception and traceback), if any
    DIR/sweeps.jsonl                  one line per sweep invocation: preset, budget, counts, wall
    DIR/.locks/<task>/<job name>/     the job's lock, held while a sweep runs it (before its
                                      directory is touched): two sweeps on one DIR share the
                                      jobs instead of running one twice

A job that raises is recorded in ``failed.json`` and the sweep goes on with the others; a rerun
tries failed and unfinished jobs again and skips finished ones. An unfinished job whose run
directory holds a checkpoint of the same run (a session killed mid-run) continues from it:
PPO's resume is exact (the same metrics and policy as an uninterrupted run, see
``tests/test_resume_exact.py``) as long as tailor and torch are the same, which is why long
sweeps run from a clone at a fixed commit; ``result.json`` records the step it resumed at.
Anything else is started over.

Backends: ``local`` runs ``workers`` spawned processes (one torch thread each); ``ray`` submits
the same function as Ray tasks (``num_cpus=1`` each) to ``ray.init(address)``, or to a local Ray
instance with ``workers`` CPUs when no address is given. On a multi-machine cluster ``DIR`` must be
a path every node can write (a shared filesystem), and tailor must be installed on every node.
A Ray task whose worker or node dies is run again (:data:`RAY_RETRIES`) on any node, and
:func:`run_job` continues the job from the last checkpoint the lost attempt committed in
``DIR`` (``tests/test_sweep_grid.py``; ``results/ray_two_node.md`` kills a node mid-job).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tailor.checkpoint import POLICY_FILE
from tailor.errors import TailorError
from tailor.experiments.presets import Job
from tailor.meta import Field, Schema, validate_meta
from tailor.output import write_json

__all__ = [
    "RESULT_FILE",
    "SweepReport",
    "check_ray_address",
    "finished_results",
    "job_state",
    "load_results",
    "run_job",
    "run_sweep",
]

RESULT_FILE = "result.json"
SNAPSHOTS = 40  # policy snapshots kept per run, for the best-checkpoint evaluation
FAILED_FILE = "failed.json"
LOG_FILE = "sweeps.jsonl"
LOCKS_DIR = ".locks"
METRICS_FILE = "metrics.csv"

_MEAN_STD = Field(
    (dict,), required=True, fields={k: Field((int, float), required=True) for k in ("mean", "std")}
)
_PER_EPISODE = Field(
    (dict,),
    required=True,
    fields={k: Field((list,), required=True, items=(int, float)) for k in ("total", "basic")},
)
EVAL_SCHEMA: Schema = {
    **{k: _MEAN_STD for k in ("total", "basic", "addon", "statistic")},
    "per_episode": _PER_EPISODE,
    "episodes": Field((int,), min=1),
}
# What tables and plots read from a result.json: anything less is not a finished job.
RESULT_SCHEMA: Schema = {
    "id": Field((str,), required=True),
    "eval": Field((dict,), required=True, fields=EVAL_SCHEMA),
    "eval_best": Field((dict,), nullable=True, fields=EVAL_SCHEMA),
}


def _write_json(path: Path, obj: Any) -> None:
    write_json(path, obj, indent=1)  # atomic: a reader never sees half a result


class JobBusy(TailorError):
    """Another process (a second sweep on the same directory) is running this job."""


def _job_lock(job: Job, out: str | Path) -> contextlib.AbstractContextManager[None]:
    """The job's lock in ``<out>/.locks/<job.id>/``, outside the job directory so that it is
    held before anything in there is touched (and survives starting the job over)."""
    from tailor.rundir.lock import held

    where = Path(out) / LOCKS_DIR / job.id
    return held(where, f"job {job.id} is being run by another process", busy=JobBusy)


def run_job(job: Job, out: str | Path) -> dict[str, Any]:
    """Run one job in this process and write ``<out>/<job.id>/result.json``; return the result.

    The job's lock is taken first (:class:`JobBusy` if another process holds it); a job that
    another sweep finished meanwhile is not run again (its result is returned).

    ``train``: :func:`tailor.experiments.run.train_prior` (PPO) with the task's paper
    coefficients for the method; ``customize``: :func:`tailor.experiments.run.customize` from the
    prior; ``prior``: nothing to train. Then the final policy is evaluated for ``job.episodes``
    deterministic episodes with :func:`tailor.experiments.run.evaluate` (``eval``), and so is the
    best policy snapshot (``eval_best``, ``best``), chosen by
    :func:`tailor.experiments.run.best_checkpoint` on other seeds than the reported ones. A run
    keeps about :data:`SNAPSHOTS` snapshots. An earlier attempt of the same job that was killed
    (no ``result.json``) is continued from its last checkpoint with
    :func:`tailor.experiments.run.resume`, which ends with the uninterrupted run's numbers; an
    attempt without a checkpoint of this job is started over.
    """
    with _job_lock(job, out):
        if is_finished(job, out):  # by another sweep, since this one listed it
            return _read_result(Path(out) / job.id / RESULT_FILE)
        return _run_job_locked(job, out)


def _run_job_locked(job: Job, out: str | Path) -> dict[str, Any]:
    from tailor.envs import get_task
    from tailor.experiments import run

    if job.tasks_file is not None:  # a worker process knows only the built-in tasks
        run.load_user_tasks(job.tasks_file)
    job_dir = Path(out) / job.id
    task = get_task(job.task)
    t0 = time.perf_counter()
    train_wall = 0.0
    resumed_at = None
    with contextlib.ExitStack() as stack:
        if job.kind == "prior":
            job_dir.mkdir(parents=True, exist_ok=True)
            policy: Any = job.prior
        elif job.kind in ("train", "customize"):
            resumed_at = _resumable(job, out)
            if resumed_at is None and job_dir.exists():  # an earlier attempt: start over
                shutil.rmtree(job_dir)
            job_dir.mkdir(parents=True, exist_ok=True)
            still_there = stack.enter_context(_watching(job_dir))
            if resumed_at is not None:  # with the run's own config: the uninterrupted numbers
                run.resume(job_dir, job.steps, log=None)
            else:
                _train_afresh(job, task, job_dir)
            still_there()
            train_wall = time.perf_counter() - t0
            policy = job_dir
        else:
            raise TailorError(f"job {job.id}: unknown kind {job.kind!r}")
        t1 = time.perf_counter()
        options = dict(job.prior_options) if job.kind == "prior" else None
        ev = run.evaluate(policy, task, job.episodes, seed=job.eval_seed, prior_options=options)
        best: dict[str, Any] | None = None
        ev_best = None
        if job.kind != "prior":
            selection_seed = job.eval_seed + run.SELECTION_SEED_OFFSET
            best = run.best_checkpoint(job_dir, task, seed=selection_seed)
            ev_best = run.evaluate(best["policy"], task, job.episodes, seed=job.eval_seed)
    record = {
        "id": job.id,
        "job": job.to_json(),
        "eval": ev,
        "eval_best": ev_best,
        "best": best,
        "resumed_at_step": resumed_at,
        "train_wall_s": train_wall,
        "eval_wall_s": time.perf_counter() - t1,
        "wall_s": time.perf_counter() - t0,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    _write_json(job_dir / RESULT_FILE, record)
    (job_dir / FAILED_FILE).unlink(missing_ok=True)
    return record


@contextlib.contextmanager
def _watching(job_dir: Path) -> Iterator[Callable[[], None]]:
    """Yield a check that fails the job if its directory vanished or was replaced since the
    watch began (what it holds then is not the run this job trained and must not be recorded as
    finished); the check also runs at exit. An open descriptor keeps the directory's inode
    allocated, so a directory removed and recreated has another inode (the file system could
    otherwise hand out the same number again at once)."""
    fd = os.open(job_dir, os.O_RDONLY)

    def check() -> None:
        held = os.fstat(fd)
        try:
            now = job_dir.stat()
        except FileNotFoundError:
            now = None
        same = now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)
        if not same or held.st_nlink == 0:
            what = "vanished" if now is None else "was removed and recreated"
            raise TailorError(
                f"the job directory {str(job_dir)!r} {what} while the job ran (another process "
                "or a user removed it?); the job is not finished: rerun the sweep to run it again"
            )

    try:
        yield check
        check()
    finally:
        os.close(fd)


def _train_afresh(job: Job, task: Any, job_dir: Path) -> None:
    """Train or customize ``job`` from scratch in the empty ``job_dir``."""
    from tailor.experiments import run

    # About SNAPSHOTS policy snapshots to choose the best one from (saving draws no random
    # numbers: the run's numbers do not depend on it).
    config: dict[str, Any] = {}
    if job.algo == "ppo":  # a SAC / DQN run keeps its final policy only
        iters = max(1, job.steps // 4096)  # PPOConfig's default batch of 64 x 64
        config = {"std_type": job.std_type, "checkpoint_every": max(1, iters // SNAPSHOTS)}
    for key, value in job.ppo:
        config[key] = tuple(value) if isinstance(value, list) else value
    if job.kind == "customize":
        args = (task, job.algo, job.prior, job.steps, job.seed, job_dir)
        options = dict(job.prior_options) or None
        run.customize(*args, method=job.method, log=None, prior_options=options, **config)
    else:
        args = (task, "ppo", job.steps, job.seed, job_dir)
        run.train_prior(*args, method=job.method, log=None, **config)


def _resumable(job: Job, out: str | Path) -> int | None:
    """The step of the checkpoint that an unfinished earlier attempt of ``job`` (a killed
    session, or a result.json that does not validate) left of this very run (task, method, seed,
    budget, std), or ``None``."""
    from tailor.algos.ppo import read_run

    job_dir = Path(out) / job.id
    if not job_dir.is_dir() or is_finished(job, out):
        return None
    try:
        info = read_run(job_dir)
    except TailorError:  # no checkpoint yet, or one that cannot be read: start over
        return None
    config = info["config"]
    same = (info["task"], info["method"], config.seed, config.total_steps, config.std_type)
    return (
        info["steps"] if same == (job.task, job.method, job.seed, job.steps, job.std_type) else None
    )


def reselect_best(job: Job, out: str | Path) -> bool:
    """Re-choose a finished job's best checkpoint if the recorded one is still its prior.

    Results written before :func:`tailor.experiments.run.best_checkpoint` skipped the snapshots
    equal to the prior (a customization's critic warm-up) may report the prior as the best
    checkpoint. The stored selection scores are reused: the best of the snapshots that are not
    the prior is chosen, evaluated like ``eval_best`` and written back (atomically), with
    ``best["reselected"] = True``. Trains nothing.

    Returns:
        Whether the best checkpoint changed.
    """
    from tailor.envs import get_task
    from tailor.experiments import run

    job_dir = Path(out) / job.id
    path = job_dir / RESULT_FILE
    if job.kind != "customize" or not path.is_file():
        return False
    record = _read_result(path)
    best = record.get("best")
    if not best or "skipped_as_prior" in best:  # chosen by a tailor that already skips them
        return False

    def snapshot(step: int) -> Path:
        return job_dir / "checkpoints" / f"step-{step}" / POLICY_FILE

    selection = best["selection"]
    skipped = [
        s["step"] for s in selection if run.same_as_prior(job_dir, snapshot(s["step"]), job.prior)
    ]
    best["skipped_as_prior"] = skipped
    if best["step"] not in skipped:  # the choice stands; only the annotation is new
        _write_json(path, record)
        return False
    rest = [s for s in selection if s["step"] not in skipped] or selection[-1:]
    key = next(k for k in rest[0] if k != "step")
    choice = max(rest, key=lambda s: s[key])
    best.update(step=choice["step"], policy=str(snapshot(choice["step"])))
    best["reselected"] = True
    task = get_task(job.task)
    record["eval_best"] = run.evaluate(best["policy"], task, job.episodes, seed=job.eval_seed)
    _write_json(path, record)
    return True


def _run_job_safe(job_json: dict[str, Any], out: str) -> dict[str, Any]:
    """Worker entry point: never raises; a failure is written to ``failed.json`` and returned."""
    job = Job.from_json(job_json)
    t0 = time.perf_counter()
    try:
        record = run_job(job, out)
        return {"id": job.id, "ok": True, "wall_s": record["wall_s"]}
    except JobBusy as exc:  # another sweep runs it: not a failure, nothing to record here
        return {"id": job.id, "ok": False, "busy": True, "error": str(exc), "wall_s": 0.0}
    except Exception as exc:  # a failed job must not stop the sweep
        info = {
            "id": job.id,
            "ok": False,
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
            "wall_s": time.perf_counter() - t0,
            "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        try:
            job_dir = Path(out) / job.id
            job_dir.mkdir(parents=True, exist_ok=True)
            _write_json(job_dir / FAILED_FILE, info)
        except OSError:
            pass
        return info


@dataclass
class SweepReport:
    """What :func:`run_sweep` did.

    Attributes:
        total: jobs in the sweep.
        skipped: ids already finished before this call.
        done: ids finished by this call.
        failed: id -> error line, for jobs that failed in this call.
        busy: id -> who runs it, for jobs another process (a second sweep) was running.
        wall_s: wall time of this call.
    """

    total: int
    skipped: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    busy: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0


def result_problem(job: Job, out: str | Path) -> str | None:
    """Why ``job`` is not finished in ``out`` although it has a ``result.json`` (``None``: it is
    finished, or has no result at all). A result must validate against :data:`RESULT_SCHEMA`,
    name this job, and a trained job's ``metrics.csv`` must hold at least one row."""
    job_dir = Path(out) / job.id
    path = job_dir / RESULT_FILE
    if not path.is_file():
        return None
    try:
        record = _read_result(path)
    except TailorError as exc:
        return str(exc)
    if record.get("id") != job.id:
        return f"{str(path)!r} is the result of {record.get('id')!r}, not of {job.id!r}"
    if job.kind != "prior" and _metric_rows(job_dir / METRICS_FILE) == 0:
        return f"{str(job_dir / METRICS_FILE)!r} has no rows: the training it records is lost"
    return None


def _metric_rows(path: Path) -> int:
    """Data rows of a metrics.csv (0 if it is missing or holds only its header)."""
    try:
        with path.open("rb") as f:
            return max(0, sum(1 for line in f if line.strip()) - 1)
    except OSError:
        return 0


def is_finished(job: Job, out: str | Path) -> bool:
    """``result.json`` exists and is valid (:func:`result_problem`): a truncated or foreign one
    is rerun, never skipped."""
    path = Path(out) / job.id / RESULT_FILE
    return path.is_file() and result_problem(job, out) is None


def job_state(job: Job, out: str | Path) -> tuple[str, str]:
    """``(state, detail)`` of ``job`` in the sweep directory ``out``, for ``tailor sweep --list``.

    States: ``finished`` (``result.json``); ``running`` (another process holds the job's lock;
    detail: who, and the step of its last checkpoint); ``trained`` (training is done, the
    evaluation not recorded yet); ``partial`` (an interrupted run whose
    checkpoint the next sweep continues from; detail: that step); ``failed`` (``failed.json``);
    ``to run``. Reads only: the step comes from the trainer checkpoint's metadata, which is
    replaced atomically, so a running job shows its last complete checkpoint.
    """
    from tailor.rundir import lock_holder

    job_dir = Path(out) / job.id
    if is_finished(job, out):
        return "finished", ""
    sweep_holder = lock_holder(Path(out) / LOCKS_DIR / job.id)
    problem = result_problem(job, out)
    if problem is not None:
        return "invalid", f"{problem}; the next sweep runs it again"
    step = _resumable(job, out)
    at = f"checkpoint at step {step:,} of {job.steps:,}" if step is not None else ""
    holder = sweep_holder or (lock_holder(job_dir) if job_dir.is_dir() else None)
    if holder is not None:
        return "running", "; ".join(x for x in (holder, at) if x)
    if step is not None and step >= job.steps:  # the run releases its lock before evaluation
        return "trained", (
            f"training done at step {step:,}; its evaluation is under way if a sweep is "
            "running, else the next sweep evaluates it"
        )
    if step is not None:
        return "partial", f"continues from its {at}"
    if (job_dir / FAILED_FILE).is_file():
        return "failed", f"see {job_dir / FAILED_FILE}"
    return "to run", ""


def run_sweep(
    jobs: Sequence[Job],
    out: str | Path,
    *,
    workers: int = 1,
    backend: str = "local",
    address: str | None = None,
    label: str = "",
    log: Callable[[str], None] | None = print,
) -> SweepReport:
    """Run every unfinished job of ``jobs`` once; return a :class:`SweepReport`.

    Args:
        jobs: the jobs (e.g. :func:`tailor.experiments.presets.expand`); ids must be unique.
        out: the sweep directory (created).
        workers: parallel jobs (``local``: processes; ``ray`` without ``address``: the local Ray
            instance's CPUs).
        backend: ``"local"`` or ``"ray"``.
        address: Ray cluster address (``"auto"`` or ``"ray://host:10001"``); ``ray`` only.
        label: recorded in ``sweeps.jsonl`` (e.g. ``"table1/local"``).
        log: where progress lines go (``None``: silent).
    """
    if backend not in ("local", "ray"):
        raise TailorError(f"unknown backend {backend!r}; use 'local' or 'ray'")
    if address is not None and backend != "ray":
        raise TailorError("--address is for --backend ray")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise TailorError(f"workers must be a positive integer, got {workers!r}")
    ids = [j.id for j in jobs]
    if len(set(ids)) != len(ids):
        raise TailorError(
            "jobs with the same id: " + ", ".join(sorted({i for i in ids if ids.count(i) > 1}))
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = log or (lambda _s: None)
    report = SweepReport(total=len(jobs))
    todo = []
    for job in jobs:
        if is_finished(job, out):
            report.skipped.append(job.id)
        else:
            todo.append(job)
    say(
        f"sweep {label or out}: {len(jobs)} jobs, {len(report.skipped)} already finished, "
        f"{len(todo)} to run on {_where(backend, workers, address)}"
    )
    t0 = time.perf_counter()

    def finished(info: dict[str, Any]) -> None:
        if info.get("busy"):
            report.busy[info["id"]] = info["error"]
            say(f"skipped {info['id']}: {info['error']}")
            return
        if info["ok"]:
            report.done.append(info["id"])
        else:
            report.failed[info["id"]] = info["error"]
        n = len(report.done) + len(report.failed)
        elapsed = time.perf_counter() - t0
        eta = elapsed / n * (len(todo) - len(report.busy) - n)
        state = "done  " if info["ok"] else "FAILED"
        say(
            f"[{n}/{len(todo)}] {state} {info['id']} ({info['wall_s']:.0f} s)"
            + ("" if info["ok"] else f": {info['error']}")
            + f"  elapsed {elapsed / 60:.1f} min, eta {eta / 60:.1f} min"
        )

    if todo:
        # One torch/OpenMP thread per job: the networks are small, and N jobs on N cores would
        # otherwise oversubscribe the CPU. Spawned workers and Ray workers inherit this.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        if backend == "local":
            _run_local(todo, out, workers, finished)
        else:
            _run_ray(todo, out, workers, address, finished, say)
    report.wall_s = time.perf_counter() - t0
    entry = {
        "label": label,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - report.wall_s)),
        "backend": backend,
        "workers": workers,
        "total": report.total,
        "skipped": len(report.skipped),
        "done": len(report.done),
        "failed": sorted(report.failed),
        "busy": sorted(report.busy),
        "wall_s": round(report.wall_s, 1),
        "command": " ".join(sys.argv),
    }
    with (out / LOG_FILE).open("a") as f:
        f.write(json.dumps(entry) + "\n")
    say(
        f"sweep {label or out}: {len(report.done)} done, {len(report.failed)} failed, "
        f"{len(report.skipped)} skipped, {len(report.busy)} run by another process "
        f"in {report.wall_s / 60:.1f} min"
    )
    for job_id, error in report.failed.items():
        say(f"  failed: {job_id}: {error} (details in {out / job_id / FAILED_FILE})")
    return report


def _where(backend: str, workers: int, address: str | None) -> str:
    """Where the jobs run, for the sweep's header (a cluster's slots are said once connected)."""
    if backend == "ray" and address is not None:
        return f"the Ray cluster at {address}"
    return f"{backend} with {workers} worker(s)"


def _run_local(
    todo: list[Job], out: Path, workers: int, finished: Callable[[dict[str, Any]], None]
) -> None:
    pending = list(todo)
    # A worker that dies (killed, out of memory, a segfault in native code) breaks the pool: its
    # jobs are recorded as failed and a fresh pool takes the rest.
    while pending:
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=get_context("spawn"),
            initializer=_exit_with_parent,
            initargs=(os.getpid(),),
        ) as pool:
            running: dict[Future, Job] = {}
            broken = False
            while (pending or running) and not broken:
                while pending and len(running) < workers:
                    job = pending.pop(0)
                    running[pool.submit(_run_job_safe, job.to_json(), str(out))] = job
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = running.pop(fut)
                    try:
                        finished(fut.result())
                    except BrokenProcessPool:
                        broken = True
                        finished(_crashed(job, out, "worker process died"))
            for job in running.values():
                finished(_crashed(job, out, "worker process died (pool broken by another job)"))


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: end this worker within a second of the sweep process that started it
    (killed, e.g. ``kill PID`` or a scheduler's SIGKILL), instead of training on as an orphan that
    holds its job's lock. Checkpoints are written atomically, so the job continues from its last
    one on the next run."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="tailor-parent-watch", daemon=True).start()


def _crashed(job: Job, out: Path, why: str) -> dict[str, Any]:
    info = {"id": job.id, "ok": False, "error": why, "traceback": "", "wall_s": 0.0}
    (out / job.id).mkdir(parents=True, exist_ok=True)
    _write_json(out / job.id / FAILED_FILE, info)
    return info


# A Ray task whose worker or node dies is run again (up to this many times) elsewhere; the job
# continues from its last checkpoint (run_job resumes), so a lost node costs little.
RAY_RETRIES = 3
_AUTH_WORDS = ("auth", "token", "unauthenticated")


def _ray_start_error(exc: Exception, address: str | None) -> TailorError:
    """What ``ray.init`` failing means, in words; token authentication (Ray >= 2.52, on by
    default from 2.59/2.61) gets its own message, as Ray's says only ``ConnectionError``."""
    where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
    text = f"{type(exc).__name__}: {exc}"
    if any(w in text.lower() for w in _AUTH_WORDS):
        return TailorError(
            f"cannot connect to {where}: it requires Ray's token authentication ({text}). Pass "
            "the cluster's token: export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=<token> (or "
            "RAY_AUTH_TOKEN_PATH=<file>; `ray get-auth-token` on the head node prints it), the "
            "same on every node"
        )
    if address is None and "existing cluster" in text:  # ray.init() found one via ray start
        return TailorError(
            f"cannot start a local Ray instance: {text} A Ray cluster is already running on "
            "this machine (`ray start`; or its processes were killed and "
            "/tmp/ray/ray_current_cluster is left): pass --address auto to run on it, or end it "
            "with `ray stop`"
        )
    return TailorError(f"cannot start on {where}: {text}")


def _ray_slots(ray: Any) -> tuple[int, int]:
    """``(CPU slots, alive nodes)`` of the connected Ray cluster: one job runs per CPU slot."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return int(ray.cluster_resources().get("CPU", 0)), len(nodes)


def _run_ray(
    todo: list[Job],
    out: Path,
    workers: int,
    address: str | None,
    finished: Callable[[dict[str, Any]], None],
    say: Callable[[str], None],
) -> None:
    try:
        import ray
    except ImportError:
        raise TailorError(
            "the ray backend needs Ray: pip install 'tailor-rl[ray]' (or use --backend local)"
        ) from None
    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address is None:
            kwargs["num_cpus"] = workers
        else:
            check_ray_address(address)
        try:
            ray.init(address=address, **kwargs)
        except Exception as exc:  # ConnectionError, RuntimeError, ValueError of a bad address
            raise _ray_start_error(exc, address) from None
    try:
        slots, nodes = _ray_slots(ray)
        say(f"ray: {slots} CPU slot(s) on {nodes} node(s): up to {slots} jobs at once")
        remote = ray.remote(num_cpus=1, max_retries=RAY_RETRIES)(_run_job_safe)
        refs = {remote.remote(job.to_json(), str(out.resolve())): job for job in todo}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                job = refs.pop(ref)
                try:
                    finished(ray.get(ref))
                except Exception as exc:  # lost RAY_RETRIES + 1 times: a failed job
                    why = f"ray task lost {RAY_RETRIES + 1} times: {type(exc).__name__}: {exc}"
                    finished(_crashed(job, out, why))
    finally:
        if started_here:
            ray.shutdown()


RAY_CONNECT_TIMEOUT_S = 5.0


def check_ray_address(address: str, timeout: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """Fail fast on a Ray address whose ``host:port`` accepts no connection (``ray.init`` would
    retry for minutes). ``"auto"`` and addresses without a port are left to Ray.

    Raises:
        TailorError: a malformed port, or no TCP connection within ``timeout`` seconds.
    """
    import socket

    target = address.removeprefix("ray://")
    host, sep, port_text = target.rpartition(":")
    if not sep or not host:
        return
    try:
        port = int(port_text)
    except ValueError:
        raise TailorError(
            f"--address {address!r}: the port {port_text!r} is not a number"
        ) from None
    if not 0 < port < 65536:
        raise TailorError(f"--address {address!r}: the port must be in 1..65535")
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout):
            pass
    except OSError as exc:
        if isinstance(exc, TimeoutError):
            reason = f"no answer within {timeout:g} s"
        else:
            reason = (exc.strerror or str(exc)).lower()
        raise TailorError(
            f"cannot reach the Ray cluster at {address!r} ({reason}); "
            "start one with `ray start --head`, check --address, or use --backend local"
        ) from None


def load_results(jobs: Sequence[Job], out: str | Path) -> dict[str, dict[str, Any]]:
    """``id -> result.json`` for the finished jobs among ``jobs`` (missing ones are absent).

    Raises:
        TailorError: ``out`` is not a directory, or a ``result.json`` is not a JSON object.
    """
    out = Path(out)
    if not out.is_dir():
        what = "does not exist" if not out.exists() else "is not a directory"
        raise TailorError(f"sweep directory {str(out)!r} {what}")
    results = {}
    for job in jobs:
        path = out / job.id / RESULT_FILE
        if path.is_file():
            results[job.id] = _read_result(path)
    return results


def _read_result(path: Path) -> dict[str, Any]:
    """One ``result.json``, valid against :data:`RESULT_SCHEMA` (a bad one is named, with the
    field, never a ``KeyError`` in a table)."""
    rerun = "rerun the sweep, which runs that job again"
    try:
        obj = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise TailorError(f"{str(path)!r} is not valid JSON ({exc}); {rerun}") from None
    if not isinstance(obj, dict):
        raise TailorError(f"{str(path)!r} is not a result record (a JSON object); {rerun}")
    try:
        return validate_meta(obj, RESULT_SCHEMA, where=repr(str(path)))
    except TailorError as exc:
        raise TailorError(f"{exc} (not a complete result); {rerun}") from None


def finished_results(
    jobs: Sequence[Job], out: str | Path, preset: str, budget: str
) -> dict[str, dict[str, Any]]:
    """:func:`load_results`, refusing a directory that holds none of ``jobs``' results."""
    results = load_results(jobs, out)
    if not results:
        raise TailorError(
            f"no finished {preset} jobs (budget {budget}) in {str(out)!r}: "
            f"run tailor sweep {preset} --budget {budget} --out {out} first"
        )
    return results
