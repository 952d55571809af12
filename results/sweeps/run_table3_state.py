"""Table III's state-dependent-std jobs at the 1m budget, alone (its global-std jobs are Table I's
Soft PPO runs, which the table1 sweep runs into the same directory). Same jobs, same directory as
`tailor sweep table3 --budget 1m --out results/sweeps/1m`, which then finds them finished."""

from tailor.experiments.presets import expand
from tailor.experiments.sweep import run_sweep

if __name__ == "__main__":  # the sweep's workers are spawned and import this file
    jobs = [j for j in expand("table3", "1m") if j.std_type == "state"]
    run_sweep(jobs, "results/sweeps/1m", workers=1, label="table3/1m (state std only)")
