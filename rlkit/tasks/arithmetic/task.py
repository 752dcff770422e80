"""``arithmetic``: the verifiable-reward world, a Task whose policy is built once and cached.

Prompts and their answers are a pure function of the options and need no build; the policy
is built on first use into a temporary directory beside the cache entry and renamed into
place under a file lock (as the reviews world does): a killed build leaves no half cache,
and parallel runs of a comparison grid build it once and share it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rlkit.errors import ConfigError
from rlkit.tasks.arithmetic.build import FIGURES_FILE, POLICY_DIR, VERSION, build_world
from rlkit.tasks.arithmetic.options import parse_options
from rlkit.tasks.arithmetic.problems import Problem, exact_scores, parse_prompt, problem_sets
from rlkit.tasks.base import CachedWorld, Split

#: The registered reward names (``rlkit_register_rewards``); :meth:`ArithmeticTask.reward`
#: answers one of them, so ``reward.model: task`` scores exact-match correctness.
EXACT_REWARD = "arithmetic_exact"
EXACT_FORMAT_REWARD = "arithmetic_exact_format"
#: What a well-formed worked answer adds with ``format_reward: true``: small beside the 1.0
#: of a right answer, so form never outweighs correctness.
FORMAT_BONUS = 0.1


def format_prepare_report(figures: Mapping[str, Any]) -> str:
    """The figures of :meth:`ArithmeticTask.prepare` as lines for a terminal."""
    f = figures
    built = f"built in {f['build_seconds']:.1f} s" if f.get("built") else "already built (cached)"
    k = f["samples_per_eval_prompt"]
    lines = [
        f"arithmetic world v{f['version']} seed {f['seed']}: {built}",
        *([f"  cache: {f['cache_dir']}"] if "cache_dir" in f else []),
        f"  problems: {f['terms']} numbers of {f['digits']} digits; {f['train_prompts']} train, "
        f"{f['eval_prompts']} held-out prompts (sample up to {f['max_new_tokens']} new tokens); "
        f"vocabulary {f['vocab_size']} tokens",
        f"  SFT policy: {f['sft_params']:,} params, {f['corpus_size']} correct worked answers, "
        f"then {f['careless_demonstrations']} with a slipped last digit "
        f"(rate {f['answer_noise']:.2f})",
        f"  held-out accuracy after SFT alone: greedy {f['careful_greedy_accuracy']:.3f}, "
        f"sampled {f['careful_sampled_accuracy']:.3f}",
        f"  SFT policy held-out accuracy: greedy {f['sft_greedy_accuracy']:.3f}, "
        f"sampled (temperature 1.0) {f['sft_sampled_accuracy']:.3f}, "
        f"pass@{k} {f['sft_pass_at_k']:.3f}",
        f"  SFT samples ({k} per held-out prompt): EOS rate {f['sft_eos_rate']:.3f}, "
        f"well-formed {f['sft_well_formed_rate']:.3f}",
    ]
    return "\n".join(lines)


class ArithmeticTask(CachedWorld):
    """Addition and subtraction problems with one checkable answer: RL with verifiable
    rewards on a CPU.

    Prompts are problems (``"38 + 45 ="``), each carrying its answer as metadata
    (:meth:`prompt_rows`); the policy is a tiny GPT-2 that knows the arithmetic but slips on
    the last digit; the reward is exact-match correctness, so reward and gold coincide (with
    ``format_reward`` the reward adds a small bonus for form that gold leaves out).
    """

    name = "arithmetic"
    description = (
        "Addition/subtraction problems with exact-match (verifiable) reward and a tiny SFT "
        "policy that is right about a third of the time. Builds in well under a minute on a CPU."
    )

    def __init__(self, options: Mapping[str, Any] | None = None, *, cache_dir: Path | None = None):
        super().__init__(options, cache_dir=cache_dir)
        self.config = parse_options(self.options)
        self._problem_sets: dict[str, list[Problem]] | None = None

    #: ``rlkit prepare`` prints the figures of :meth:`prepare` with this.
    format_prepare_report = staticmethod(format_prepare_report)

    version = VERSION
    figures_file = FIGURES_FILE

    def build_into(self, directory: Path) -> Any:
        self._problems()  # an impossible option set fails here, before any training
        return build_world(directory, self.config)

    # -- problems ----------------------------------------------------------------------------
    def _problems(self) -> dict[str, list[Problem]]:
        """Both prompt splits, generated on first use (milliseconds) and kept."""
        if self._problem_sets is None:
            c = self.config
            try:
                self._problem_sets = problem_sets(
                    c.seed, c.digits, c.terms, c.train_prompts, c.eval_prompts
                )
            except ValueError as exc:
                raise ConfigError(
                    f"Task 'arithmetic': {exc}; lower train_prompts/eval_prompts or raise "
                    f"digits/terms."
                ) from None
        return self._problem_sets

    def _split(self, split: Split) -> list[Problem]:
        if split not in ("train", "eval"):
            raise ConfigError(f"Unknown prompt split '{split}'; valid splits: train, eval.")
        return self._problems()[split]

    # -- the Task contract -------------------------------------------------------------------
    def prompts(self, split: Split) -> list[str]:
        """The problems of ``split`` (``"38 + 45 ="``); needs no build."""
        return [p.prompt for p in self._split(split)]

    def prompt_rows(self, split: Split) -> list[dict[str, Any]]:
        """Each prompt with its reference answer: ``{"prompt": "38 + 45 =", "answer": "83"}``.
        The ``answer`` column reaches reward functions as the keyword ``answer``."""
        return [{"prompt": p.prompt, "answer": p.answer} for p in self._split(split)]

    def policy(self) -> str:
        return str(self.ensure_built() / POLICY_DIR)

    def tokenizer(self) -> Any:
        """The policy's digit tokenizer (left padding), loaded fresh on each call so a caller
        may change it freely."""
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.policy())

    def reward(self) -> str:
        return EXACT_FORMAT_REWARD if self.config.format_reward else EXACT_REWARD

    def gold_reward(
        self,
        prompts: Sequence[str],
        responses: Sequence[str],
        metadata: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[float]:
        """1.0 for a response whose answer is exactly the reference answer, else 0.0. The
        reference is each metadata row's ``answer``; without metadata it is solved from the
        prompt text (a prompt that states no problem scores 0.0). Needs no build."""
        if metadata is not None:
            if len(metadata) != len(prompts):
                raise ValueError(f"{len(prompts)} prompts but {len(metadata)} metadata rows")
            answers = [row.get("answer") for row in metadata]
        else:
            problems = [parse_prompt(p) for p in prompts]
            answers = [None if p is None else p.answer for p in problems]
        if len(responses) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        return exact_scores(responses, answers)


def arithmetic_exact(
    prompts: Sequence[str], responses: Sequence[str], *, answer: Sequence[Any], **kwargs: Any
) -> list[float]:
    """Registered as ``arithmetic_exact``: 1.0 per exactly right answer, 0.0 otherwise.
    TRL's convention: dataset columns arrive as keyword lists (``answer``, one per response);
    other columns are ignored."""
    return exact_scores(responses, list(answer))


def arithmetic_exact_format(
    prompts: Sequence[str], responses: Sequence[str], *, answer: Sequence[Any], **kwargs: Any
) -> list[float]:
    """Registered as ``arithmetic_exact_format``: :func:`arithmetic_exact` plus
    :data:`FORMAT_BONUS` for a well-formed worked answer."""
    return exact_scores(responses, list(answer), FORMAT_BONUS)
