"""rlkit: compare RLHF policy-optimization algorithms side by side; every algorithm a plugin.

What a plugin or a notebook may use is exported here (and defined in :mod:`rlkit.api`);
nothing else is API. The names are imported on first use (PEP 562), so ``import rlkit`` and
the command line start without torch and transformers; ``from rlkit import Algorithm`` works
as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

#: exported name -> the module that defines it
_EXPORTS = {
    **dict.fromkeys(
        ["LOSS_AGGREGATIONS", "Algorithm", "AlgorithmConfig", "AlgorithmSpec", "ConfigError",
         "CriticConfig", "DataError", "EvalSamples", "Experience", "LossAggregation",
         "MetricInfo", "PluginError", "PolicyOutput", "RlkitError", "RunContext", "compare",
         "doc", "hookimpl", "report", "run"], "rlkit.api"),
    "GenerationBackend": "rlkit.backends",
    "SamplingParams": "rlkit.backends",
    "DataKind": "rlkit.core.datakinds",
    "Samples": "rlkit.rollout",
    "RewardInputs": "rlkit.scoring",
    "RewardOutput": "rlkit.scoring",
    "RewardSource": "rlkit.scoring",
}

__all__ = [
    "LOSS_AGGREGATIONS", "Algorithm", "AlgorithmConfig", "AlgorithmSpec", "ConfigError",
    "CriticConfig", "DataError", "DataKind", "EvalSamples", "Experience", "GenerationBackend",
    "LossAggregation", "MetricInfo", "PluginError", "PolicyOutput", "RewardInputs",
    "RewardOutput", "RewardSource", "RlkitError", "RunContext", "Samples", "SamplingParams",
    "__version__", "compare", "doc", "hookimpl", "report", "run",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rlkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:  # what type checkers and IDEs see
    from rlkit.api import (
        LOSS_AGGREGATIONS,
        Algorithm,
        AlgorithmConfig,
        AlgorithmSpec,
        ConfigError,
        CriticConfig,
        DataError,
        EvalSamples,
        Experience,
        LossAggregation,
        MetricInfo,
        PluginError,
        PolicyOutput,
        RlkitError,
        RunContext,
        compare,
        doc,
        hookimpl,
        report,
        run,
    )
    from rlkit.backends import GenerationBackend, SamplingParams
    from rlkit.core.datakinds import DataKind
    from rlkit.rollout import Samples
    from rlkit.scoring import RewardInputs, RewardOutput, RewardSource
