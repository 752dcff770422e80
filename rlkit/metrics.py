"""Every canonical metric, declared once: its name, title, unit and direction.

The engine logs these for every algorithm under the same names; the report, the plots and the
wandb report read titles, units and directions from here and nowhere else. Names follow TRL's
where one exists. ``docs/metrics.md`` gives each formula (a test keeps the two in sync).

A plugin declares its own metrics through ``rlkit_register_metrics`` with a
:class:`MetricInfo`; a metric with a direction (``goal`` "max" or "min") is then ranked in the
report beside the canonical ones. Plugin metrics go under the plugin's name (``ppo_kl/beta``)
or in a canonical namespace when the meaning is the same (``loss/policy``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

Goal = Literal["max", "min", "none"]


@dataclass(frozen=True)
class MetricInfo:
    """How a logged metric reads: a title, the unit for axis labels, and its direction.

    ``goal`` is ``"max"`` (``"min"``) when a higher (lower) value is better and the metric may
    be ranked, ``"none"`` when it describes rather than scores (KL to the reference is a cost
    paid for reward, not a goal; response length is a symptom). ``eval`` marks metrics measured
    on the held-out evaluation, which the report compares across algorithms.
    """

    key: str
    title: str
    unit: str = "value"
    goal: Goal = "none"
    eval: bool = False

    def __post_init__(self) -> None:
        if self.goal not in ("max", "min", "none"):
            raise ValueError(f"metric '{self.key}': goal must be 'max', 'min' or 'none', "
                             f"not {self.goal!r}")
        if "/" not in self.key:
            raise ValueError(f"metric '{self.key}': names are 'namespace/name' (e.g. 'eval/x')")


_CANONICAL: dict[str, MetricInfo] = {}


def _m(key: str, title: str, unit: str = "value", goal: Goal = "none") -> str:
    _CANONICAL[key] = MetricInfo(key, title, unit, goal, eval=key.startswith("eval/"))
    return key


# x-axes (cumulative budgets: every row carries them)
STEP = _m("train/step", "training steps", "steps")
SAMPLES = _m("train/samples", "training samples", "responses")
TOKENS = _m("train/tokens", "training tokens", "response tokens")
WALL = _m("train/wall_s", "wall time", "s")
OPTIMIZER_STEPS = _m("train/optimizer_steps", "optimizer steps", "steps")
FLOPS = _m("train/flops", "estimated FLOPs", "FLOP")

# objective/: measured on the training rollout
REWARD = _m("objective/reward", "Training reward", "reward")
REWARD_STD = _m("objective/reward_std", "Training reward std", "reward")
GOLD_REWARD = _m("objective/gold_reward", "Training gold reward", "gold score")
KL = _m("objective/kl", "KL to reference (training)", "nats / response")
ENTROPY = _m("objective/entropy", "Policy entropy", "nats / response")
RLHF_REWARD = _m("objective/rlhf_reward", "Reward − β·KL", "reward")

# rollout/
RESPONSE_LENGTH = _m("rollout/response_length", "Response length", "tokens")
EOS_RATE = _m("rollout/eos_rate", "Share of responses ending in EOS", "fraction")
ZERO_STD_GROUPS = _m("rollout/zero_std_groups",
                     "Share of groups whose k samples all score the same", "fraction")
LOGPROB_MISMATCH = _m("rollout/logprob_mismatch",
                      "Train–rollout log-prob mismatch |log π_train − log π_rollout|",
                      "nats / token")
NONFINITE_SKIPPED = _m("train/nonfinite_skipped", "Batches skipped for non-finite values",
                       "batches")

# loss/
LOSS_TOTAL = _m("loss/total", "Total loss", "loss")
LOSS_POLICY = _m("loss/policy", "Policy loss", "loss")
LOSS_VALUE = _m("loss/value", "Value loss", "loss")

# policy/
POLICY_APPROX_KL = _m("policy/approx_kl", "Approx. KL(π_old‖π)", "nats / token")
POLICY_CLIPFRAC = _m("policy/clipfrac", "Share of tokens where the clipped term binds",
                     "fraction")
POLICY_RATIO_MEAN = _m("policy/ratio_mean", "Mean ratio π/π_old", "ratio")
POLICY_GRAD_NORM = _m("policy/grad_norm", "Policy gradient norm (before clipping)", "L2")
POLICY_LR = _m("policy/lr", "Learning rate", "lr")
POLICY_KL_COEF = _m("policy/kl_coef", "β (KL coefficient)", "β")

# value/
VALUE_EXPLAINED_VARIANCE = _m("value/explained_variance", "Critic explained variance",
                              "fraction")
VALUE_CLIPFRAC = _m("value/clipfrac", "Share of value terms clipped", "fraction")
VALUE_GRAD_NORM = _m("value/grad_norm", "Critic gradient norm (before clipping)", "L2")

# rewards/: preference methods, and each reward source of a rollout
REWARDS_CHOSEN = _m("rewards/chosen", "Implicit reward of chosen", "β·log-ratio")
REWARDS_REJECTED = _m("rewards/rejected", "Implicit reward of rejected", "β·log-ratio")
REWARDS_MARGINS = _m("rewards/margins", "Implicit reward margin", "β·log-ratio")
REWARDS_ACCURACIES = _m("rewards/accuracies", "Preference accuracy (implicit reward)",
                        "fraction")

# eval/: held-out prompts, fixed decoding — what the report compares
EVAL_REWARD = _m("eval/reward", "Eval reward (proxy reward model)", "RM score", "max")
EVAL_GOLD_REWARD = _m("eval/gold_reward", "Eval gold reward", "gold score", "max")
EVAL_KL = _m("eval/kl", "Eval KL to reference", "nats / response")
EVAL_RESPONSE_LENGTH = _m("eval/response_length", "Eval response length", "tokens")
EVAL_REWARD_STD = _m("eval/reward_std", "Eval reward std", "RM score")
EVAL_EOS_RATE = _m("eval/eos_rate", "Eval share of responses ending in EOS", "fraction")

# perf/
PERF_STEP_TIME = _m("perf/step_time_s", "Step time", "s")
PERF_ROLLOUT_TIME = _m("perf/rollout_time_s", "Rollout time", "s")
PERF_UPDATE_TIME = _m("perf/update_time_s", "Update time", "s")
PERF_SAMPLES_PER_S = _m("perf/samples_per_s", "Throughput", "samples / s")
PERF_TOKENS_PER_S = _m("perf/tokens_per_s", "Throughput", "tokens / s")
PERF_PEAK_MEMORY = _m("perf/peak_memory_mb", "Peak memory of the run's process", "MB")


def reward_source_key(source: str) -> str:
    """``rewards/<source>/mean``: the batch mean of one reward source of a weighted sum."""
    return f"rewards/{source}/mean"


def select_key(key: str) -> str:
    """``eval/select/<name>``: ``eval/<name>`` on the selection split of the eval prompts
    (disjoint from the prompts ``eval/<name>`` is measured on), where "best" is chosen."""
    return key.replace("eval/", "eval/select/", 1)


def eval_std_key(key: str) -> str:
    """``eval/<name>/eval_std``: the spread of ``key`` across evaluation seeds."""
    return f"{key}/eval_std"


def pass_at_k(k: int) -> MetricInfo:
    """``eval/pass@k``: the share of eval prompts with at least one success among k samples
    (logged when every reward is 0 or 1 and ``eval.samples_per_prompt`` = k > 1)."""
    return MetricInfo(f"eval/pass@{k}", f"Eval pass@{k}", "fraction", "max", eval=True)


def _dynamic(key: str) -> MetricInfo | None:
    """Declarations of the keys whose name carries a parameter (``eval/pass@k``)."""
    head, _, k = key.partition("@")
    if head == "eval/pass" and k.isdigit():
        return pass_at_k(int(k))
    return None


CANONICAL: tuple[str, ...] = tuple(_CANONICAL)
CANONICAL_INFO: Mapping[str, MetricInfo] = _CANONICAL
CANONICAL_NAMESPACES = ("train", "objective", "rollout", "loss", "policy", "value", "rewards",
                        "eval", "perf")

#: x-axes a budget or a learning curve may use.
X_AXES: tuple[str, ...] = (SAMPLES, STEP, OPTIMIZER_STEPS, TOKENS, FLOPS, WALL)

# What every rollout-based algorithm's step rows must carry (critic metrics when it has one).
ROLLOUT_ROW = (STEP, SAMPLES, TOKENS, WALL, OPTIMIZER_STEPS, FLOPS, REWARD, REWARD_STD, KL,
               ENTROPY, RLHF_REWARD, RESPONSE_LENGTH, EOS_RATE, LOSS_TOTAL, POLICY_APPROX_KL,
               POLICY_RATIO_MEAN, POLICY_GRAD_NORM, POLICY_LR, POLICY_KL_COEF, PERF_STEP_TIME,
               PERF_ROLLOUT_TIME, PERF_UPDATE_TIME, PERF_SAMPLES_PER_S, PERF_TOKENS_PER_S,
               PERF_PEAK_MEMORY)
EVAL_ROW = (EVAL_REWARD, EVAL_REWARD_STD, EVAL_KL, EVAL_RESPONSE_LENGTH, EVAL_EOS_RATE)


def info(key: str, extra: Mapping[str, MetricInfo] | None = None) -> MetricInfo:
    """The declaration of ``key`` (a plugin's in ``extra`` first); an undeclared key gets a
    neutral one (its own name as title, no direction), so it is shown but never ranked."""
    if extra and key in extra:
        return extra[key]
    return (_CANONICAL.get(key) or _dynamic(key)
            or MetricInfo(key if "/" in key else f"x/{key}", key))


def catalogue(extra: Iterable[MetricInfo] = (),
              logged: Iterable[str] = ()) -> dict[str, MetricInfo]:
    """Canonical metrics plus ``extra`` (e.g. ``PluginManager.registry.metrics.values()``) plus
    the parameterised ones among ``logged`` keys (``eval/pass@k``); a plugin may not
    redeclare a canonical name with another meaning."""
    out = dict(_CANONICAL)
    for key in logged:
        found = _dynamic(key)
        if found is not None:
            out[key] = found
    for m in extra:
        known = _CANONICAL.get(m.key)
        if known is not None and known != m:
            raise ValueError(f"metric '{m.key}' is canonical ({known.title}, goal {known.goal});"
                             f" a plugin cannot redeclare it")
        out[m.key] = m
    return out


def ranked_eval_metrics(catalog: Mapping[str, MetricInfo]) -> list[MetricInfo]:
    """Evaluation metrics the report ranks or tabulates, canonical first, in declaration order."""
    return [m for m in catalog.values() if m.eval and m.key not in (EVAL_REWARD_STD,
                                                                    EVAL_EOS_RATE)]
