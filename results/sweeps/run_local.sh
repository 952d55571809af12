#!/usr/bin/env bash
# The local budget of the three presets, one after the other, into one sweep directory (Table III's
# global-std runs are Table I's Soft PPO runs, so they run once). Run from the repository root.
set -u
for preset in table2 table3 table1; do
  /usr/bin/time -f "$preset wall %e s" .venv/bin/tailor sweep "$preset" --budget local \
    --out results/sweeps/local --workers 2
done
