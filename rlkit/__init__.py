"""rlkit: compare RLHF policy-optimization algorithms side by side; every algorithm a plugin."""

from rlkit.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]
