"""The canonical metric names, logged by the engine for every algorithm.

Names follow TRL's where one exists. ``docs/metrics.md`` defines each (a test keeps the two in
sync). Plugins add their own under their algorithm's name (``ppo_kl/beta``) or in these
namespaces when the meaning is the same (``policy/clipfrac``, ``loss/policy``).
"""

from __future__ import annotations

# x-axes
STEP = "train/step"
SAMPLES = "train/samples"
TOKENS = "train/tokens"
WALL = "train/wall_s"

# objective/: measured on the training rollout
REWARD = "objective/reward"
REWARD_STD = "objective/reward_std"
GOLD_REWARD = "objective/gold_reward"
KL = "objective/kl"
ENTROPY = "objective/entropy"
RLHF_REWARD = "objective/rlhf_reward"

# rollout/
RESPONSE_LENGTH = "rollout/response_length"
EOS_RATE = "rollout/eos_rate"

# loss/
LOSS_TOTAL = "loss/total"
LOSS_POLICY = "loss/policy"
LOSS_VALUE = "loss/value"

# policy/
POLICY_APPROX_KL = "policy/approx_kl"
POLICY_CLIPFRAC = "policy/clipfrac"
POLICY_RATIO_MEAN = "policy/ratio_mean"
POLICY_GRAD_NORM = "policy/grad_norm"
POLICY_LR = "policy/lr"
POLICY_KL_COEF = "policy/kl_coef"

# value/
VALUE_EXPLAINED_VARIANCE = "value/explained_variance"
VALUE_CLIPFRAC = "value/clipfrac"

# rewards/: preference methods
REWARDS_CHOSEN = "rewards/chosen"
REWARDS_REJECTED = "rewards/rejected"
REWARDS_MARGINS = "rewards/margins"
REWARDS_ACCURACIES = "rewards/accuracies"

# eval/: held-out prompts, fixed decoding
EVAL_REWARD = "eval/reward"
EVAL_REWARD_STD = "eval/reward_std"
EVAL_GOLD_REWARD = "eval/gold_reward"
EVAL_KL = "eval/kl"
EVAL_RESPONSE_LENGTH = "eval/response_length"
EVAL_EOS_RATE = "eval/eos_rate"

# perf/
PERF_STEP_TIME = "perf/step_time_s"
PERF_ROLLOUT_TIME = "perf/rollout_time_s"
PERF_UPDATE_TIME = "perf/update_time_s"
PERF_SAMPLES_PER_S = "perf/samples_per_s"
PERF_TOKENS_PER_S = "perf/tokens_per_s"
PERF_PEAK_MEMORY = "perf/peak_memory_mb"

CANONICAL: tuple[str, ...] = tuple(
    v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str) and "/" in v
)
CANONICAL_NAMESPACES = ("train", "objective", "rollout", "loss", "policy", "value", "rewards",
                        "eval", "perf")

# What every rollout-based algorithm's step rows must carry (critic metrics when it has one).
ROLLOUT_ROW = (STEP, SAMPLES, TOKENS, WALL, REWARD, REWARD_STD, KL, ENTROPY, RLHF_REWARD,
               RESPONSE_LENGTH, EOS_RATE, LOSS_TOTAL, POLICY_APPROX_KL, POLICY_RATIO_MEAN,
               POLICY_GRAD_NORM, POLICY_LR, POLICY_KL_COEF, PERF_STEP_TIME, PERF_ROLLOUT_TIME,
               PERF_UPDATE_TIME, PERF_SAMPLES_PER_S, PERF_TOKENS_PER_S, PERF_PEAK_MEMORY)
EVAL_ROW = (EVAL_REWARD, EVAL_REWARD_STD, EVAL_KL, EVAL_RESPONSE_LENGTH, EVAL_EOS_RATE)
