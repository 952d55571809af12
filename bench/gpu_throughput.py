"""Batched-tensor PPO throughput: tailor's residual PPO against rsl-rl's PPO, one env, one run.

    OMP_NUM_THREADS=1 .venv/bin/python bench/gpu_throughput.py [--device cuda|cpu]
        [--envs 256] [--iterations 10] [--rounds 2] [--hidden 128 128]

Both train on the same pure-torch batched point mass (:class:`tailor.envs.torch_pointmass.
TorchPointMass`, rsl-rl's ``VecEnv`` contract) on the same device, with the same settings:
``num_steps_per_env`` 24, 5 epochs x 4 minibatches, ELU networks of ``--hidden`` for actor and
critic, observation normalization, adaptive learning rate (desired KL 0.01), clipped value loss,
no entropy bonus (rsl-rl ``entropy_coef=0``). rsl-rl is ``OnPolicyRunner.learn`` (rsl-rl-lib as
installed; ``log_dir=None``, its console log silenced); tailor is
:func:`tailor.algos.tensor_ppo.train_tensor` with ``residual`` (omega' = alpha_hat = 0.01) from a
prior of the same architecture, so it also runs the prior's forward pass every step and the
reward reformulation; tailor's plain PPO (``no-entropy``, no prior) is printed for reference.

Measured: wall seconds of ``--iterations`` iterations after one warm-up iteration (on cuda,
synchronized), env steps/s = iterations x envs x 24 / seconds, best of ``--rounds`` (the two
libraries alternate). The last line is ``ratio_to_rsl_rl`` = tailor residual / rsl-rl steps/s.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import contextlib
import io
import time
from collections.abc import Callable

import torch

from tailor.algos.tensor_ppo import TensorPPOConfig, train_tensor
from tailor.envs.torch_pointmass import TorchPointMass
from tailor.methods import resolve
from tailor.nets import Actor, EmpiricalNormalization
from tailor.priors import PolicyPrior

T = 24


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(run: Callable[[int], None], iterations: int, device: torch.device) -> float:
    """Seconds of ``iterations`` iterations, after one warm-up (its own call)."""
    run(1)
    _sync(device)
    t0 = time.perf_counter()
    run(iterations)
    _sync(device)
    return time.perf_counter() - t0


def tailor_run(args: argparse.Namespace, device: torch.device, residual: bool) -> Callable:
    cfg = TensorPPOConfig(
        num_steps_per_env=T,
        num_epochs=5,
        num_minibatches=4,
        hidden=tuple(args.hidden),
        activation="elu",
        critic_warmup_fraction=0.0,
    )
    if residual:
        torch.manual_seed(1)
        prior = PolicyPrior(Actor(4, 2, args.hidden, "elu"), EmpiricalNormalization(4))
        method = resolve("residual", omega_prime=0.01, alpha_hat=0.01)
    else:
        prior, method = None, resolve("no-entropy")

    def run(iterations: int) -> None:
        env = TorchPointMass(args.envs, seed=0, device=device)
        cfg.num_iterations = iterations
        train_tensor(env, method, cfg, prior=prior)

    return run


def rsl_rl_run(args: argparse.Namespace, device: torch.device) -> Callable:
    from rsl_rl.runners import OnPolicyRunner

    def model(distribution: bool) -> dict:
        out = {
            "class_name": "MLPModel",
            "hidden_dims": list(args.hidden),
            "activation": "elu",
            "obs_normalization": True,
        }
        if distribution:
            out["distribution_cfg"] = {"class_name": "GaussianDistribution", "init_std": 1.0}
        return out

    cfg = {
        "num_steps_per_env": T,
        "save_interval": 10**9,
        "obs_groups": {"actor": ["policy"], "critic": ["policy"]},
        "algorithm": {
            "class_name": "PPO",
            "num_learning_epochs": 5,
            "num_mini_batches": 4,
            "entropy_coef": 0.0,
        },
        "actor": model(True),
        "critic": model(False),
    }

    def run(iterations: int) -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # its per-iteration console report
            env = TorchPointMass(args.envs, seed=0, device=device)
            runner = OnPolicyRunner(env, dict(cfg), log_dir=None, device=str(device))
            runner.learn(iterations)

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--envs", type=int, default=256)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--hidden", type=int, nargs="+", default=[128, 128])
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    from importlib.metadata import version

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu, 1 thread"
    print(
        f"point mass (torch), {args.envs} envs x {T} steps, hidden {args.hidden}, {name}, "
        f"torch {torch.__version__}, rsl-rl-lib {version('rsl-rl-lib')}"
    )
    runs = {
        "tailor residual PPO": tailor_run(args, device, residual=True),
        "rsl-rl PPO": rsl_rl_run(args, device),
        "tailor plain PPO": tailor_run(args, device, residual=False),
    }
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(args.rounds):
        for label, run in runs.items():
            best[label] = min(best[label], _timed(run, args.iterations, device))
    steps = args.iterations * args.envs * T
    rate = {label: steps / s for label, s in best.items()}
    for label, r in rate.items():
        print(f"  {label:<22}{r:>10.0f} steps/s  ({steps} steps in {best[label]:.2f} s)")
    print(f"ratio_to_rsl_rl={rate['tailor residual PPO'] / rate['rsl-rl PPO']:.3f}")


if __name__ == "__main__":
    main()
