#!/usr/bin/env bash
# The trade-off sweep of results/lm/tradeoff.md: one add-on reward per call (run both rewards
# side by side, one CPU thread each). Usage: results/lm/run_sweep.sh REWARD [WORKDIR]
# Models go to WORKDIR (default /tmp/lm_sweep, not committed); metrics JSONs and wall times to
# results/lm/sweep/.
set -euo pipefail
export OMP_NUM_THREADS=1
REWARD=$1
WORK=${2:-/tmp/lm_sweep}
PRIOR=priors/lm-names
TAILOR=${TAILOR:-.venv/bin/tailor}
OUT=results/lm/sweep
TAG=${REWARD//[:]/_}
mkdir -p "$OUT" "$WORK"
timed() {  # timed NAME cmd...: run, append "NAME seconds" to the wall-time log
  local name=$1; shift
  local t0=$(date +%s.%N)
  "$@" > /dev/null
  echo "$name $(echo "$(date +%s.%N) - $t0" | bc)" >> "$OUT/walltimes_${TAG}.txt"
}
EVAL="--samples 512 --seed 1000"
timed "eval-prior-$TAG" $TAILOR lm evaluate --model $PRIOR --prior $PRIOR --reward "$REWARD" $EVAL \
  --json "$OUT/${TAG}__prior__0.json"
for SEED in 0 1 2; do
  for METHOD in residual kl greedy; do
    timed "customize-$TAG-$METHOD-$SEED" $TAILOR lm customize --prior $PRIOR --reward "$REWARD" \
      --method $METHOD --steps 20 --seed $SEED --out "$WORK/${TAG}__${METHOD}__${SEED}" --quiet
  done
  for METHOD in dpo ce-dpo decoupled-dpo; do
    timed "customize-$TAG-$METHOD-$SEED" $TAILOR lm customize --prior $PRIOR --reward "$REWARD" \
      --method $METHOD --steps 100 --seed $SEED --out "$WORK/${TAG}__${METHOD}__${SEED}" --quiet
  done
  for METHOD in residual kl greedy dpo ce-dpo decoupled-dpo; do
    timed "eval-$TAG-$METHOD-$SEED" $TAILOR lm evaluate --model "$WORK/${TAG}__${METHOD}__${SEED}" \
      --prior $PRIOR --reward "$REWARD" $EVAL --json "$OUT/${TAG}__${METHOD}__${SEED}.json"
  done
done
