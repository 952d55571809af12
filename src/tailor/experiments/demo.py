"""The README's main job: customize the shipped HalfCheetah prior with Residual PPO.

Steps: (1) a quick `tailor verify` of the theory on fresh Garnets (seeded, a few seconds);
(2) Residual PPO from the shipped Soft-PPO prior on ``halfcheetah-hindleg`` (add-on reward
``-|theta_bthigh|``) with the paper's coefficients; (3) evaluate prior and customized policy on the
same episodes; (4) print them side by side and save the learning curve.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tailor.errors import TailorError

__all__ = ["DemoConfig", "run_demo"]


@dataclass
class DemoConfig:
    """Settings of ``tailor demo``.

    Attributes:
        out: output directory (the run, the evaluations, the learning curve).
        prior: the shipped prior's run directory (or its ``policy.safetensors``).
        task: the customization task.
        method: a customization method.
        omega_prime: weight of ``log pi_prior``; ``None``: the task's paper default. The demo's
            0.1 (with ``alpha_hat`` 0.08, the paper's ratio ``omega'/alpha_hat`` of about 1.25)
            weighs the add-on more than the paper's 0.17 (``omega = omega'/alpha`` about 0.74
            instead of 1.26), so that a few minutes show the trade-off. With the paper's
            coefficients the shipped prior moved little in 2M steps (``results/customization.md``
            says by how much): it already sits near the paper's full policy.
        alpha_hat: temperature of the customized policy; ``None``: the task's paper default.
        steps: customization steps (the first 5% fit the fresh critic only).
        episodes: evaluation episodes for each policy (deterministic, same env seeds).
        seed: seed of the run, of the verification and of the evaluation episodes.
        verify: run the quick theory check first.
        progress: show a progress bar while customizing.
    """

    out: Path = Path("tailor-demo")
    prior: Path = Path("priors/halfcheetah")
    task: str = "halfcheetah-hindleg"
    method: str = "residual"
    omega_prime: float | None = 0.1
    alpha_hat: float | None = 0.08
    steps: int = 600_000
    episodes: int = 20
    seed: int = 0
    verify: bool = True
    progress: bool = True


def _say(text: str = "") -> None:
    print(text, flush=True)


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run the demo; returns ``{"prior": eval, "customized": eval, "curve": path, ...}``."""
    from tailor.envs import get_task
    from tailor.experiments import run
    from tailor.experiments.plots import plot_learning_curve, read_metrics
    from tailor.priors import load_prior

    prior_path = Path(cfg.prior)
    if not prior_path.exists():
        raise TailorError(
            f"no prior at {str(prior_path)!r}. Run the demo from the repository root (the shipped "
            "priors are in priors/), or train one: tailor train --task halfcheetah-hindleg "
            "--method soft --steps 5000000 --out priors/halfcheetah"
        )
    task = get_task(cfg.task)
    load_prior(prior_path)  # a clear error for an unreadable prior, before any work
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / f"{cfg.method}-{task.name}"
    if run_dir.exists():  # the demo's own previous run: start afresh, same seed, same numbers
        shutil.rmtree(run_dir)

    if cfg.verify:
        from tailor.tabular.verify import CHECKS, run_checks

        # The exact identities only (tolerance 1e-8 or tighter, no policy-gradient runs): a few
        # seconds. `tailor verify` runs the full table.
        exact = tuple(c for c in CHECKS if 0 < c.tol <= 1e-8 and c.condition is None)
        _say("== 1/3  the theory, exactly: the identities behind every method ==")
        t0 = time.perf_counter()
        results = run_checks(seed=cfg.seed, cases_scale=0.25, checks=exact)
        failed = [r for r in results if not r.passed]
        _say(
            f"  {len(results) - len(failed)}/{len(results)} exact identities hold on random "
            f"Garnets (worst error {max(r.error for r in results):.1e}; "
            f"{time.perf_counter() - t0:.1f} s; the full table: tailor verify)"
        )
        for r in failed:
            _say(f"  FAIL {r.name}: {r.error:.2e}")

    # kl reads alpha_hat as its one coefficient beta; greedy takes no omega'.
    omega_prime = cfg.omega_prime if cfg.method == "residual" else None
    method = run.task_method(task, cfg.method, omega_prime=omega_prime, alpha_hat=cfg.alpha_hat)
    coefs = ", ".join(
        f"{k}={v:g}"
        for k, v in (("omega'", method.spec.omega_prime), ("alpha_hat", method.spec.alpha_hat))
    )
    _say(
        f"\n== 2/3  customize: {method.name} PPO on {task.name} from {prior_path} "
        f"({coefs}; {cfg.steps:,} steps) =="
    )
    _say(f"  add-on reward: {task.addon_text()}")
    run.customize(
        task,
        "ppo",
        prior_path,
        cfg.steps,
        cfg.seed,
        run_dir,
        omega_prime,
        cfg.alpha_hat,
        method=cfg.method,
        log=None,
        progress=cfg.progress,
    )
    metrics = read_metrics(run_dir / "metrics.csv")
    steps, wall = int(metrics["steps"][-1]), float(metrics["wall_s"][-1])
    _say(f"  {steps:,} steps in {wall:.1f} s ({steps / wall:,.0f} steps/s)")

    _say(f"\n== 3/3  evaluate: {cfg.episodes} episodes each, deterministic, same env seeds ==")
    ev_prior = run.evaluate(prior_path, task, cfg.episodes, seed=cfg.seed)
    ev_custom = run.evaluate(run_dir, task, cfg.episodes, seed=cfg.seed)
    for name, ev in (("prior", ev_prior), ("customized", ev_custom)):
        (out / f"eval-{name}.json").write_text(json.dumps(ev, indent=2))
    _say(side_by_side(ev_prior, ev_custom, task.statistic_name))
    curve = plot_learning_curve(
        run_dir,
        out / "learning_curve.png",
        f"{method.name} PPO on {task.name} from the shipped Soft-PPO prior",
        reference=ev_prior,
        statistic_name=task.statistic_name,
    )
    _say(
        f"\nwrote {curve}, {out / 'eval-prior.json'}, {out / 'eval-customized.json'} "
        f"and the run in {run_dir}"
    )
    return {"prior": ev_prior, "customized": ev_custom, "curve": curve, "run_dir": run_dir}


def side_by_side(prior: dict[str, Any], custom: dict[str, Any], statistic_name: str) -> str:
    """A small table: metric, prior, customized, change (mean +- std over episodes)."""
    lines = [f"  {'':<24}{'prior':>22}{'customized':>22}{'change':>10}"]
    for key, label in (
        ("total", "total (basic + add-on)"),
        ("basic", "basic return"),
        ("addon", "add-on return"),
        ("statistic", statistic_name),
    ):
        a, b = prior[key], custom[key]
        d = 3 if key == "statistic" else 2  # per-step statistics are small numbers
        cell_a = f"{a['mean']:.{d}f} +- {a['std']:.{d}f}"
        cell_b = f"{b['mean']:.{d}f} +- {b['std']:.{d}f}"
        lines.append(f"  {label:<24}{cell_a:>22}{cell_b:>22}{b['mean'] - a['mean']:>+10.{d}f}")
    return "\n".join(lines)
