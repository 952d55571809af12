#!/usr/bin/env bash
# Probe 3 of issue 15: the trade-off Residual PPO can reach from the shipped HalfCheetah prior.
# Residual PPO with omega' = alpha_hat = beta (the prior's shape kept, the add-on weighted 1/beta
# against it: the paper's KL PPO), 5M steps (the paper's budget), seed 0, each run evaluated on
# 100 deterministic episodes (seed 0), as the paper-budget sweep does. Resumable.
# Usage: bash results/customization/probe3/run.sh RUNS_DIR   (from the repository root)
set -euo pipefail
RUNS=${1:-/tmp/hc-probe3}
OUT=results/customization/probe3
TAILOR=${TAILOR:-.venv/bin/tailor}
mkdir -p "$RUNS"
for beta in ${BETAS:-0.13472 0.09 0.075 0.06}; do
  name=beta$beta
  [ -f "$OUT/$name.json" ] && continue
  rm -rf "$RUNS/$name"
  OMP_NUM_THREADS=1 "$TAILOR" customize --task halfcheetah-hindleg --prior priors/halfcheetah \
    --method residual --omega-prime "$beta" --alpha-hat "$beta" --steps 5000000 --seed 0 \
    --out "$RUNS/$name" --no-progress --no-tensorboard
  OMP_NUM_THREADS=1 "$TAILOR" evaluate --policy "$RUNS/$name" --episodes 100 \
    --json "$OUT/$name.json"
done
