"""Tensor PPO runs you can leave: metrics.csv, TensorBoard, checkpoints, an exact resume.

:class:`TensorRunState` is the hook :func:`tailor.algos.tensor_ppo.train_tensor` calls when it is
given a :class:`TensorRun`: :meth:`~TensorRunState.guard` around the loop (claims the run
directory through :func:`tailor.rundir.claim_run_dir`, kind ``"tensor-ppo"``, and turns Ctrl-C,
SIGTERM, SIGHUP into a stop request: :func:`tailor.rundir.stop_on_interrupt`),
:meth:`~TensorRunState.start` before the first iteration (a resume puts the saved state back and
says where to go on), :meth:`~TensorRunState.after_iteration` after each (a row of
``metrics.csv``, TensorBoard scalars under ``<run>/tb``, a checkpoint every ``checkpoint_every``
iterations, at the last one and at a stop) and :meth:`~TensorRunState.finish` after the last
(writes ``<run>/rsl-rl/model_<iterations>.pt``, :func:`~tailor.algos.rsl_rl_checkpoint.
save_rsl_rl_checkpoint`, which rsl-rl's ``OnPolicyRunner.load`` resumes).

A checkpoint is committed through :func:`tailor.rundir.commit_checkpoint` (``checkpoints/step-<N>/``
+ the manifest ``checkpoint.json``; older ones keep their policy only) and holds, as safetensors
with JSON headers (never pickle; each header also as a ``.json`` copy):

* ``policy.safetensors``: the actor and its normalizer as a tailor policy (``load_prior(run)``
  reads it; ``<run>/policy.safetensors`` is a copy of the latest);
* ``tensor-state.safetensors``: ``actor.*``, ``obs_norm.*``, ``critic.*``, ``return_norm.*``,
  Adam's state (``opt.*``, :func:`tailor.checkpoint.flatten_optimizer`), the generators
  (``rng.gen``: action noise and minibatch order; ``rng.torch``), what the loop carries
  (``loop.return_carry``, ``loop.ep_return``, ``loop.ended``) and the env's state (``env.*``,
  when the env has ``get_state``); the header: iteration, steps, learning rate, the KL
  controller's scale, the run's :class:`TensorRunRecord` (a resume must match it;
  ``num_iterations`` may grow) and the env state's JSON part.

**The env is the user's.** tailor cannot re-create an Isaac Lab or mjlab env: a resume takes
the env handed to it. The run continues exactly as the uninterrupted one (same metrics, same
weights; ``tests/test_tensor_run.py``) when the env can save and restore its state
(``get_state() -> (tensors, json)``, ``set_state(tensors, json)``, as :class:`~tailor.envs.
tensor_vec.TaskTensorEnv` and :class:`~tailor.envs.torch_pointmass.TorchPointMass` do) and the
torch build, device and thread count are the same. Otherwise the resumed run continues from
the env as it was handed in (its current episodes), with a warning.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from tailor.algos.logs import tensorboard_writer
from tailor.algos.rsl_rl_checkpoint import RslRlLayout, rsl_rl_state, save_rsl_rl_checkpoint
from tailor.checkpoint import POLICY_FILE, flatten_optimizer, unflatten_optimizer
from tailor.errors import TailorError
from tailor.methods import Method
from tailor.policyfile import policy_tensors
from tailor.rundir import (
    METRICS_FILE,
    InterruptRequest,
    MetricsLog,
    Retention,
    claim_run_dir,
    commit_checkpoint,
    config_change_error,
    config_diff,
    latest_checkpoint,
    stop_on_interrupt,
)

__all__ = [
    "RSL_RL_DIR",
    "STATE_FILE",
    "STATE_FORMAT",
    "TensorRun",
    "TensorRunRecord",
    "TensorRunState",
    "run_record",
]

KIND = "tensor-ppo"  # the run kind in run.json
STATE_FILE = "tensor-state.safetensors"
STATE_FORMAT = "tailor-tensor-state"
RSL_RL_DIR = "rsl-rl"  # <run>/rsl-rl/model_<iterations>.pt
# Config fields a resume may change; every other one must equal the saved value.
MUTABLE_ON_RESUME = frozenset({"num_iterations"})
_MODULES = ("actor", "obs_norm", "critic", "return_norm")
_DEFAULT_LAYOUT = RslRlLayout()  # frozen: one shared default is safe


@dataclass(frozen=True)
class TensorRun:
    """Where :func:`~tailor.algos.tensor_ppo.train_tensor` keeps its run, and how.

    Attributes:
        out_dir: the run directory (created; refused if it holds another run or model unless
            ``resume`` or ``overwrite``, :func:`tailor.rundir.claim_run_dir`).
        checkpoint_every: iterations between checkpoints (>= 1); the last iteration and a
            stop are always saved.
        resume: continue the run in ``out_dir`` from its latest checkpoint (the same env kind,
            method, coefficients, prior and config; ``num_iterations`` may grow).
        overwrite: replace a run already in ``out_dir``.
        tensorboard: also write TensorBoard scalars to ``<out_dir>/tb`` (x axis: env steps).
        rsl_rl: the layout of the rsl-rl checkpoint written at the end
            (:class:`~tailor.algos.rsl_rl_checkpoint.RslRlLayout`, checked before the first
            iteration); ``None``: none.
    """

    out_dir: str | Path
    checkpoint_every: int = 50
    resume: bool = False
    overwrite: bool = False
    tensorboard: bool = True
    rsl_rl: RslRlLayout | None = _DEFAULT_LAYOUT

    def __post_init__(self) -> None:
        every = self.checkpoint_every
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise TailorError(f"checkpoint_every must be a positive integer, got {every!r}")


@dataclass(frozen=True)
class TensorRunRecord:
    """What every checkpoint records about the run, for the checks of a resume.

    Attributes:
        config: the :class:`~tailor.algos.tensor_ppo.TensorPPOConfig` as JSON.
        method: the method's name.
        coefficients: its resolved coefficients.
        env: the env's class name, ``num_envs``, ``num_actions`` and observation size.
        prior: SHA-256 of the prior's weights and normalizer (``None``: no prior).
    """

    config: dict[str, Any]
    method: str
    coefficients: dict[str, float]
    env: dict[str, Any]
    prior: str | None


def run_record(
    config: Any, method: Method, env: Any, obs_dim: int, prior: Any | None
) -> TensorRunRecord:
    """The :class:`TensorRunRecord` of a run (``config``: a ``TensorPPOConfig`` dataclass)."""
    digest = None
    if prior is not None:
        h = hashlib.sha256()
        for module in (prior.actor, prior.obs_norm):
            for name, value in module.state_dict().items():
                h.update(name.encode())
                h.update(value.detach().cpu().double().numpy().tobytes())
        digest = h.hexdigest()
    shape = {"num_envs": int(env.num_envs), "num_actions": int(env.num_actions), "obs_dim": obs_dim}
    env_json = {"class": type(env).__name__, **shape}
    return TensorRunRecord(
        _json(asdict(config)), method.name, dict(method.coefficients), env_json, digest
    )


def _json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), for the resume checks."""
    return json.loads(json.dumps(value))


class TensorRunState:
    """The run directory of one tensor PPO run (see the module docstring).

    The loop object the hooks take (``loop``) has ``learner`` (a
    :class:`~tailor.algos.ppo_learner.PPOLearner`), ``env``, ``config`` (its ``PPOConfig``),
    ``ep_return`` ``[N]`` and ``ended`` ``[2]``.
    """

    def __init__(self, run: TensorRun, record: TensorRunRecord) -> None:
        self.run, self.record = run, record
        self.run_dir = Path(run.out_dir)
        self.start_iteration = 0
        self.saved_at: int | None = None
        self._csv: MetricsLog | None = None
        self._tb: Any = None
        self._t0 = time.perf_counter()

    @contextmanager
    def guard(self) -> Iterator[InterruptRequest]:
        """Hold the run directory and turn the first stop signal into a request the loop polls
        (a ``KeyboardInterrupt`` the loop raises leaves as :class:`tailor.rundir.Stopped`)."""
        claim = {"resume": self.run.resume, "overwrite": self.run.overwrite}
        notice = "finishing this iteration and writing a checkpoint (Ctrl-C again to stop at once)"
        with (
            claim_run_dir(self.run_dir, KIND, **claim),
            stop_on_interrupt(f"interrupted: {notice}") as interrupt,
        ):
            try:
                yield interrupt
            finally:
                self.close()

    def start(self, loop: Any) -> int:
        """Before the first iteration: the iterations done so far (on resume the learner, the
        loop's carried tensors and, where it can, the env are restored); opens the logs."""
        if self.run.rsl_rl is not None:  # refuse now what could not be written at the end
            try:
                rsl_rl_state(loop.learner, 0, self.run.rsl_rl)
            except TailorError as exc:
                raise TailorError(
                    f"{exc}; pass TensorRun(rsl_rl=None) to train without the rsl-rl checkpoint"
                ) from None
        if self.run.resume:
            self.start_iteration = self._restore(loop)
        self.saved_at = self.start_iteration
        if self.run.tensorboard:
            first = self.start_iteration * loop.config.batch_size + 1
            self._tb = tensorboard_writer(
                self.run_dir, purge_step=first if self.run.resume else None
            )
        self._t0 = time.perf_counter()
        return self.start_iteration

    def after_iteration(self, loop: Any, row: dict[str, Any], save: bool = False) -> None:
        """Log ``row``; commit a checkpoint every ``checkpoint_every`` iterations and when
        ``save`` (the last iteration, a stop)."""
        out = {**row, "wall_s": round(time.perf_counter() - self._t0, 3)}
        if self._csv is None:  # the columns are the loop's own keys
            resume_at = self.start_iteration if self.run.resume else None
            self._csv = MetricsLog(self.run_dir / METRICS_FILE, tuple(out), resume_at=resume_at)
        self._csv.write(out)
        if self._tb is not None:
            for key, value in row.items():
                if isinstance(value, float) and key not in ("iteration", "steps"):
                    self._tb.add_scalar(key, value, row["steps"])
            self._tb.flush()
        if save or row["iteration"] % self.run.checkpoint_every == 0:
            self.save(loop, row["iteration"])

    def finish(self, loop: Any, iterations: int) -> None:
        """After the loop (done or stopped): commit the last state if it is not saved yet and
        write the rsl-rl checkpoint of ``iterations``."""
        if self.saved_at != iterations:
            self.save(loop, iterations)
        if self.run.rsl_rl is not None:
            path = self.run_dir / RSL_RL_DIR / f"model_{iterations}.pt"
            path.parent.mkdir(exist_ok=True)
            save_rsl_rl_checkpoint(path, loop.learner, iterations, self.run.rsl_rl, overwrite=True)
        self.close()

    def close(self) -> None:
        """Close metrics.csv and TensorBoard (idempotent)."""
        for part in (self._csv, self._tb):
            if part is not None:
                part.close()
        self._csv = self._tb = None

    # --- checkpoints ------------------------------------------------------------------------

    def save(self, loop: Any, iteration: int) -> None:
        """Commit the policy and the whole training state after ``iteration`` iterations."""
        learner = loop.learner
        steps = iteration * loop.config.batch_size
        tensors: dict[str, torch.Tensor] = {}
        for name in _MODULES:
            state = getattr(learner, name).state_dict()
            tensors.update({f"{name}.{k}": v for k, v in state.items()})
        flat, optimizer = flatten_optimizer(learner.optimizer.state_dict())
        tensors.update({f"opt.{k}": v for k, v in flat.items()})
        tensors["rng.gen"] = learner.gen.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["loop.return_carry"] = learner.return_carry
        tensors["loop.ep_return"], tensors["loop.ended"] = loop.ep_return, loop.ended
        env_state = _env_state(loop.env)
        if env_state is not None:
            tensors.update({f"env.{k}": v for k, v in env_state[0].items()})
        header = {
            "format": STATE_FORMAT,
            "iteration": iteration,
            "steps": steps,
            "learning_rate": learner.lr,
            "kl_scale": learner.kl_scale,
            "record": asdict(self.record),
            "optimizer": optimizer,
            "env": None if env_state is None else env_state[1],
        }
        meta = {
            "kind": "ppo",
            "trainer": "tensor_ppo",
            "env": self.record.env["class"],
            "method": self.record.method,
            "coefficients": self.record.coefficients,
            "seed": self.record.config.get("seed"),
            "steps": steps,
            "iteration": iteration,
        }
        policy, policy_meta = policy_tensors(learner.actor, learner.obs_norm, meta)
        files = {POLICY_FILE: (_cpu(policy), policy_meta), STATE_FILE: (_cpu(tensors), header)}
        commit_checkpoint(
            self.run_dir, files, steps, Retention(), json_copies=(POLICY_FILE, STATE_FILE)
        )
        self.saved_at = iteration

    def _restore(self, loop: Any) -> int:
        """Put the latest checkpoint back into ``loop``; returns its iteration."""
        ckpt = latest_checkpoint(self.run_dir)
        if ckpt is None or STATE_FILE not in ckpt.files:
            raise TailorError(
                f"cannot resume {str(self.run_dir)!r}: it has no tensor PPO checkpoint (the run "
                "stopped before its first one); start it afresh with overwrite=True"
            )
        tensors, header = ckpt.load(STATE_FILE, STATE_FORMAT)
        self._check_record(header.get("record"))
        learner = loop.learner
        device = loop.ep_return.device
        try:
            for name in _MODULES:
                getattr(learner, name).load_state_dict(_strip(tensors, f"{name}."))
            opt = unflatten_optimizer(_strip(tensors, "opt."), header["optimizer"])
            learner.optimizer.load_state_dict(opt)
            learner.gen.set_state(tensors["rng.gen"])
            torch.set_rng_state(tensors["rng.torch"])
            learner.return_carry = tensors["loop.return_carry"].to(device).clone()
            loop.ep_return.copy_(tensors["loop.ep_return"])
            loop.ended.copy_(tensors["loop.ended"])
            learner.lr = float(header["learning_rate"])
            learner.kl_scale = float(header["kl_scale"])
            iteration = int(header["iteration"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise TailorError(
                f"cannot resume {str(self.run_dir)!r}: its checkpoint does not match this run "
                f"({type(exc).__name__}: {exc})"
            ) from None
        _restore_env(loop.env, _strip(tensors, "env."), header.get("env"), self.run_dir)
        return iteration

    def _check_record(self, saved: Any) -> None:
        """Raise unless the saved run trains what this one would (``num_iterations`` may
        differ)."""
        if not isinstance(saved, dict):
            raise TailorError(f"cannot resume {str(self.run_dir)!r}: its checkpoint has no record")
        given = _json(asdict(self.record))
        for key in ("method", "coefficients", "env", "prior"):
            if saved.get(key) != given[key]:
                what = "another prior" if key == "prior" else f"{key} {saved.get(key)!r}"
                now = "this one" if key == "prior" else repr(given[key])
                raise TailorError(
                    f"cannot resume {str(self.run_dir)!r}: it was run with {what}, not {now}; "
                    "resume with the run's own env, method, coefficients and prior, or start a "
                    "new run in another directory"
                )
        old = saved.get("config") or {}
        diff = config_diff(old, given["config"], set(MUTABLE_ON_RESUME))
        if diff:
            raise config_change_error(self.run_dir, old, given["config"], diff)


def _env_state(env: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The env's ``get_state()`` when it has one (the optional part of the contract)."""
    get = getattr(env, "get_state", None)
    return get() if callable(get) else None


def _restore_env(
    env: Any, tensors: dict[str, torch.Tensor], info: dict[str, Any] | None, run_dir: Path
) -> None:
    """``env.set_state`` of the saved env state, or a warning that the resume is not exact."""
    setter = getattr(env, "set_state", None)
    if info is not None and callable(setter):
        setter(tensors, info)
        return
    why = (
        "its checkpoint has no env state (the env has no get_state)"
        if info is None
        else f"{type(env).__name__} has no set_state"
    )
    warnings.warn(
        f"resuming {str(run_dir)!r} with the env as it was handed in: {why}, so the run does "
        "not continue exactly as an uninterrupted one would",
        stacklevel=3,
    )


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached contiguous CPU tensors (safetensors writes those; a GPU run saves as well)."""
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
