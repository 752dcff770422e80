"""Typed, validated run configuration: YAML file + dotted ``--set`` overrides.

Errors name the file, the line, the dotted key, the bad value and what would be valid; an
unknown key gets a "did you mean" suggestion. The ``algorithm`` section is validated against
the chosen plugin's own Config dataclass, so a plugin's options are checked like the core's.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from rlkit.data import read_text as read_user_text
from rlkit.errors import ConfigError, did_you_mean


class Section(BaseModel):
    # NaN and inf are never a valid setting: refused like any out-of-range value.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class TaskConfig(Section):
    name: str | None = Field(None, description="A registered task (`rlkit plugins` lists them).")
    options: dict[str, Any] = Field(default_factory=dict, description="Options of the task.")


class PromptsConfig(Section):
    train: str | None = Field(None, description="JSONL or CSV of training prompts.")
    eval: str | None = Field(None, description="JSONL or CSV of held-out prompts.")
    dataset: str | None = Field(
        None, description="A Hugging Face dataset id or local dataset (datasets.load_dataset)."
    )
    split: str = Field("train", description="Dataset split of the training prompts.")
    eval_split: str | None = Field("test", description="Dataset split of the held-out prompts.")
    limit: int | None = Field(None, gt=0, description="Keep at most this many prompts per split.")
    max_words: int | None = Field(
        None, gt=0, description="Cut each prompt to its first N words (IMDb-style openings)."
    )
    field: str = Field("prompt", description="Column / key holding the prompt text.")
    eval_fraction: float = Field(0.1, ge=0, lt=1, description="Held-out share when no eval file.")


class LoraConfig(Section):
    """LoRA adapters (peft) on the policy: only the adapter is trained, and the reference is
    the same weights with the adapter disabled (no second copy). docs/scaling.md."""

    r: int = Field(8, gt=0, description="Rank of the low-rank update B·A.")
    alpha: float = Field(16.0, gt=0, description="Scale: the update is (alpha / r)·B·A.")
    dropout: float = Field(
        0.0, ge=0, lt=1, description="Dropout on the adapter's input (0 keeps the sampling and "
        "scoring passes the same function, as everywhere else in rlkit).")
    target_modules: list[str] | str | None = Field(
        None, description="Module names (or a regex, or 'all-linear') that get adapters; None: "
        "peft's default for the architecture (GPT-2: c_attn; Llama/Qwen2: q_proj, v_proj).")


class PolicyConfig(Section):
    model: str = Field("task", description="'task', a hub id or a local directory.")
    config: dict[str, Any] | None = Field(None, description="Build a tiny model from this config.")
    tokenizer: str | None = Field(None, description="Tokenizer id/path; default: the model's.")
    trust_remote_code: bool = False
    lora: LoraConfig | None = Field(
        None, description="Train LoRA adapters instead of every weight (null: full weights).")


class RewardSourceConfig(Section):
    source: str = Field(description="A registered reward source, 'task', or a model path/id.")
    weight: float = Field(1.0, description="Weight of this source in the summed reward.")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="Options of a class-based reward source.")


class RewardConfig(Section):
    """One reward (``model``) or several weighted ones (``sources``; the section may also be
    written as a list of ``{source, weight, options}``)."""

    model: str = Field("task", description="'task', a registered reward function, or a path/id.")
    sources: list[RewardSourceConfig] | None = Field(
        None, description="Several weighted reward sources; replaces `model` when set.")
    label: int | None = Field(
        None, description="Which logit is the score (required when the classifier has >1 label)."
    )
    batch_size: int = Field(64, gt=0)
    trust_remote_code: bool = False

    @model_validator(mode="before")
    @classmethod
    def _list_form(cls, data: Any) -> Any:
        return {"sources": data} if isinstance(data, list) else data

    def entries(self) -> list[RewardSourceConfig]:
        """The sources to build: ``sources``, or ``model`` with weight 1."""
        return list(self.sources) if self.sources else [RewardSourceConfig(source=self.model,
                                                                                weight=1.0)]


class CriticModelConfig(Section):
    model: str | None = Field(
        None, description="A separate critic model (hub id / path, loaded with "
        "rlkit_load_model(role='critic')); None: the algorithm's critic_init.")
    trust_remote_code: bool = False
    shared: bool = Field(
        False, description="The critic is a value head on the policy's own trunk (under "
        "policy.lora: the adapter-enabled trunk): one forward and one backward serve policy "
        "and value, and the value loss also trains the trunk (or the adapter) — a change of "
        "method (a shared actor-critic), not an optimisation of the default. False: the "
        "critic is its own model.")


class RolloutConfig(Section):
    batch_size: int = Field(16, gt=0, description="Prompts per training step.")
    backend: str = Field("hf", description="Generation backend (`rlkit plugins` lists them).")
    backend_options: dict[str, Any] = Field(
        default_factory=dict, description="Options of the generation backend (e.g. vllm: "
        "gpu_memory_utilization, enforce_eager).")
    max_new_tokens: int = Field(16, gt=0)
    min_new_tokens: int = Field(0, ge=0, description="EOS is not sampled before this many tokens.")
    temperature: float = Field(1.0, gt=0)
    top_k: int = Field(0, ge=0, description="0 disables top-k.")
    top_p: float = Field(1.0, gt=0, le=1)
    missing_eos_penalty: float | None = Field(
        None, ge=0, description="Subtracted from the reward of a response with no EOS."
    )


class KLConfig(Section):
    estimator: Literal["k1", "k2", "k3"] = "k1"


class TrainConfig(Section):
    steps: int = Field(100, gt=0)
    samples: int | None = Field(
        None, gt=0, description="Budget in responses; overrides steps (equal data across algorithms)."
    )
    device: str = Field("auto", description="'auto', 'cpu', 'cuda', 'cuda:1', ...")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        """The device string must parse (whether it exists is checked where the run starts)."""
        if value == "auto":
            return value
        import torch

        try:
            torch.device(value)
        except (RuntimeError, ValueError):
            raise ValueError("not a device: use 'auto', 'cpu', 'cuda' or 'cuda:N' (or 'mps' "
                             "on Apple silicon)") from None
        return value
    bf16: bool = Field(False, description="bf16 autocast (GPU users).")
    bf16_weights: Literal["none", "frozen", "all"] = Field(
        "none", description="Weights stored in bf16: 'frozen' = those not trained (reference, "
        "reward model, LoRA's base), trained weights keep fp32 for AdamW; 'all' = every weight, "
        "trained ones too (pure bf16: halves memory, loses updates below bf16's resolution).")
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass (policy and critic): "
        "less memory, ~30% more compute.")
    offload_frozen: bool = Field(
        False, description="Keep the reference and the reward model on the CPU, moving each to "
        "the device only for its scoring pass (GPU memory for transfer time).")
    score_batch_size: int | None = Field(
        None, gt=0, description="Rows per forward in the scoring passes (policy, reference, "
        "critic log-probs/values); None: the whole batch in one forward. Results are the same.")
    save_merged: bool = Field(
        True, description="With policy.lora: save the final policy with the adapter merged into "
        "the weights (a plain model); False: save the adapter alone (peft format).")
    threads: int | Literal["auto"] | None = Field(
        "auto", description="torch CPU threads. `auto`: 1 for a policy under "
        "1M parameters (per-op overhead dominates: a second thread gave +5% on a 0.1M-parameter "
        "GPT-2 for twice the CPU), else every core this run may use (1.71x on a 3.7M one): the "
        "cores of the machine, divided among a grid's workers or the processes of a "
        "distributed run; see benchmarks/README.md. A number sets it; None keeps torch's "
        "default.")

    @field_validator("threads", mode="before")
    @classmethod
    def _threads(cls, value: Any) -> Any:
        """One message for the three accepted forms (not one per member of the union)."""
        if value is None or value == "auto":
            return value
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError("expected a positive number of threads, 'auto' (1 thread for a "
                             "policy under 1M parameters, else this process's share of the "
                             "cores) or null (torch's default)")
        return value
    optimizer_impl: Literal["for_loop", "foreach", "fused"] = Field(
        "foreach", description="How AdamW steps: `foreach` (multi-tensor: on CPU the same "
        "per-tensor arithmetic, bit for bit, with the Python loop moved into C++: 1.60 -> 1.14 "
        "ms per step on the reviews world's policy and critic), `for_loop` (torch's CPU default, "
        "one parameter at a time) or `fused` (one kernel: 0.33 ms, 5-10% of a small PPO run, "
        "but its updates differ in the last float bit, so runs are not bit-identical to the "
        "default's; see benchmarks/README.md).")
    skip_nonfinite: bool = Field(
        False, description="Skip a batch whose rewards, loss or gradient norm are not finite "
        "(counted in train/nonfinite_skipped) instead of stopping the run.")


class EvalConfig(Section):
    every: int = Field(10, ge=0, description="Evaluate every N steps (0: only at the end).")
    num_prompts: int = Field(64, gt=0)
    temperature: float | None = Field(None, gt=0, description="None: the rollout temperature.")
    max_new_tokens: int | None = Field(None, gt=0)
    seed: int = Field(1234, description="Fixed sampling seed: every algorithm decodes alike.")
    kl: bool = Field(
        True, description="Measure eval/kl to the initial policy also for algorithms that train "
        "without a reference (an evaluation-only frozen copy; free under LoRA, where the "
        "reference is the adapter-disabled policy). false: no copy, and no eval/kl.")
    seeds: list[int] | None = Field(
        None, min_length=1, description="Several evaluation seeds (replaces `seed`): eval metrics are their "
        "mean, and `eval/<metric>/eval_std` their spread — evaluation noise, apart from the "
        "training seeds' spread.")
    samples_per_prompt: int = Field(
        1, gt=0, description="Responses per eval prompt: mean@k, and pass@k when the reward is "
        "binary (eval/pass@k).")
    select_prompts: int = Field(
        0, ge=0, description="Eval prompts held apart as a selection split (logged as "
        "eval/select/<metric>): 'best' is chosen there and reported on the others.")

    def seed_list(self) -> list[int]:
        return list(self.seeds) if self.seeds else [self.seed]


class CheckpointConfig(Section):
    every: int = Field(0, ge=0, description="Checkpoint every N steps (0: only at the end).")
    keep_last: int = Field(2, gt=0)


class TrackingConfig(Section):
    trackers: list[str] = Field(default_factory=lambda: ["console", "jsonl", "wandb"])
    project: str = "rlkit"
    group: str | None = None
    tags: list[str] = Field(default_factory=list)
    wandb_mode: Literal["auto", "offline", "online", "disabled"] = Field(
        "auto", description="auto: online when logged in (or WANDB_MODE says so), else offline."
    )


class RunConfig(Section):
    name: str = Field("run", description="The run directory's name inside `out`: letters, "
                      "digits and . _ = + -.")
    label: str | None = Field(None, description="Display label in reports (default: algorithm).")
    seed: int = 0
    out: str = "runs"
    task: TaskConfig = Field(default_factory=TaskConfig)
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    preferences: str | None = Field(None, description="Preference JSONL for offline methods.")
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    critic: CriticModelConfig = Field(default_factory=CriticModelConfig)
    algorithm: dict[str, Any] = Field(default_factory=dict)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    kl: KLConfig = Field(default_factory=KLConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        from rlkit.rundir import check_name

        try:
            return check_name(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @property
    def algorithm_name(self) -> str:
        return str(self.algorithm["name"])


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------


def _line_index(text: str) -> dict[str, int]:
    """Dotted key → 1-based line number in the YAML text."""
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = f"{prefix}{key_node.value}"
                lines[key] = key_node.start_mark.line + 1
                walk(value_node, key + ".")

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, "")
    return lines


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (YAML would keep the last
    one silently, so a setting the user believes in would be ignored)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            try:
                first = seen.setdefault(key, line)
            except TypeError:  # an unhashable key: let the base class report it
                continue
            if first != line:
                raise _DuplicateKey(key, first, line)
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(Exception):
    def __init__(self, key: Any, first: int, second: int) -> None:
        self.key, self.first, self.second = key, first, second


def read_text(path: str | Path, what: str = "Config file") -> str:
    """A UTF-8 text file's content; a missing, unreadable or non-UTF-8 file is one paragraph
    (a :class:`ConfigError`)."""
    return read_user_text(path, what, ConfigError)


def read_yaml(path: str | Path) -> tuple[dict[str, Any], dict[str, int]]:
    """Parse a YAML mapping; errors name the file and line (a key given twice is refused,
    naming both lines)."""
    path = Path(path)
    text = read_text(path)
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader) or {}  # noqa: S506 - a SafeLoader
    except _DuplicateKey as dup:
        raise ConfigError(
            f"{path} line {dup.second}: key '{dup.key}' is given twice (first on line "
            f"{dup.first}); YAML would silently keep only the last. Keep one of them.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc
        raise ConfigError(f"{path}{where}: not valid YAML ({problem}).") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, not {type(data).__name__}.")
    return data, _line_index(text)


#: Top-level keys of an experiment file that a run config does not have.
EXPERIMENT_KEYS = ("algorithms", "seeds", "budget", "shared", "tasks")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` overrides (dotted keys; values parsed as YAML scalars/lists)."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set '{item}' must look like KEY=VALUE, e.g. algorithm.lr=1e-5.")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: '{part}' is a value, not a section.")
            node = child
        node[parts[-1]] = value
    return data


def _describe_type(annotation: Any) -> str:
    if annotation is None:
        return "?"
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(_describe_type(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _valid_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys valid at the section ``loc`` of the core schema."""
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        annotation = fields[part].annotation
        current = annotation
    return list(getattr(current, "model_fields", {}) or {})


def _models_in(annotation: Any) -> list[Any]:
    """The pydantic models an annotation can hold (through Optional, unions and lists)."""
    if getattr(annotation, "model_fields", None):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _field_part(model: type[BaseModel], loc: tuple[Any, ...]) -> int:
    """How many leading parts of a pydantic error's ``loc`` are keys of the config (field
    names and list indices); what follows are the union members pydantic tried (``int``,
    ``literal['auto']``…), which are no key a user wrote."""
    current: list[Any] = [model]
    for n, part in enumerate(loc):
        if isinstance(part, int):
            continue
        fields = [m.model_fields[part] for m in current if part in m.model_fields]
        if not fields:
            return n
        current = _models_in(fields[0].annotation)
    return len(loc)


def _annotation_of(model: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    """The annotation of the field at ``loc`` (through Optional sections and lists)."""
    current: list[Any] = [model]
    annotation = None
    for part in loc:
        if isinstance(part, int):
            continue
        fields = [m.model_fields[part] for m in current if part in m.model_fields]
        if not fields:
            return None
        annotation = fields[0].annotation
        current = _models_in(annotation)
    return annotation


def _merge_union_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One error per key: pydantic reports a value that fits no member of a union once per
    member (``train.threads.int``, ``train.threads.literal['auto']``); they become one
    ``union_mismatch`` error at the key itself, whose message is the key's expected type."""
    merged: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for err in errors:
        loc = tuple(err["loc"])
        keep = _field_part(RunConfig, loc)
        if keep == len(loc) or err["type"] == "extra_forbidden":
            merged.append(err)
            continue
        if loc[:keep] in seen:
            continue
        seen.add(loc[:keep])
        merged.append({**err, "loc": loc[:keep], "type": "union_mismatch"})
    return merged


def _format_errors(
    errors: list[dict[str, Any]], source: str, lines: dict[str, int], schema: Any, prefix: str = ""
) -> str:
    messages = []
    if not prefix:
        errors = _merge_union_errors(errors)
    for err in errors:
        loc = tuple(p for p in err["loc"] if not isinstance(p, int))
        key = prefix + ".".join(str(p) for p in err["loc"])
        line = lines.get(key)
        where = f"{source} line {line}" if line else source
        if err["type"] == "extra_forbidden":
            valid = schema(loc[:-1]) if callable(schema) else []
            messages.append(
                f"{where}: unknown key '{key}'.{did_you_mean(str(loc[-1]), valid)} "
                f"Valid keys here: {', '.join(sorted(valid))}."
            )
        else:
            expected = _describe_type(_annotation_of(RunConfig, loc)) if not prefix else ""
            hint = f" (expected {expected})" if expected and expected != "?" else ""
            msg = str(err["msg"]).removeprefix("Value error, ").rstrip(".")
            if err["type"] == "value_error":
                hint = ""  # the validator's own message says what is valid
            if err["type"] == "union_mismatch":
                msg, hint = f"expected {expected}", ""
            messages.append(f"{where}: key '{key}' = {err.get('input')!r}: {msg}{hint}.")
    return "\n".join(messages)


def _validate_algorithm(
    section: dict[str, Any], source: str, lines: dict[str, int], known: dict[str, Any]
) -> dict[str, Any]:
    """Check ``algorithm.*`` against the plugin's Config dataclass; return it completed."""
    from rlkit.errors import unknown_name

    if "name" not in section:
        raise ConfigError(
            f"{source}: 'algorithm.name' is missing. Set it in the file or with "
            f"--set algorithm.name=NAME; known algorithms: {', '.join(sorted(known)) or '(none)'}."
        )
    name = section["name"]
    if name not in known:
        err = unknown_name("algorithm", str(name), known)
        line = lines.get("algorithm.name")
        raise ConfigError(f"{source}{f' line {line}' if line else ''}: {err}")
    config_cls = known[name].Config
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    options = {k: v for k, v in section.items() if k != "name"}
    problems = []
    for key in options:
        if key not in fields:
            line = lines.get(f"algorithm.{key}")
            problems.append(
                f"{source}{f' line {line}' if line else ''}: unknown key 'algorithm.{key}' for "
                f"algorithm '{name}'.{did_you_mean(key, fields)} Valid keys: "
                f"{', '.join(sorted(fields))}."
            )
    if problems:
        raise ConfigError("\n".join(problems))
    from rlkit.algorithm import check_bounds, field_specs

    specs = field_specs(config_cls)
    hints = typing.get_type_hints(config_cls)
    for key, value in options.items():
        line = lines.get(f"algorithm.{key}")
        where = f"{source}{f' line {line}' if line else ''}: key 'algorithm.{key}' = {value!r}"
        try:
            options[key] = _adapter(hints[key]).validate_python(value)
        except ValidationError as exc:
            msg = exc.errors()[0]["msg"]
            raise ConfigError(f"{where}: {msg} (expected {_describe_type(hints[key])}).") from None
        problem = check_bounds(options[key], specs[key])
        if problem:
            doc = specs[key].get("doc", "")
            raise ConfigError(f"{where}: {problem}{f' ({doc.rstrip(chr(46))})' if doc else ''}.")
    resolved = dataclasses.asdict(config_cls(**options))
    return {"name": name, **resolved}


def _adapter(annotation: Any) -> TypeAdapter[Any]:
    """A validator for one algorithm option; NaN and inf are refused as in the core sections
    (a type that carries its own pydantic config, e.g. a dataclass, keeps it)."""
    from pydantic import PydanticUserError

    try:
        return TypeAdapter(annotation, config=ConfigDict(allow_inf_nan=False))
    except PydanticUserError:
        return TypeAdapter(annotation)


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    data: dict[str, Any] | None = None,
    algorithms: dict[str, Any] | None = None,
) -> RunConfig:
    """Read, override and validate a run config; the algorithm section is completed with the
    plugin's defaults so the saved config is the whole truth of the run."""
    lines: dict[str, int] = {}
    source = str(path) if path is not None else "config"
    if path is not None:
        data, lines = read_yaml(path)
    found = [k for k in EXPERIMENT_KEYS if k in (data or {})]
    if found and "algorithm" not in (data or {}):
        raise ConfigError(
            f"{source} is an experiment file (it has {', '.join(repr(k) for k in found)}), not "
            f"a run config: use `rlkit compare {source}` to run its grid, or write a run config "
            f"with one `algorithm:` section for `rlkit run`.")
    data = apply_overrides(data or {}, list(overrides or []))
    for item in overrides or []:
        lines.pop(item.split("=", 1)[0].strip(), None)
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            _format_errors([dict(e) for e in exc.errors()], source, lines,
                           lambda loc: _valid_keys(RunConfig, loc))
        ) from None
    if algorithms is None:
        from rlkit.plugins import get_plugin_manager

        algorithms = get_plugin_manager().registry.algorithms
    config.algorithm = _validate_algorithm(dict(config.algorithm), source, lines, algorithms)
    return config


def algorithm_config(config: RunConfig, algorithms: dict[str, Any]) -> Any:
    """The plugin's Config dataclass instance for this run."""
    cls = algorithms[config.algorithm_name].Config
    return cls(**{k: v for k, v in config.algorithm.items() if k != "name"})


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
