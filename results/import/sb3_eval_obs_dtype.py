"""SB3's own deterministic evaluation of the RL-Zoo-layout HalfCheetah prior, on gymnasium's
float64 observations and on observations cast to float32 first (what tailor's environments
give a policy); 20 episodes, seeds 1..20.

Usage: python results/import/sb3_eval_obs_dtype.py RUN_DIR OUT.json
(RUN_DIR: <out>/ppo/HalfCheetah-v5_1 of sb3_halfcheetah.py)
"""

import json
import sys

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

torch.set_num_threads(1)
run = sys.argv[1]
model = PPO.load(f"{run}/HalfCheetah-v5.zip", device="cpu")
stats = VecNormalize.load(
    f"{run}/HalfCheetah-v5/vecnormalize.pkl", DummyVecEnv([lambda: gym.make("HalfCheetah-v5")])
)
out = {}
for cast in (False, True):
    env = gym.make("HalfCheetah-v5")
    rets = []
    for i in range(20):
        obs, _ = env.reset(seed=1 + i)
        total, done = 0.0, False
        while not done:
            o = obs.astype(np.float32) if cast else obs
            a, _ = model.predict(stats.normalize_obs(o[None]), deterministic=True)
            obs, r, term, trunc, _ = env.step(a[0])
            total += float(r)
            done = term or trunc
        rets.append(total)
    out["float32_obs" if cast else "float64_obs"] = rets
    print(cast, [round(x) for x in rets], np.mean(rets), np.std(rets), flush=True)
json.dump(out, open(sys.argv[2], "w"), indent=1)
