#!/usr/bin/env bash
# Probe 2 of issue 15: is Residual PPO's drift at the shipped HalfCheetah prior optimization noise?
# Residual PPO from priors/halfcheetah, 2M steps, seed 0, each run evaluated on 20 deterministic
# episodes (seed 0). One knob per run against the paper coefficients (omega' 0.17, alpha_hat
# 0.13472). Resumable: a finished run (its eval JSON) is skipped.
# Usage: bash results/customization/probe2/run.sh RUNS_DIR   (from the repository root)
set -euo pipefail
RUNS=${1:-/tmp/hc-probe2}
OUT=results/customization/probe2
TAILOR=${TAILOR:-.venv/bin/tailor}
mkdir -p "$RUNS"
probe() {  # name, task, then customize flags
  local name=$1 task=$2; shift 2
  [ -f "$OUT/$name.json" ] && return 0
  rm -rf "$RUNS/$name"
  OMP_NUM_THREADS=1 "$TAILOR" customize --tasks-file $OUT/zero_addon.py --task "$task" \
    --prior priors/halfcheetah --method residual --steps 2000000 --seed 0 --out "$RUNS/$name" \
    --no-progress --no-tensorboard "$@"
  OMP_NUM_THREADS=1 "$TAILOR" evaluate --tasks-file $OUT/zero_addon.py --policy "$RUNS/$name" \
    --task halfcheetah-hindleg --episodes 20 --json "$OUT/$name.json"
}
probe default halfcheetah-hindleg
# the control: nothing to gain, so the basic return lost is the optimization's own cost
probe zero-addon halfcheetah-zero
# smaller steps: a 5x smaller KL target of the adaptive learning rate
probe kl0.002 halfcheetah-hindleg --desired-kl 0.002
# less noise per update: 4x the rollout (64 envs x 256 steps), a quarter of the updates
probe batch4x halfcheetah-hindleg --num-steps 256
# the full policy's objective r + r_R (omega = omega'/alpha = 1) at the prior's temperature
probe omega1 halfcheetah-hindleg --omega-prime 0.13472 --alpha-hat 0.13472
# more exploration than the prior's: a higher temperature than the prior's weight (the training
# policy broader than the prior; the evaluation is deterministic)
probe explore halfcheetah-hindleg --alpha-hat 0.25
# the prior's weight doubled at the paper's temperature: stays closer to the prior (a bracket)
probe omega-prime0.34 halfcheetah-hindleg --omega-prime 0.34
# no adaptive learning rate: a fixed 3e-4 (SB3's and CleanRL's PPO default)
probe fixed-lr halfcheetah-hindleg --schedule fixed --learning-rate 3e-4
