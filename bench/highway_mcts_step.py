"""What one real step of residual MCTS on highway-keepright costs: state copies and env steps.

    OMP_NUM_THREADS=1 .venv/bin/python bench/highway_mcts_step.py [--repeats 200] [--seed 0]
        [--simulations 150] [--horizon 6]

Measures, on the unwrapped ``highway-keepright`` env a few steps into an episode:

* ``copy.deepcopy(env)`` (what ``TaskModel`` does today for highway-env: one per
  ``get_state`` and one per ``set_state``) against :func:`tailor.envs.highway_fast.snapshot` and
  :func:`~tailor.envs.highway_fast.restore` (in place, same env);
* one env step (observation, reward, add-on included) of highway-env's own code
  (``make_env(task, fast=False)``) and of the fast path, each stepped from a restored snapshot
  with random actions, as a search does.

Then an estimate of one real step of the search (``--simulations`` x ``--horizon``, the
RQL paper's 150 x 6): each simulation expands one node (set the parent's state, step, save the
child's state) and rolls the prior out from it to the horizon (set the state, about ``horizon -
depth`` steps). The estimate counts ``simulations x (2 set + 1 get + horizon steps)``: an upper
bound on the steps (a rollout starts below the root), no policy or tree cost.

Last, measured rather than estimated: real steps of residual MCTS itself (``TaskModel`` with
snapshot/restore on the fast path, a soft-DQN prior network of random weights: the cost does not
depend on them), both searches: the batched one ``run.evaluate`` uses and the sequential one.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import copy
import time
from collections.abc import Callable

import numpy as np
import torch

from tailor.algos.mcts import (
    BatchedResidualMCTS,
    LoopModel,
    MCTSConfig,
    ResidualMCTS,
    TaskModel,
    numpy_log_prior,
)
from tailor.envs import make_env
from tailor.envs.highway_fast import restore, snapshot
from tailor.nets import mlp


def best_ms(fn: Callable[[], None], repeats: int, rounds: int = 3) -> float:
    """Best over ``rounds`` of the mean CPU milliseconds of ``repeats`` calls of ``fn``."""
    best = np.inf
    for _ in range(rounds):
        c0 = time.process_time()
        for _ in range(repeats):
            fn()
        best = min(best, (time.process_time() - c0) / repeats * 1e3)
    return best


def step_ms(fast: bool, repeats: int, horizon: int, seed: int) -> tuple[float, float, float, float]:
    """``(deepcopy ms, snapshot ms, restore ms, step ms)`` of one env (see the module doc)."""
    env = make_env("highway-keepright", fast=fast)
    env.reset(seed=seed)
    for a in (1, 3, 1):
        env.step(a)
    u = env.unwrapped
    state = snapshot(u)
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, 5, (repeats, horizon))
    it = iter(range(10**9))

    def rollout() -> None:  # a restore and `horizon` steps, as an expansion + rollout does
        k = next(it) % repeats
        restore(u, state)
        for a in actions[k]:
            _, _, terminated, truncated, _ = env.step(int(a))
            if terminated or truncated:
                break

    restore_only = best_ms(lambda: restore(u, state), repeats)
    per_rollout = best_ms(rollout, max(repeats // horizon, 5))
    steps = _mean_steps(env, u, state, actions, horizon)
    return (
        best_ms(lambda: copy.deepcopy(u), max(repeats // 10, 5)),
        best_ms(lambda: snapshot(u), repeats),
        restore_only,
        (per_rollout - restore_only) / steps,
    )


def _mean_steps(env, u, state: dict, actions: np.ndarray, horizon: int) -> float:
    """The mean number of steps the rollouts take (a crash ends one early)."""
    total = 0
    for row in actions:
        restore(u, state)
        for a in row:
            total += 1
            _, _, terminated, truncated, _ = env.step(int(a))
            if terminated or truncated:
                break
    restore(u, state)
    return total / len(actions)


def search_ms(batched: bool, sims: int, horizon: int, seed: int, steps: int) -> tuple[float, float]:
    """``(wall ms, CPU ms)`` per real step of residual MCTS over ``steps`` real steps."""
    torch.manual_seed(seed)
    env = make_env("highway-keepright")
    obs, _ = env.reset(seed=seed)
    log_prior = numpy_log_prior(mlp([obs.size, 64, 64, env.action_space.n]), 0.05)
    cfg = MCTSConfig(simulations=sims, horizon=horizon, seed=seed, batched=batched)
    if batched:
        search = BatchedResidualMCTS(LoopModel(TaskModel("highway-keepright")), log_prior, cfg)

        def act(o: np.ndarray) -> int:
            return search.act(o, env)
    else:
        model = TaskModel("highway-keepright")
        seq = ResidualMCTS(model, log_prior, cfg)

        def act(o: np.ndarray) -> int:
            model.sync(env)
            return seq.act(o)

    wall = cpu = 0.0
    done = 0
    while done < steps:
        t0, c0 = time.perf_counter(), time.process_time()
        a = act(obs)
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        done += 1
        obs, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            obs, _ = env.reset(seed=seed + done)
    return wall / steps * 1e3, cpu / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--simulations", type=int, default=150)
    parser.add_argument("--horizon", type=int, default=6)
    parser.add_argument("--real-steps", type=int, default=5, help="real steps of the search")
    args = parser.parse_args()
    sims, h = args.simulations, args.horizon
    ref = step_ms(False, max(args.repeats // 6, 12), h, args.seed)
    fast = step_ms(True, args.repeats, h, args.seed)
    print("CPU milliseconds, highway-keepright (unwrapped env, 31 vehicles), best of 3 rounds")
    print()
    print("| | highway-env code (fast=False) | tailor fast path |")
    print("|---|---:|---:|")
    print(f"| copy.deepcopy(env) | {ref[0]:.2f} | {fast[0]:.2f} |")
    print(f"| snapshot(env) | {ref[1]:.3f} | {fast[1]:.3f} |")
    print(f"| restore(env, state) | {ref[2]:.3f} | {fast[2]:.3f} |")
    print(f"| env step | {ref[3]:.2f} | {fast[3]:.2f} |")
    deep = sims * (3 * ref[0] + h * ref[3])
    both = sims * (2 * fast[2] + fast[1] + h * fast[3])
    snap_slow = sims * (2 * ref[2] + ref[1] + h * ref[3])
    print()
    print(f"Estimated search cost of one real step ({sims} simulations x horizon {h}: 2 state")
    print("sets, 1 state save and horizon env steps per simulation):")
    print()
    print(f"* deepcopy + highway-env steps (today): {deep:.0f} ms")
    print(f"* snapshot/restore + highway-env steps: {snap_slow:.0f} ms")
    print(f"* snapshot/restore + fast steps: {both:.0f} ms ({deep / both:.0f}x less)")
    print()
    print(
        f"Measured: residual MCTS, {sims} simulations x horizon {h}, {args.real_steps} real steps"
    )
    print()
    print("| search | ms per real step (wall) | ms per real step (CPU) |")
    print("|---|---:|---:|")
    for batched, name in ((True, "batched (run.evaluate's)"), (False, "sequential")):
        w, c = search_ms(batched, sims, h, args.seed, args.real_steps)
        print(f"| {name} | {w:.0f} | {c:.0f} |")


if __name__ == "__main__":
    main()
