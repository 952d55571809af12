#!/bin/bash
# ARS priors under other --prior-std values (tailor at 6159f74e, last iterate kept: before the
# kept-iterate rule): customize 200k steps with the defaults, evaluate 10 episodes.
# Usage: STDS="0.05 0.02" ENVS="Hopper HalfCheetah" SEEDS="0 1 2" run.sh ZOO OUT
# Prints: env, std, seed, basic return, add-on return, shortest episode.
ZOO=${1:?ZOO}; OUT=${2:?OUT}
export OMP_NUM_THREADS=1
T=$(dirname "$(command -v python)")/tailor
mkdir -p "$OUT"
for std in $STDS; do for env in $ENVS; do for seed in $SEEDS; do
  task=$([ "$env" = Hopper ] && echo hopper-jump || echo halfcheetah-hindleg)
  out=$OUT/$env-std$std-seed$seed
  rm -rf "$out"
  $T customize --task $task --prior "$ZOO/ars/$env-v3_1/$env-v3.zip" --prior-std $std \
    --steps 200000 --seed $seed --out "$out" --no-progress > "$out.log" 2>&1
  $T evaluate --policy "$out" --task $task --episodes 10 --json "$out.json" >> "$out.log" 2>&1
  python -c "import json;d=json.load(open('$out.json'));print('$env std=$std seed=$seed', round(d['basic']['mean'],1), round(d['addon']['mean'],1), min(d['per_episode']['length']))"
done; done; done
