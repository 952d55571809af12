"""Residual Q-Learning: residual soft DQN, residual SAC and residual max-entropy MCTS.

Their tasks (``cartpole-centered``, ``mountaincar-noleft``, ``highway-keepright``,
``parking-boundary``) live with the others in :mod:`tailor.envs` (see
:mod:`tailor.envs.classic` and :mod:`tailor.envs.highway`; the last two need highway-env:
``pip install 'tailor-rl[highway]'``).
"""
