#!/bin/bash
# The study behind tailor.experiments.selection: customize each zoo prior with a checkpoint every
# 4 iterations (defaults otherwise; ARS with --prior-std 0.1), then evaluate the prior and every
# checkpoint on 10 selection episodes (seed 1000000) and the 10 reported ones (seed 0).
# Usage: run.sh ZOO OUT SPEC...   (SPEC = algo:Env:seed, e.g. ppo:Hopper:2)
set -e
ZOO=${1:?ZOO}; OUT=${2:?OUT}; shift 2
export OMP_NUM_THREADS=1
T=$(dirname "$(command -v python)")/tailor
mkdir -p "$OUT"
for spec in "$@"; do
  IFS=: read -r algo env seed <<< "$spec"
  task=$([ "$env" = Hopper ] && echo hopper-jump || echo halfcheetah-hindleg)
  flags=$([ "$algo" = ars ] && echo "--prior-std 0.1" || true)
  out=$OUT/$algo-$env-seed$seed
  rm -rf "$out"
  $T customize --task $task --prior "$ZOO/$algo/$env-v3_1/$env-v3.zip" $flags --steps 200000 \
    --seed $seed --out "$out" --no-progress --checkpoint-every 4 > "$out.log" 2>&1
  python "$(dirname "$0")/evalck.py" "$out" $task
done
