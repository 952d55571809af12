#!/usr/bin/env bash
# Writes results/customization/gaits.md (from the repository root). PROBE3 is where
# `bash results/customization/probe3/run.sh DIR` left its run directories.
set -euo pipefail
PROBE3=${1:-/tmp/hc-probe3}
P=results/sweeps/paper/halfcheetah-hindleg
args=(
  "Residual (sweep s0)=$P/residual-5M-from-halfcheetah-seed0/policy.safetensors"
  "KL (sweep s0)=$P/kl-5M-from-halfcheetah-seed0/policy.safetensors"
  "β 0.09=$PROBE3/beta0.09/policy.safetensors"
  "β 0.075=$PROBE3/beta0.075/policy.safetensors"
  "β 0.06=$PROBE3/beta0.06/policy.safetensors"
  "Greedy (sweep s0)=$P/greedy-5M-from-halfcheetah-seed0/policy.safetensors"
  "full (sweep s0)=$P/full-global-5M-seed0/policy.safetensors"
  "full (sweep s1)=$P/full-global-5M-seed1/policy.safetensors"
  "full (sweep s2)=$P/full-global-5M-seed2/policy.safetensors"
  "full (sweep s3)=$P/full-global-5M-seed3/policy.safetensors"
)
table=$(OMP_NUM_THREADS=1 .venv/bin/python results/customization/gaits.py "${args[@]}")
cat > results/customization/gaits.md <<MD
# HalfCheetah gaits: prior, customized and full policies

\`bash results/customization/gaits.sh /tmp/hc-probe3\` (runs \`results/customization/gaits.py\` on
the paper sweep's seed-0 policies, all four full policies, and probe 3's β runs).

$table

Columns (the script's docstring has the details): mean |angle| of each hinge joint over 5
deterministic episodes (seeds 0-4, 1000 steps), the stride frequency (FFT peak of bthigh), the
forward speed, the RMS distance of the applied (clipped) mean action from the prior's on the
policy's own states, basic and add-on reward per step, KL(pi || pi_prior) per step (and its lower
bound with both means clipped to [-1, 1] at the prior's std), and Residual PPO's objective with
the paper's coefficients (omega' 0.17, alpha_hat 0.13472) summed over an episode on those
states. Greedy's std has diverged (1e20 and more: see results/customization.md), so its KL is
infinite.
MD
echo "wrote results/customization/gaits.md"
