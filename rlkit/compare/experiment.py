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
tune:                              # optional: `rlkit tune` (docs/comparing.md)
  sampler: grid                    # grid | random | tpe
  trials: 3                        # per algorithm, the same for every algorithm
  seeds: [100, 101]                # tuning seeds: disjoint from `seeds` (the confirmation)
  objective: {metric: eval/gold_reward, summary: final}   # or summary: auc
  spaces_file: tuning/spaces.yaml  # per-algorithm default spaces (relative to this file)
  spaces: {ppo_clip: {algorithm.lr: [1.0e-4, 3.0e-4, 1.0e-3]}}
```
Every run's config is validated, ``--set`` overrides included, before anything runs, so a
typo in the 17th run never costs the first 16.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rlkit.config import RunConfig, apply_overrides, load_config, read_yaml
from rlkit.errors import ConfigError, did_you_mean
from rlkit.metrics import EVAL_GOLD_REWARD


class AlgorithmEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    label: str | None = None
    set: dict[str, Any] = Field(default_factory=dict)
    sweep: dict[str, list[Any]] = Field(default_factory=dict)

    @property
    def display(self) -> str:
        """The label runs of this entry carry (the algorithm's name by default)."""
        return self.label or self.name


class ParamRange(BaseModel):
    """A numeric range to search: ``{low: 1.0e-4, high: 1.0e-2, log: true}``.

    The random and TPE samplers draw from it; the grid sampler takes ``grid`` points spaced
    evenly (log-evenly with ``log``), ends included.
    """

    model_config = ConfigDict(extra="forbid")
    low: float
    high: float
    log: bool = False
    integer: bool = False
    grid: int = Field(3, ge=2)

    @model_validator(mode="after")
    def _ordered(self) -> ParamRange:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


#: One hyperparameter's space: a list of values (a categorical choice, grid-able as is) or a
#: numeric range.
ParamSpec = list[Any] | ParamRange


class Objective(BaseModel):
    """What tuning maximises (or minimises, per the metric's declared goal): one eval metric,
    as its final value or its normalised area under the learning curve (AUC)."""

    model_config = ConfigDict(extra="forbid")
    metric: str = EVAL_GOLD_REWARD
    summary: Literal["final", "auc"] = "final"


class TuneSection(BaseModel):
    """The ``tune:`` section: each algorithm its own space, the same budget for all."""

    model_config = ConfigDict(extra="forbid")
    sampler: Literal["grid", "random", "tpe"] = "random"
    #: trials per algorithm (grid: defaults to the grid size, which must then be equal)
    trials: int | None = Field(None, ge=1)
    #: seeds every trial is run on; never used for the confirmed comparison
    seeds: list[int] = Field(default_factory=lambda: [100, 101], min_length=1)
    objective: Objective = Field(default_factory=Objective)
    #: per algorithm label or name: dotted run-config key → space
    spaces: dict[str, dict[str, ParamSpec]] = Field(default_factory=dict)
    #: a YAML file of default spaces keyed by algorithm name, relative to the experiment file
    spaces_file: str | None = None
    #: seed of the sampler (grid order, random draws)
    sampler_seed: int = 0
    #: trials per algorithm asked before results come back (default: all at once for grid and
    #: random, which do not learn from results; 4 for tpe)
    batch: int | None = Field(None, ge=1)


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
    tune: TuneSection | None = None

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        """The experiment's directory inside ``--out``: never a path."""
        from rlkit.rundir import check_name

        try:
            return check_name(value, "experiment name")
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("budget")
    @classmethod
    def _budget_keys(cls, value: dict[str, int]) -> dict[str, int]:
        for key in value:
            if key not in ("samples", "steps"):
                raise ValueError(f"budget key '{key}' is not one of: samples, steps")
        return value

    @model_validator(mode="after")
    def _fresh_confirmation_seeds(self) -> ExperimentFile:
        if self.tune is not None:
            shared = sorted(set(self.tune.seeds) & set(self.seeds))
            if shared:
                raise ValueError(
                    f"tune.seeds and seeds share {shared}: the confirmed comparison runs on "
                    f"`seeds`, which must be fresh (never used to select hyperparameters)")
        return self

    @property
    def entries(self) -> list[AlgorithmEntry]:
        """The algorithm entries, a bare name read as ``{name: ...}``."""
        return [AlgorithmEntry(name=e) if isinstance(e, str) else e for e in self.algorithms]

    @property
    def task_list(self) -> list[dict[str, Any]]:
        """Each task as a ``{name, options}`` mapping (one unnamed task when none is given)."""
        return [{"name": t} if isinstance(t, str) else dict(t) for t in self.tasks] or [
            dict(self.task or {})]


@dataclass
class PlannedRun:
    name: str
    label: str
    algorithm: str
    seed: int
    task: str
    config: RunConfig


@dataclass(frozen=True)
class Variant:
    """One arm to run on every task and seed: an algorithm with its overrides."""

    algorithm: str
    label: str
    overrides: Mapping[str, Any]
    #: prefix of the run names (``<stem>__<task>__s<seed>``)
    stem: str


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")


def run_name(stem: str, task: str, seed: int) -> str:
    """The directory name of one run: ``<stem>__<task>__s<seed>``, made path-safe."""
    return _slug(f"{stem}__{task}__s{seed}")


def task_label(task: Mapping[str, Any]) -> str:
    """A task's name in run names (``custom`` for a task given only by its files)."""
    return str(task.get("name") or "custom")


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_experiment(path: str | Path) -> tuple[ExperimentFile, dict[str, int]]:
    """Parse and validate an experiment file (not yet its runs); errors name file and line."""
    data, lines = read_yaml(path)
    try:
        return ExperimentFile.model_validate(data), lines
    except ValidationError as exc:
        messages = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            line = lines.get(key)
            where = f"{path}{f' line {line}' if line else ''}"
            if err["type"] == "extra_forbidden":
                valid = _fields_at(err["loc"])
                messages.append(f"{where}: unknown key '{key}'."
                                f"{did_you_mean(str(err['loc'][-1]), valid)}")
            else:
                msg = str(err["msg"]).removeprefix("Value error, ").rstrip(".")
                messages.append(f"{where}: key '{key}' = {err.get('input')!r}: {msg}.")
        raise ConfigError("\n".join(messages)) from None


def _fields_at(loc: tuple[int | str, ...]) -> list[str]:
    """Valid keys beside the unknown one at ``loc`` (top level, or inside ``tune``)."""
    if loc[:1] == ("tune",) and len(loc) == 2:
        return list(TuneSection.model_fields)
    if loc[:2] == ("tune", "objective"):
        return list(Objective.model_fields)
    return list(ExperimentFile.model_fields)


def variants(exp: ExperimentFile) -> list[Variant]:
    """Every arm of the experiment: each algorithm entry times its sweep's values."""
    out = []
    for entry in exp.entries:
        sweep_keys = list(entry.sweep)
        for values in itertools.product(*(entry.sweep[k] for k in sweep_keys)) or [()]:
            variant = dict(zip(sweep_keys, values))
            suffix = " ".join(f"{k.split('.')[-1]}={v}" for k, v in variant.items())
            label = f"{entry.display} {suffix}" if suffix else entry.display
            out.append(Variant(entry.name, label, {**entry.set, **variant}, label))
    return out


def plan_runs(
    exp: ExperimentFile, source: str | Path, arms: list[Variant], seeds: list[int],
    overrides: list[str] | None = None, algorithms: dict[str, Any] | None = None,
) -> list[PlannedRun]:
    """Expand arms × tasks × seeds into validated run configs.

    Each run's config is ``shared``, then the run's identity and budget, then the arm's
    overrides, then ``overrides`` (``--set``, which win), validated as a whole.
    """
    planned: list[PlannedRun] = []
    for arm in arms:
        for task in exp.task_list:
            for seed in seeds:
                task_name = task_label(task)
                name = run_name(arm.stem, task_name, seed)
                run_data = _deep_merge(exp.shared, {
                    "name": name, "label": arm.label, "seed": seed,
                    "task": task, "algorithm": {"name": arm.algorithm},
                })
                run_data.setdefault("tracking", {})["group"] = exp.name
                for key in ("samples", "steps"):
                    if key in exp.budget:
                        run_data.setdefault("train", {})[key] = exp.budget[key]
                sets = [f"{k}={_yaml_value(v)}" for k, v in arm.overrides.items()]
                run_data = apply_overrides(run_data, sets + list(overrides or []))
                try:
                    config = load_config(data=run_data, algorithms=algorithms)
                except ConfigError as exc:
                    raise ConfigError(f"{source}: run '{name}': {exc}") from None
                planned.append(PlannedRun(name, arm.label, arm.algorithm, seed, task_name,
                                          config))
    names = [p.name for p in planned]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ConfigError(f"{source}: two runs share the name(s) {sorted(duplicates)}; give the "
                          f"algorithm entries distinct labels.")
    return planned


def load_experiment(path: str | Path, algorithms: dict[str, Any] | None = None,
                    overrides: list[str] | None = None) -> tuple[ExperimentFile, list[PlannedRun]]:
    """Parse an experiment file and expand it into validated run configs, ``overrides``
    (``KEY=VALUE``, as ``rlkit compare --set``) applied to every run before validation."""
    exp, _ = read_experiment(path)
    return exp, plan_runs(exp, path, variants(exp), exp.seeds, overrides, algorithms)


def _yaml_value(value: Any) -> str:
    """``value`` as the YAML text of a ``KEY=VALUE`` override (``1.0e-05``, not ``1e-05``,
    which YAML 1.1 reads as a string)."""
    if isinstance(value, str):
        return value
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20).strip()
    return text.removesuffix("...").strip()
