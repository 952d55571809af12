"""Experiments: the demo, presets, sweeps, tables and plots (plots and tables only read results)."""
