"""The paper's experiments as frozen presets, each expanded into independent (config, seed) jobs.

A :class:`Preset` says *what* is compared (tasks, methods, std types, whether the prior is
evaluated); a :class:`Budget` says *how much* (seeds, steps, evaluation episodes). ``expand(preset,
budget)`` turns the pair into a list of :class:`Job` s. A job's :attr:`Job.id` is a function of its
config only, so presets that share a config share the job: Table III's global-std Soft PPO runs
are Table I's Soft PPO runs, and a sweep of ``table3`` into the directory of a finished ``table1``
sweep only trains the state-std runs.

=========  ==================================================================================
preset     jobs per task and seed
=========  ==================================================================================
table1     train No-Entropy, End-Entropy, Repeat-Entropy and Soft PPO on the basic task
table2     evaluate the prior; customize it with Greedy, KL and Residual PPO; train the full
           policy (Soft PPO on basic + add-on) from scratch
table3     train Soft PPO with a global and with a state-dependent std
=========  ==================================================================================

Budgets (:data:`BUDGETS`): ``paper`` (5 seeds, 5M steps, 100 evaluation episodes per seed = the
paper's 500), ``local`` (2 seeds, 150k steps from scratch and 300k per customization, 10
evaluation episodes per seed; sized for this 2-core machine, wall times in
``results/REPRODUCTION.md``) and ``smoke`` (1 seed, 2 PPO iterations, 2 episodes: checks the
plumbing in a few minutes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tailor.errors import TailorError
from tailor.shipped import find_prior

__all__ = [
    "BUDGETS",
    "DEFAULT_PRIORS",
    "PRESETS",
    "Budget",
    "Job",
    "Preset",
    "expand",
    "get_budget",
    "get_preset",
    "select",
]

PAPER_TASKS = ("halfcheetah-hindleg", "hopper-jump", "ant-sideways")

# The shipped Soft-PPO priors (priors/README.md), relative to the repository root.
DEFAULT_PRIORS: dict[str, str] = {
    "halfcheetah-hindleg": "priors/halfcheetah",
    "hopper-jump": "priors/hopper",
    "ant-sideways": "priors/ant",
}


@dataclass(frozen=True)
class Budget:
    """How much compute a preset gets.

    Attributes:
        name: ``paper``, ``1m``, ``local`` or ``smoke``.
        seeds: training / evaluation seeds; one job per (config, seed).
        train_steps: environment steps of every run trained from scratch.
        customize_steps: environment steps of every customization run.
        episodes: evaluation episodes per job (deterministic policy, env seeds ``10_000 + 1000 *
            seed + i``), so each table cell pools ``len(seeds) * episodes`` episodes.
        description: one line for ``tailor sweep --list`` and the docs.
    """

    name: str
    seeds: tuple[int, ...]
    train_steps: int
    customize_steps: int
    episodes: int
    description: str


BUDGETS: dict[str, Budget] = {
    "paper": Budget(
        "paper",
        seeds=(0, 1, 2, 3, 4),
        train_steps=5_000_000,
        customize_steps=5_000_000,
        episodes=100,
        description="the paper's: 5 seeds, 5M steps per run, 5 x 100 = 500 evaluation episodes",
    ),
    "local": Budget(
        "local",
        seeds=(0, 1),
        train_steps=150_000,
        customize_steps=300_000,
        episodes=10,
        description="2 seeds, 150k steps per run from scratch, 300k per customization, "
        "2 x 10 evaluation episodes (about 1.5 h for all three presets with 2 workers on 2 "
        "idle cores)",
    ),
    "1m": Budget(
        "1m",
        seeds=(0, 1, 2, 3, 4),
        train_steps=1_000_000,
        customize_steps=1_000_000,
        episodes=20,
        description="the public PPO benchmarks' budget: 5 seeds, 1M steps per run, 5 x 20 "
        "evaluation episodes (Tables I and III beside a single-file PPO's 1M-step returns)",
    ),
    "smoke": Budget(
        "smoke",
        seeds=(0,),
        train_steps=8192,
        customize_steps=8192,
        episodes=2,
        description="1 seed, 2 PPO iterations, 2 episodes: checks the plumbing, not the claims",
    ),
}


@dataclass(frozen=True)
class Job:
    """One run: train from scratch, customize a prior, or only evaluate a prior; then evaluate.

    Attributes:
        kind: ``"train"``, ``"customize"`` or ``"prior"`` (evaluation only).
        task: registered task name.
        method: method name (:mod:`tailor.methods`); ``"prior"`` for ``kind="prior"``.
        seed: training seed (PPO's ``seed``) and evaluation seed offset.
        steps: environment steps (0 for ``kind="prior"``).
        episodes: evaluation episodes.
        std_type: ``"global"`` or ``"state"`` (runs trained from scratch only; a customized actor
            keeps the prior's architecture).
        prior: path of the prior policy (``customize`` and ``prior`` jobs).
        ppo: extra keyword options of :func:`tailor.experiments.run.customize` /
            :func:`~tailor.experiments.run.train_prior` as ``(name, value)`` pairs: fields of
            the job's loop's config (``PPOConfig``, or ``SACConfig`` / ``SoftDQNConfig`` for an
            ``algo`` other than PPO; the name is the results files' key; tests use tiny
            batches, the frontier a ``kl_target`` or an ``omega``) and the coefficients
            ``omega_prime`` / ``alpha_hat`` / ``omega`` or ``alpha`` (a user sweep's grid,
            :mod:`tailor.experiments.grid`); part of the job's identity.
        tasks_file: a ``--tasks-file`` the worker loads before the job (a user's task; an
            absolute path on a filesystem every node shares); not part of the job's identity.
        algo: the customization's loop (``"ppo"``, ``"sac"``, ``"dqn"``; :func:`tailor.experiments.
            run.customize`'s ``algo``); named in the job's id when not ``"ppo"``.
        prior_options: :func:`tailor.priors.load_prior` options of the prior as ``(name,
            value)`` pairs (e.g. ``("std", 0.1)`` for a deterministic prior); part of the id.
    """

    kind: str
    task: str
    method: str
    seed: int
    steps: int
    episodes: int
    std_type: str = "global"
    prior: str | None = None
    ppo: tuple[tuple[str, Any], ...] = field(default=())
    tasks_file: str | None = None
    algo: str = "ppo"
    prior_options: tuple[tuple[str, Any], ...] = field(default=())

    @property
    def id(self) -> str:
        """``<task>/<name>``: the job's directory under a sweep's output directory."""
        extra = "".join(f"-{k}{v}" for k, v in (*self.prior_options, *self.ppo))
        if self.kind == "prior":
            name = f"prior-{Path(self.prior or '').name}"
        elif self.kind == "customize":
            algo = "" if self.algo == "ppo" else f"{self.algo}-"
            name = f"{self.method}-{algo}{_steps(self.steps)}-from-{Path(self.prior or '').name}"
        else:
            name = f"{self.method}-{self.std_type}-{_steps(self.steps)}"
        return f"{self.task}/{name}{extra}-seed{self.seed}"

    @property
    def eval_seed(self) -> int:
        """Env seed of the first evaluation episode (distinct from every training seed)."""
        return 10_000 + 1000 * self.seed

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["ppo"] = [list(p) for p in self.ppo]
        d["prior_options"] = [list(p) for p in self.prior_options]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Job:
        d = dict(d)
        for key in ("ppo", "prior_options"):  # an older result has no prior_options
            d[key] = tuple(tuple(p) for p in d.get(key, ()))
        return cls(**d)


def _steps(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


@dataclass(frozen=True)
class Preset:
    """One of the paper's experiments.

    Attributes:
        name: ``table1``, ``table2`` or ``table3``.
        title: the paper's caption, shortened.
        tasks: task names (rows of the table).
        train_methods: methods trained from scratch (one job per method, std type and seed).
        std_types: std parameterisations of the runs trained from scratch.
        customize_methods: methods that customize the prior of each task.
        evaluate_prior: add one evaluation-only job per seed for the prior.
        metric: the evaluation field a table reports first (``basic`` for training tables,
            ``total`` for customization) and by which the best seed is chosen.
    """

    name: str
    title: str
    tasks: tuple[str, ...] = PAPER_TASKS
    train_methods: tuple[str, ...] = ()
    std_types: tuple[str, ...] = ("global",)
    customize_methods: tuple[str, ...] = ()
    evaluate_prior: bool = False
    metric: str = "basic"


PRESETS: dict[str, Preset] = {
    "table1": Preset(
        "table1",
        "Table I: entropy-regularized PPO variants on the basic tasks",
        train_methods=("no-entropy", "end-entropy", "repeat-entropy", "soft"),
    ),
    "table2": Preset(
        "table2",
        "Table II: customization (prior, Greedy, KL, Residual PPO, full policy)",
        train_methods=("full",),
        customize_methods=("greedy", "kl", "residual"),
        evaluate_prior=True,
        metric="total",
    ),
    "table3": Preset(
        "table3",
        "Table III: global vs state-dependent std (Soft PPO)",
        train_methods=("soft",),
        std_types=("global", "state"),
    ),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise TailorError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def get_budget(name: str) -> Budget:
    if name not in BUDGETS:
        raise TailorError(f"unknown budget {name!r}; known budgets: {', '.join(BUDGETS)}")
    return BUDGETS[name]


def expand(
    preset: Preset | str,
    budget: Budget | str,
    priors: dict[str, str] | None = None,
    root: str | Path = ".",
) -> list[Job]:
    """Every job of ``preset`` under ``budget``, in a stable order (task, seed, method).

    Args:
        preset: a preset or its name.
        budget: a budget or its name.
        priors: task -> prior policy path, overriding :data:`DEFAULT_PRIORS` (e.g. freshly
            trained priors: ``{"hopper-jump": "sweeps/hopper-jump/soft-global-5M-seed0"}``).
        root: directory that relative prior paths are resolved against (the repository root for
            the shipped priors). Paths are made absolute so that workers in other directories
            (Ray) find them.

    Raises:
        TailorError: unknown preset or budget, a prior override for a task the preset lacks, or a
            missing prior for a customization preset.
    """
    preset = get_preset(preset) if isinstance(preset, str) else preset
    budget = get_budget(budget) if isinstance(budget, str) else budget
    priors = dict(priors or {})
    unknown = sorted(set(priors) - set(preset.tasks))
    if unknown:
        raise TailorError(
            f"--prior given for {', '.join(unknown)}, not a task of {preset.name} "
            f"({', '.join(preset.tasks)})"
        )
    jobs: list[Job] = []
    for task in preset.tasks:
        prior = None
        if preset.customize_methods or preset.evaluate_prior:
            given = priors.get(task, DEFAULT_PRIORS.get(task))
            if given is None:
                raise TailorError(f"{preset.name} needs a prior for task {task!r} (--prior)")
            prior = str(find_prior(given, root).resolve())
        for seed in budget.seeds:
            common = {"task": task, "seed": seed, "episodes": budget.episodes}
            if preset.evaluate_prior:
                jobs.append(Job("prior", method="prior", steps=0, prior=prior, **common))
            for method in preset.customize_methods:
                jobs.append(
                    Job(
                        "customize",
                        method=method,
                        steps=budget.customize_steps,
                        prior=prior,
                        **common,
                    )
                )
            for method in preset.train_methods:
                for std in preset.std_types:
                    jobs.append(
                        Job(
                            "train", method=method, steps=budget.train_steps, std_type=std, **common
                        )
                    )
    return jobs


def select(
    jobs: Sequence[Job],
    *,
    tasks: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    methods: Sequence[str] | None = None,
    std_types: Sequence[str] | None = None,
) -> list[Job]:
    """The jobs whose task, seed, method and std type are among the given ones, in their order.

    ``None`` keeps every value of that field. A subset of a preset runs the same jobs (same ids,
    same directories) as the whole preset, so the whole preset later finds them finished: this is
    how a sweep is split across machines or put in another order.

    Raises:
        TailorError: a given value that no job of ``jobs`` has (the message lists the ones they
            have), e.g. a seed outside the budget's.
    """
    wanted = {"task": tasks, "seed": seeds, "method": methods, "std_type": std_types}
    for field_name, values in wanted.items():
        if values is None:
            continue
        have = sorted({getattr(j, field_name) for j in jobs})  # one type per field
        unknown = [v for v in values if v not in have]
        if unknown:
            raise TailorError(
                f"no job has {field_name} {', '.join(map(str, unknown))}; "
                f"the jobs have {', '.join(map(str, have))}"
            )
    return [
        j
        for j in jobs
        if all(values is None or getattr(j, f) in values for f, values in wanted.items())
    ]
