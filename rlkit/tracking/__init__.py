"""Metric sinks. JSONL is the source of truth; console and wandb are views of it."""
