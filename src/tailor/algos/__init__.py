"""Training algorithms. Each one is a single loop that reads top to bottom.

- :mod:`tailor.algos.ppo`: PPO for every method of :mod:`tailor.methods` (training from scratch
  and customization of a prior), on continuous-action tasks of :mod:`tailor.envs`.
"""
