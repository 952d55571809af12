#!/usr/bin/env bash
# Hopper-jump: does the customized policy give up episode length (the basic task) for height?
# Residual PPO from the shipped prior, paper coefficients, 500k steps, seed 0, then 20
# deterministic episodes (seed 0); one knob per run. Resumable like run.sh.
# Usage: bash results/customization/probe/hopper.sh RUNS_DIR   (from the repository root)
set -euo pipefail
RUNS=${1:-/tmp/hop-probe}
OUT=results/customization/probe
TAILOR=${TAILOR:-.venv/bin/tailor}
mkdir -p "$RUNS"
probe() {
  local name=$1; shift
  [ -f "$OUT/$name.json" ] && return 0
  rm -rf "$RUNS/$name"
  OMP_NUM_THREADS=1 "$TAILOR" customize --task hopper-jump --prior priors/hopper \
    --method residual --steps 500000 --seed 0 --out "$RUNS/$name" --no-progress \
    --no-tensorboard "$@"
  OMP_NUM_THREADS=1 "$TAILOR" evaluate --policy "$RUNS/$name" --episodes 20 --json "$OUT/$name.json"
}
[ -f "$OUT/hopper-prior.json" ] || OMP_NUM_THREADS=1 "$TAILOR" evaluate --policy priors/hopper \
  --episodes 20 --json "$OUT/hopper-prior.json"
probe hopper-default
probe hopper-gamma0.999 --gamma 0.999
probe hopper-omega0.05 --omega-prime 0.05
