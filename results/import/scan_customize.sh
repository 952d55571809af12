#!/bin/bash
# tailor customize (defaults, few steps) on every zoo agent whose env has a tailor task; flags tracebacks.
cd "${1:?usage: scan_customize.sh ZOO_DIR [TAILOR]}"
export OMP_NUM_THREADS=1
T=${2:-tailor}
declare -A TASK=( [HalfCheetah-v3]=halfcheetah-hindleg [Hopper-v3]=hopper-jump [Ant-v3]=ant-sideways [MountainCarContinuous-v0]=mountaincar-noleft [CartPole-v1]=cartpole-centered )
for d in */HalfCheetah-v3_1 */Hopper-v3_1 */Ant-v3_1 */MountainCarContinuous-v0_1 */CartPole-v1_1; do
  env=$(basename $d _1); algo=$(dirname $d); zip=$d/$env.zip
  [ -f "$zip" ] || { echo "$d: no zip (LFS)"; continue; }
  extra=""
  case $algo in dqn|qrdqn) extra="--prior-temperature 0.1";; ddpg|td3) extra="--prior-std 0.1";;
    ars) extra="--prior-std 0.1"; [ $env = CartPole-v1 ] && extra="--prior-temperature 0.1";; esac
  out=/tmp/scan-cust/$algo-$env; rm -rf $out
  timeout 300 $T customize --task ${TASK[$env]} --prior $zip $extra --steps 4096 --out $out --no-progress > /tmp/scan-cust-$algo-$env.log 2>&1
  rc=$?
  if grep -q Traceback /tmp/scan-cust-$algo-$env.log; then res="TRACEBACK: $(grep -E '^[A-Za-z]+Error' /tmp/scan-cust-$algo-$env.log | tail -1)"; 
  elif [ $rc -eq 0 ]; then res="ok ($(grep -o -- '--algo [a-z]*' /tmp/scan-cust-$algo-$env.log | head -1))";
  else res="rc=$rc: $(grep '^error' /tmp/scan-cust-$algo-$env.log | cut -c1-160)"; fi
  echo "$d: $res"
done
