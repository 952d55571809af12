"""Are the customized HalfCheetah policies the prior's gait, and is the full policy another one?

    OMP_NUM_THREADS=1 .venv/bin/python results/customization/gaits.py NAME=POLICY [NAME=POLICY ...]

For the prior (priors/halfcheetah) and each POLICY (a run directory or policy.safetensors):
5 deterministic episodes (seeds 0-4, 1000 steps) of halfcheetah-hindleg; per joint, the mean
|angle| of the six hinge joints (bthigh is the add-on's) over the steps, the dominant stride
frequency (FFT peak of bthigh's angle, strides per second at dt = 0.05 s), the forward speed, and
the distance of the policy from the prior on its own states: the RMS over steps and action
dimensions of clip(mu_theta(s)) - clip(mu_prior(s)) (actions clipped to [-1, 1] as the env does).
Also, on the same states: KL(pi_theta || pi_prior) per step (and, as a lower bound for a policy
that applies the same mean actions, the KL with both means clipped to [-1, 1] at the prior's std),
and Residual PPO's own objective
with the paper's coefficients summed over an episode (undiscounted, in expectation over the
policy's Gaussian): J_R = sum_t [r_R - omega' KL - (omega' - alpha_hat) H(pi_theta)], where
r_R + E[omega' log pi_prior - alpha_hat log pi_theta] = r_R - omega' KL - (omega' - alpha_hat) H.
Prints one markdown table.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from tailor.envs import VecEnv
from tailor.nets import gaussian_kl
from tailor.priors import load_prior

TASK = "halfcheetah-hindleg"
JOINTS = ["bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot"]
DT = 0.05  # HalfCheetah-v5: timestep 0.01 x frame_skip 5
OMEGA_PRIME, ALPHA_HAT = 0.17, 0.13472  # the paper's Residual PPO coefficients for HalfCheetah


def gait(policy_path: str, prior_path: str = "priors/halfcheetah") -> dict[str, float]:
    policy, prior = load_prior(policy_path), load_prior(prior_path)
    angles, speed, dist, kls, kls_clip, ents, addon, basic = [], [], [], [], [], [], [], []
    with VecEnv(TASK, 5, seed=0) as env:
        model = env._backend.model
        addr = [model.jnt_qposadr[model.joint(j).id] for j in JOINTS]
        obs = env.reset()
        for _ in range(1000):
            o = torch.from_numpy(obs)
            with torch.no_grad():
                mean, log_std = policy.distribution(o)
                pmean, plog_std = prior.distribution(o)
                kls.append(gaussian_kl(mean, log_std, pmean, plog_std).numpy())
                # the cheapest Gaussian that applies the same mean action: means clipped
                kl_clip = gaussian_kl(mean.clamp(-1, 1), plog_std, pmean.clamp(-1, 1), plog_std)
                kls_clip.append(kl_clip.numpy())
                log_std = log_std.expand_as(mean)
                ents.append((log_std + 0.5 * np.log(2 * np.pi * np.e)).sum(-1).numpy())
            # the env clips actions to [-1, 1]: compare what is applied
            dist.append(((mean.clamp(-1, 1) - pmean.clamp(-1, 1)) ** 2).numpy())
            step = env.step(mean.numpy())
            angles.append(env._backend.qpos[:, addr].copy())  # [5, 6]
            speed.append(env._backend.qvel[:, 0].copy())
            addon.append(step.addon)
            basic.append(step.basic)
            obs = step.obs
    a = np.stack(angles)  # [1000, 5, 6]
    bthigh = a[200:, :, 0] - a[200:, :, 0].mean(0)  # after the start-up, per episode
    spectrum = np.abs(np.fft.rfft(bthigh, axis=0)).mean(1)
    freqs = np.fft.rfftfreq(bthigh.shape[0], DT)
    out = {f"|{j}|": float(np.abs(a[..., k]).mean()) for k, j in enumerate(JOINTS)}
    out["stride Hz"] = float(freqs[1:][np.argmax(spectrum[1:])])
    out["speed"] = float(np.mean(speed))
    out["RMS action - prior's"] = float(np.sqrt(np.mean(dist)))
    kl, ent = float(np.mean(kls)), float(np.mean(ents))
    out["basic / step"] = float(np.mean(basic))
    out["add-on / step"] = float(np.mean(addon))
    out["KL to prior / step"] = kl
    out["same, means clipped"] = float(np.mean(kls_clip))
    # Residual PPO's reward summed over an episode, in expectation over the policy's Gaussian on
    # these states: r_R + E[w' log pi_prior - a log pi] = r_R - w' KL - (w' - a) H
    j_r = np.mean(addon) - OMEGA_PRIME * kl - (OMEGA_PRIME - ALPHA_HAT) * ent
    out["J_R / episode"] = float(j_r) * 1000
    return out


def main() -> None:
    rows = [("prior", gait("priors/halfcheetah"))]
    for arg in sys.argv[1:]:
        name, _, path = arg.partition("=")
        rows.append((name, gait(path)))
    keys = list(rows[0][1])
    print("| policy | " + " | ".join(k.replace("|", "\\|") for k in keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for name, r in rows:
        print(f"| {name} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " |")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
