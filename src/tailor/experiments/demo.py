"""The README's main job: customize a shipped prior and show that it worked.

Steps: (1) a quick ``tailor verify`` of the theory on fresh Garnets (seeded, a few seconds);
(2) the customization method (Residual PPO) and a baseline (KL PPO, classic RLHF) from the same
shipped Soft-PPO prior, side by side, one process each; (3) evaluate the prior and both customized
policies on the same episodes (deterministic, same env seeds); (4) print them side by side with
the change against the prior and whether the customization met the demo's bar; save the
evaluations, the learning curves and a side-by-side video of prior and customized policy.

The default task is ``ant-sideways`` (walk sideways, add-on ``v_y``), where the effect is plain
within minutes; ``--task halfcheetah-hindleg`` (keep the hind thigh straight) and ``hopper-jump``
work too. Every run goes through :mod:`tailor.experiments.run`.
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tailor.errors import TailorError
from tailor.output import check_output_tree, write_json

__all__ = ["DEMO_TASKS", "DemoConfig", "acceptance", "comparison_table", "run_demo", "side_by_side"]


@dataclass(frozen=True)
class DemoTask:
    """The demo's defaults for one task.

    Attributes:
        prior: the shipped prior (a run directory of ``priors/``).
        steps: customization steps of each method.
        coefficients: the main method's coefficients when none are given, by method name
            (``{}``: the task's paper coefficients).
        why: one line on why these defaults.
    """

    prior: str
    steps: int
    coefficients: dict[str, dict[str, float]] = field(default_factory=dict)
    why: str = ""


DEMO_TASKS: dict[str, DemoTask] = {
    "ant-sideways": DemoTask(
        "priors/ant",
        300_000,
        {"residual": {"omega_prime": 0.03, "alpha_hat": 0.0001}},
        "omega' = 0.03 (the paper's 0.01 x 3) keeps the prior's gait, so that the sideways "
        "walk adds to the basic return instead of costing falls (results/customization.md)",
    ),
    "halfcheetah-hindleg": DemoTask(
        "priors/halfcheetah",
        600_000,
        {"residual": {"omega_prime": 0.1, "alpha_hat": 0.08}, "greedy": {"alpha_hat": 0.08}},
        "omega' = 0.1, alpha_hat = 0.08 weigh the add-on more than the paper's 0.17 / 0.13472; "
        "on this prior the add-on still moves little: its Gaussian charges for every step away "
        "from its gait, and the gaits that keep the hind thigh straighter are far from it "
        "(results/customization.md)",
    ),
    "hopper-jump": DemoTask(
        "priors/hopper",
        500_000,
        {"residual": {"omega_prime": 0.05, "alpha_hat": 0.001}},
        "omega' = 0.05 (the paper's 0.01 x 5): with the paper's the hopper jumps higher and falls "
        "(episodes of 311 steps against the prior's 915); with 0.05 it keeps hopping "
        "(results/customization.md)",
    ),
}


@dataclass
class DemoConfig:
    """Settings of ``tailor demo``.

    Attributes:
        out: output directory (the runs, the evaluations, the learning curve, the video).
        task: the customization task (a key of :data:`DEMO_TASKS`, or any task with ``prior``).
        prior: the prior's run directory or ``policy.safetensors``; ``None``: the shipped one.
        method: the customization method shown as "customized" (``eval-customized.json``).
        baseline: a second method run beside it for comparison (``eval-<baseline>.json``);
            ``None`` for none. It uses the task's paper coefficients.
        omega_prime: the main method's weight of ``log pi_prior``; ``None``: the demo's default
            for the task (:data:`DEMO_TASKS`), else the paper's.
        alpha_hat: the main method's temperature (``kl``: its beta); ``None`` as above.
        paper_coefficients: use the task's paper coefficients for the main method too.
        steps: customization steps of each method; ``None``: the task's demo default.
        episodes: evaluation episodes for each policy (deterministic, same env seeds).
        seed: seed of the runs, of the verification and of the evaluation episodes.
        workers: processes for the runs and evaluations (one per core).
        verify: run the quick theory check first.
        progress: show a progress bar while customizing.
        video: render a side-by-side video of prior and customized policy (skipped with a note
            when offscreen rendering or the task's renderer is not available).
        video_steps: env steps of the video's episode.
    """

    out: Path = Path("tailor-demo")
    task: str = "ant-sideways"
    prior: Path | None = None
    method: str = "residual"
    baseline: str | None = "kl"
    omega_prime: float | None = None
    alpha_hat: float | None = None
    paper_coefficients: bool = False
    steps: int | None = None
    episodes: int = 20
    seed: int = 0
    workers: int = 2
    verify: bool = True
    progress: bool = True
    video: bool = True
    video_steps: int = 300


def _say(text: str = "") -> None:
    print(text, flush=True)


def _customize_job(job: dict[str, Any]) -> str:
    """Worker: one customization run (a top-level function, so that it pickles)."""
    from tailor.experiments import run

    args = (job["task"], "ppo", job["prior"], job["steps"], job["seed"], job["out"])
    run.customize(
        *args,
        job["omega_prime"],
        job["alpha_hat"],
        method=job["method"],
        log=None,
        tensorboard=False,
    )
    return job["out"]


def _evaluate_job(job: dict[str, Any]) -> dict[str, Any]:
    from tailor.experiments import run

    return run.evaluate(job["policy"], job["task"], job["episodes"], job["seed"])


def _video_job(job: dict[str, Any]) -> dict[str, Any]:
    from tailor.experiments.video import render_video

    return render_video(
        job["policies"], job["task"], job["out"], max_steps=job["steps"], labels=job["labels"]
    )


def _coefficients(cfg: DemoConfig, method: str, main: bool) -> tuple[float | None, float | None]:
    """``(omega_prime, alpha_hat)`` for ``run.customize`` (``None``: the task's paper value)."""
    if not main or cfg.paper_coefficients:
        return None, None
    preset = DEMO_TASKS.get(cfg.task, DemoTask("", 0)).coefficients.get(method, {})
    omega = cfg.omega_prime if cfg.omega_prime is not None else preset.get("omega_prime")
    alpha = cfg.alpha_hat if cfg.alpha_hat is not None else preset.get("alpha_hat")
    return (omega if method == "residual" else None), alpha


def _demo_prior(cfg: DemoConfig, task: str, preset: Any) -> Path:
    """The prior the demo customizes (``--prior`` or the task's shipped one), checked readable
    before any work."""
    from tailor.priors import load_prior
    from tailor.shipped import find_prior

    prior_path = find_prior(cfg.prior) if cfg.prior is not None else None
    if prior_path is None:
        if preset is None:
            raise TailorError(f"task {task!r} has no shipped prior: pass --prior RUN_DIR")
        prior_path = find_prior(preset.prior)
    if not prior_path.exists():
        where = cfg.prior if cfg.prior is not None else preset.prior
        raise TailorError(
            f"no prior at {str(prior_path)!r}. The shipped priors are in the repository's "
            f"priors/ (and in an installed package); or train one: tailor train --task "
            f"{task} --method soft --steps 5000000 --out {where}"
        )
    load_prior(prior_path)  # a clear error for an unreadable prior, before any work
    return prior_path


def _write_evals(out: Path, methods: list[str], results: dict[str, Any]) -> list[Path]:
    """``eval-prior.json``, ``eval-customized.json`` (the main method) and ``eval-<baseline>.json``
    in ``out``; returns their paths."""
    paths = {"prior": out / "eval-prior.json", methods[0]: out / "eval-customized.json"}
    paths.update({m: out / f"eval-{m}.json" for m in methods[1:]})
    for name, path in paths.items():
        write_json(path, results[name])  # the demo's own files: replaced on a rerun
    return list(paths.values())


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run the demo; returns ``{"prior": eval, "customized": eval, <baseline>: eval, "curve":
    path, "video": path or None, "run_dir": path, "accepted": bool, ...}``."""
    from tailor.envs import get_task
    from tailor.experiments import run
    from tailor.experiments.plots import plot_learning_curve, read_metrics

    t_demo = time.perf_counter()
    task = get_task(cfg.task)
    preset = DEMO_TASKS.get(task.name)
    prior_path = _demo_prior(cfg, task.name, preset)
    steps = cfg.steps if cfg.steps is not None else (preset.steps if preset else 300_000)
    methods = [cfg.method] + ([cfg.baseline] if cfg.baseline and cfg.baseline != cfg.method else [])
    coefs = {m: _coefficients(cfg, m, main=i == 0) for i, m in enumerate(methods)}
    resolved = {  # resolved here too, so that bad coefficients fail before any work
        m: run.task_method(task, m, omega_prime=w, alpha_hat=a) for m, (w, a) in coefs.items()
    }
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    run_dirs = {m: out / f"{m}-{task.name}" for m in methods}
    for d in run_dirs.values():
        check_output_tree(d, [prior_path], what="the demo's run directory")
    for d in run_dirs.values():
        if d.exists():  # the demo's own previous run: start afresh, same seed, same numbers
            shutil.rmtree(d)

    if cfg.verify:
        _verify(cfg.seed)

    shown = "; ".join(
        f"{m.name} omega'={m.spec.omega_prime:g} alpha_hat={m.spec.alpha_hat:g}"
        for m in resolved.values()
    )
    _say(
        f"\n== 2/3  customize {task.name} from {prior_path}: {', '.join(methods)} PPO side by "
        f"side ({steps:,} steps each; {shown}) =="
    )
    _say(f"  add-on reward: {task.addon_text()}")
    own = cfg.paper_coefficients or cfg.omega_prime is not None or cfg.alpha_hat is not None
    if preset is not None and preset.why and not own and cfg.prior is None:
        _say(f"  why these coefficients: {preset.why}")
    t0 = time.perf_counter()
    ctx = get_context("spawn")  # a fresh interpreter per worker: no state leaks from this one
    with ProcessPoolExecutor(max_workers=max(1, cfg.workers), mp_context=ctx) as pool:
        jobs = {
            m: pool.submit(
                _customize_job,
                {
                    "task": task.name,
                    "prior": str(prior_path),
                    "steps": steps,
                    "seed": cfg.seed,
                    "out": str(run_dirs[m]),
                    "method": m,
                    "omega_prime": coefs[m][0],
                    "alpha_hat": coefs[m][1],
                },
            )
            for m in methods
        }
        _wait_with_progress(jobs, run_dirs, steps, cfg.progress)
        wall = time.perf_counter() - t0
        for m in methods:
            metrics = read_metrics(run_dirs[m] / "metrics.csv")
            n, s = int(metrics["steps"][-1]), float(metrics["wall_s"][-1])
            _say(f"  {m}: {n:,} steps in {s:.1f} s ({n / s:,.0f} steps/s)")
        _say(f"  both runs: {wall:.1f} s wall")

        _say(f"\n== 3/3  evaluate: {cfg.episodes} episodes each, deterministic, same env seeds ==")
        policies = {"prior": prior_path, **run_dirs}
        evals = {
            name: pool.submit(
                _evaluate_job,
                {"policy": str(p), "task": task.name, "episodes": cfg.episodes, "seed": cfg.seed},
            )
            for name, p in policies.items()
        }
        video_out = out / "prior-vs-customized.mp4"
        video = (
            pool.submit(
                _video_job,
                {
                    "policies": [str(prior_path), str(run_dirs[cfg.method])],
                    "task": task.name,
                    "out": str(video_out),
                    "steps": cfg.video_steps,
                    "labels": ["prior", f"{cfg.method} PPO"],
                },
            )
            if cfg.video
            else None
        )
        results = {name: f.result() for name, f in evals.items()}
        video_path = _video_result(video, video_out)

    ev_prior, ev_custom = results["prior"], results[cfg.method]
    written = _write_evals(out, methods, results)
    others = {f"{m} PPO": results[m] for m in methods}
    _say(comparison_table(ev_prior, others, task.statistic_name))
    verdict = acceptance(ev_prior, ev_custom)
    _say(verdict["text"])
    curve = plot_learning_curve(
        {f"{m} PPO": run_dirs[m] / "metrics.csv" for m in methods},
        out / "learning_curve.png",
        f"{' vs '.join(methods)} PPO on {task.name} from the shipped Soft-PPO prior",
        reference=ev_prior,
        statistic_name=task.statistic_name,
    )
    written = [curve, *written, *([video_path] if video_path else [])]
    _say("\nwrote " + ", ".join(str(p) for p in written) + f" and the runs in {out}")
    _say(f"demo: {time.perf_counter() - t_demo:.0f} s")
    return {
        "prior": ev_prior,
        "customized": ev_custom,
        **{m: results[m] for m in methods[1:]},
        "curve": curve,
        "video": video_path,
        "run_dir": run_dirs[cfg.method],
        "accepted": verdict["accepted"],
    }


def _verify(seed: int) -> None:
    from tailor.tabular.verify import CHECKS, run_checks

    # The exact identities only (tolerance 1e-8 or tighter, no policy-gradient runs): a few
    # seconds. `tailor verify` runs the full table.
    exact = tuple(c for c in CHECKS if 0 < c.tol <= 1e-8 and c.condition is None)
    _say("== 1/3  the theory, exactly: the identities behind every method ==")
    t0 = time.perf_counter()
    results = run_checks(seed=seed, cases_scale=0.25, checks=exact)
    failed = [r for r in results if not r.passed]
    _say(
        f"  {len(results) - len(failed)}/{len(results)} exact identities hold on random "
        f"Garnets (worst error {max(r.error for r in results):.1e}; "
        f"{time.perf_counter() - t0:.1f} s; the full table: tailor verify)"
    )
    for r in failed:
        _say(f"  FAIL {r.name}: {r.error:.2e}")


def _wait_with_progress(
    jobs: dict[str, Future], run_dirs: dict[str, Path], steps: int, progress: bool
) -> None:
    """Wait for the runs; a progress bar over their steps summed, read from their metrics.csv."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps * len(jobs), unit="step", unit_scale=True, dynamic_ncols=True)
    try:
        while True:
            done = all(f.done() for f in jobs.values())
            if bar is not None:
                bar.n = sum(_steps_done(d) for d in run_dirs.values())
                bar.refresh()
            if done:
                break
            time.sleep(0.5)
    finally:
        if bar is not None:
            bar.close()
    for f in jobs.values():
        f.result()  # re-raise a worker's TailorError here


def _steps_done(run_dir: Path) -> int:
    """Steps of the last row of a run's metrics.csv (0 before the first)."""
    try:
        lines = (run_dir / "metrics.csv").read_text().strip().split("\n")
        return int(lines[-1].split(",")[1]) if len(lines) > 1 else 0
    except (OSError, ValueError, IndexError):
        return 0


def _video_result(video: Future | None, path: Path) -> Path | None:
    if video is None:
        return None
    try:
        video.result()
    except TailorError as exc:
        _say(f"  (no video: {exc})")
        return None
    return path


def acceptance(prior: dict[str, Any], custom: dict[str, Any]) -> dict[str, Any]:
    """The demo's bar, over its own evaluation episodes: the customized policy beats the prior on
    basic + add-on, and its add-on improves by at least 20% of the prior's add-on magnitude and by
    at least 3 standard deviations of the prior's add-on."""
    gain_total = custom["total"]["mean"] - prior["total"]["mean"]
    gain_addon = custom["addon"]["mean"] - prior["addon"]["mean"]
    need_rel = 0.2 * abs(prior["addon"]["mean"])
    need_std = 3.0 * prior["addon"]["std"]
    checks = {
        "basic + add-on beats the prior": gain_total > 0,
        f"add-on gain >= 20% of |prior add-on| ({need_rel:.1f})": gain_addon >= need_rel,
        f"add-on gain >= 3 std of the prior's add-on ({need_std:.1f})": gain_addon >= need_std,
    }
    lines = [f"  total {gain_total:+.1f}, add-on {gain_addon:+.1f} against the prior:"]
    lines += [f"    [{'x' if ok else ' '}] {name}" for name, ok in checks.items()]
    return {"accepted": all(checks.values()), "checks": checks, "text": "\n".join(lines)}


def comparison_table(
    prior: dict[str, Any], others: dict[str, dict[str, Any]], statistic_name: str
) -> str:
    """Metric, prior, then each other policy with its change (mean +- std over episodes)."""
    head = f"  {'':<24}{'prior':>22}" + "".join(f"{n:>22}{'change':>10}" for n in others)
    lines = [head]
    for key, label in (
        ("total", "total (basic + add-on)"),
        ("basic", "basic return"),
        ("addon", "add-on return"),
        ("statistic", statistic_name),
    ):
        d = 3 if key == "statistic" else 2  # per-step statistics are small numbers
        a = prior[key]
        row = f"  {label:<24}{_cell(a, d):>22}"
        for ev in others.values():
            row += f"{_cell(ev[key], d):>22}{ev[key]['mean'] - a['mean']:>+10.{d}f}"
        lines.append(row)
    return "\n".join(lines)


def _cell(summary: dict[str, float], digits: int) -> str:
    return f"{summary['mean']:.{digits}f} +- {summary['std']:.{digits}f}"


def side_by_side(prior: dict[str, Any], custom: dict[str, Any], statistic_name: str) -> str:
    """A small table: metric, prior, customized, change (mean +- std over episodes)."""
    return comparison_table(prior, {"customized": custom}, statistic_name)
