"""Residual Q-Learning: residual soft DQN, residual SAC and residual max-entropy MCTS.

Their tasks (``cartpole-centered``, ``mountaincar-noleft``) live with the others in
:mod:`tailor.envs` (see :mod:`tailor.envs.classic`).
"""
