"""Comparison experiments: grid runner, statistics, plots and reports."""
