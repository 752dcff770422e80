"""Experiment files: a grid of algorithms × seeds (× tasks) under identical conditions.

```yaml
name: quickstart
seeds: [0, 1, 2]
budget: {samples: 2048}            # equal data for every algorithm
tasks: [reviews]                   # or task: {name: reviews, options: {...}}
shared: {rollout: {batch_size: 16}, algorithm: {lr: 1e-3}}   # any run-config keys
algorithms:
  - reinforce                      # defaults
  - name: ppo_clip
    label: ppo_clip (lr 3e-4)      # optional display label
    set: {algorithm.lr: 3.0e-4}    # per-algorithm overrides (dotted keys)
    sweep: {algorithm.kl_coef: [0.01, 0.05, 0.2]}   # one variant per value
```
Every run's config is validated before anything runs, so a typo in the 17th run never costs
the first 16.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rlkit.config import RunConfig, apply_overrides, load_config, read_yaml
from rlkit.errors import ConfigError, did_you_mean


class AlgorithmEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    label: str | None = None
    set: dict[str, Any] = Field(default_factory=dict)
    sweep: dict[str, list[Any]] = Field(default_factory=dict)


class ExperimentFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    budget: dict[str, int] = Field(default_factory=dict)
    tasks: list[str | dict[str, Any]] = Field(default_factory=list)
    task: dict[str, Any] | None = None
    shared: dict[str, Any] = Field(default_factory=dict)
    algorithms: list[str | AlgorithmEntry] = Field(min_length=1)

    @field_validator("budget")
    @classmethod
    def _budget_keys(cls, value: dict[str, int]) -> dict[str, int]:
        for key in value:
            if key not in ("samples", "steps"):
                raise ValueError(f"budget key '{key}' is not one of: samples, steps")
        return value


@dataclass
class PlannedRun:
    name: str
    label: str
    algorithm: str
    seed: int
    task: str
    config: RunConfig


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_experiment(path: str | Path, algorithms: dict[str, Any] | None = None) -> tuple[
    ExperimentFile, list[PlannedRun]
]:
    """Parse and expand an experiment file into validated run configs."""
    data, lines = read_yaml(path)
    try:
        exp = ExperimentFile.model_validate(data)
    except ValidationError as exc:
        messages = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            line = lines.get(key)
            where = f"{path}{f' line {line}' if line else ''}"
            if err["type"] == "extra_forbidden":
                messages.append(f"{where}: unknown key '{key}'."
                                f"{did_you_mean(str(err['loc'][-1]), ExperimentFile.model_fields)}")
            else:
                messages.append(f"{where}: key '{key}' = {err.get('input')!r}: {err['msg']}.")
        raise ConfigError("\n".join(messages)) from None

    tasks: list[dict[str, Any]] = [
        {"name": t} if isinstance(t, str) else dict(t) for t in exp.tasks
    ] or [exp.task or {}]
    planned: list[PlannedRun] = []
    for entry in exp.algorithms:
        entry = AlgorithmEntry(name=entry) if isinstance(entry, str) else entry
        sweep_keys = list(entry.sweep)
        for values in itertools.product(*(entry.sweep[k] for k in sweep_keys)) or [()]:
            variant = dict(zip(sweep_keys, values))
            suffix = " ".join(f"{k.split('.')[-1]}={v}" for k, v in variant.items())
            label = entry.label or entry.name
            if suffix:
                label = f"{label} {suffix}"
            for task in tasks:
                for seed in exp.seeds:
                    task_name = task.get("name") or "custom"
                    name = _slug(f"{label}__{task_name}__s{seed}")
                    run_data = _deep_merge(exp.shared, {
                        "name": name, "label": label, "seed": seed,
                        "task": task, "algorithm": {"name": entry.name},
                    })
                    run_data.setdefault("tracking", {})["group"] = exp.name
                    if "samples" in exp.budget:
                        run_data.setdefault("train", {})["samples"] = exp.budget["samples"]
                    if "steps" in exp.budget:
                        run_data.setdefault("train", {})["steps"] = exp.budget["steps"]
                    overrides = [f"{k}={_yaml_value(v)}" for k, v in
                                 {**entry.set, **variant}.items()]
                    run_data = apply_overrides(run_data, overrides)
                    try:
                        config = load_config(data=run_data, algorithms=algorithms)
                    except ConfigError as exc:
                        raise ConfigError(f"{path}: run '{name}': {exc}") from None
                    planned.append(PlannedRun(name, label, entry.name, seed, task_name, config))
    names = [p.name for p in planned]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ConfigError(f"{path}: two runs share the name(s) {sorted(duplicates)}; give the "
                          f"algorithm entries distinct labels.")
    return exp, planned


def _yaml_value(value: Any) -> str:
    import json

    return json.dumps(value) if not isinstance(value, str) else value
