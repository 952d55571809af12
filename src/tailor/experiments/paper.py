"""The paper's published numbers (Residual Policy Gradient, Tables I-III), as (mean, std) pairs.

Transcribed from ``shared/papers/residual_policy_gradient.md``. Table I and III report the average
over 500 episodes across 5 seeds and the best seed; Table II the best-performing checkpoints.
"""

from __future__ import annotations

__all__ = ["PUBLIC_PPO_1M", "TABLE1", "TABLE2", "TABLE3"]

MeanStd = tuple[float, float]

# A widely used single-file PPO (CleanRL's ppo_continuous_action) at 1M steps on the plain
# environments (the basic reward of our tasks), as quoted in issue 15: the yardstick of the `1m`
# budget's Tables I and III. Ant is not quoted.
PUBLIC_PPO_1M: dict[str, MeanStd] = {
    "halfcheetah-hindleg": (1443.0, 46.0),
    "hopper-jump": (2383.0, 272.0),
}

# TABLE1[task][method] = {"avg": (mean, std), "best": (mean, std)}; the basic task's reward.
TABLE1: dict[str, dict[str, dict[str, MeanStd]]] = {
    "ant-sideways": {
        "no-entropy": {"avg": (3918.9, 1032.9), "best": (4389.6, 296.7)},
        "end-entropy": {"avg": (3887.9, 991.4), "best": (4223.4, 822.6)},
        "repeat-entropy": {"avg": (3241.2, 1299.7), "best": (4023.9, 786.3)},
        "soft": {"avg": (3845.6, 911.7), "best": (4581.1, 540.3)},
    },
    "hopper-jump": {
        "no-entropy": {"avg": (2387.3, 1060.6), "best": (3271.2, 573.4)},
        "end-entropy": {"avg": (2696.3, 978.0), "best": (3654.4, 46.4)},
        "repeat-entropy": {"avg": (2611.6, 967.8), "best": (3404.2, 226.0)},
        "soft": {"avg": (3105.3, 829.5), "best": (3689.4, 29.2)},
    },
    "halfcheetah-hindleg": {
        "no-entropy": {"avg": (2254.9, 1188.7), "best": (4136.6, 1566.6)},
        "end-entropy": {"avg": (3291.5, 2006.0), "best": (6049.3, 946.2)},
        "repeat-entropy": {"avg": (-114.9, 73.2), "best": (-38.9, 58.2)},
        "soft": {"avg": (4993.7, 1262.3), "best": (5896.5, 371.8)},
    },
}


def _r(*v: float) -> dict[str, MeanStd]:
    """Table II row: total, basic, statistic, add-on as consecutive (mean, std) numbers."""
    return {
        k: (v[2 * i], v[2 * i + 1]) for i, k in enumerate(("total", "basic", "statistic", "addon"))
    }


# TABLE2[task][policy] = {"total", "basic", "statistic", "addon"} -> (mean, std).
TABLE2: dict[str, dict[str, dict[str, MeanStd]]] = {
    "halfcheetah-hindleg": {
        "prior": _r(5357.0, 377.8, 5896.5, 371.8, 0.54, 0.01, -539.8, 8.7),
        "greedy": _r(-1314.0, 252.4, -1150.2, 236.0, 0.16, 0.02, -163.7, 21.8),
        "kl": _r(5418.7, 150.1, 5776.3, 133.7, 0.36, 0.02, -357.6, 17.7),
        "residual": _r(5488.3, 75.6, 5845.1, 69.5, 0.36, 0.01, -356.3, 8.6),
        "full": _r(5556.2, 57.8, 6011.4, 57.2, 0.46, 0.01, -455.2, 5.8),
    },
    "hopper-jump": {
        "prior": _r(5133.7, 33.2, 3689.4, 29.2, 1.44, 0.01, 1444.3, 6.0),
        "greedy": _r(3714.5, 7.1, 2224.2, 6.5, 1.49, 0.00, 1490.2, 0.9),
        "kl": _r(3864.4, 50.10, 2400.3, 55.2, 1.46, 0.01, 1464.1, 6.1),
        "residual": _r(4401.4, 505.3, 2951.6, 333.5, 1.50, 0.03, 1449.5, 177.0),
        "full": _r(5142.7, 34.8, 3669.0, 26.8, 1.47, 0.00, 1473.6, 8.4),
    },
    "ant-sideways": {
        "prior": _r(4875.2, 589.4, 4581.1, 540.3, 0.29, 0.13, 294.1, 133.9),
        "greedy": _r(4340.6, 1464.5, 726.4, 277.1, 3.86, 0.96, 3613.9, 1246.4),
        "kl": _r(4019.4, 1103.4, 368.6, 151.8, 3.74, 0.92, 3650.6, 1047.6),
        "residual": _r(5568.3, 852.4, 1340.8, 220.0, 4.27, 0.63, 4227.4, 705.3),
        "full": _r(6185.1, 1142.0, 3543.0, 621.2, 2.70, 0.41, 2641.6, 542.8),
    },
}

# TABLE3[task][std_type] = {"avg": (mean, std), "best": (mean, std)}; Soft PPO, basic reward.
TABLE3: dict[str, dict[str, dict[str, MeanStd]]] = {
    "ant-sideways": {
        "global": {"avg": (3845.6, 911.7), "best": (4581.1, 540.3)},
        "state": {"avg": (3055.3, 1231.5), "best": (3915.1, 599.9)},
    },
    "hopper-jump": {
        "global": {"avg": (3105.3, 829.5), "best": (3689.4, 29.2)},
        "state": {"avg": (1504.0, 948.3), "best": (2511.6, 784.6)},
    },
    "halfcheetah-hindleg": {
        "global": {"avg": (4993.7, 1262.3), "best": (5896.5, 371.8)},
        "state": {"avg": (2621.7, 1605.3), "best": (5405.0, 1288.8)},
    },
}
