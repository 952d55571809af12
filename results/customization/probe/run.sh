#!/usr/bin/env bash
# Why does Residual PPO stay at the shipped HalfCheetah prior? One knob at a time, 1M steps each,
# paper coefficients (omega' 0.17, alpha_hat 0.13472), seed 0; each run evaluated on 20
# deterministic episodes (seed 0). Resumable: a finished run (its eval JSON) is skipped.
# Usage: bash results/customization/probe/run.sh RUNS_DIR   (from the repository root)
set -euo pipefail
RUNS=${1:-/tmp/hc-probe}
OUT=results/customization/probe
TAILOR=${TAILOR:-.venv/bin/tailor}
mkdir -p "$RUNS"
probe() {  # name, then customize flags
  local name=$1; shift
  [ -f "$OUT/$name.json" ] && return 0
  rm -rf "$RUNS/$name"
  OMP_NUM_THREADS=1 "$TAILOR" customize --task halfcheetah-hindleg --prior priors/halfcheetah \
    --method residual --steps 1000000 --seed 0 --out "$RUNS/$name" --no-progress \
    --no-tensorboard "$@"
  OMP_NUM_THREADS=1 "$TAILOR" evaluate --policy "$RUNS/$name" --episodes 20 --json "$OUT/$name.json"
}
probe default
probe kl0.05 --desired-kl 0.05
probe epochs10 --num-epochs 10
probe no-reward-norm --no-normalize-rewards
probe warmup0.2 --critic-warmup-fraction 0.2
probe lam0.99 --lam 0.99
probe gamma0.995 --gamma 0.995
# The same ratio omega'/alpha_hat ~ 1.26, less weight on the prior (omega = omega'/alpha 0.74, 0.37)
probe omega0.1 --omega-prime 0.1 --alpha-hat 0.08
probe omega0.05 --omega-prime 0.05 --alpha-hat 0.04
