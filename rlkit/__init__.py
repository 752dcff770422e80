"""rlkit: compare RLHF policy-optimization algorithms side by side; every algorithm a plugin.

What a plugin or a notebook may use is exported here (and defined in :mod:`rlkit.api`);
nothing else is API.
"""

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

__version__ = "0.2.0"

__all__ = [
    "LOSS_AGGREGATIONS", "Algorithm", "AlgorithmConfig", "AlgorithmSpec", "ConfigError",
    "CriticConfig", "DataError", "DataKind", "EvalSamples", "Experience", "GenerationBackend",
    "LossAggregation", "MetricInfo", "PluginError", "PolicyOutput", "RewardInputs",
    "RewardOutput", "RewardSource", "RlkitError", "RunContext", "Samples", "SamplingParams",
    "__version__", "compare", "doc", "hookimpl", "report", "run",
]
