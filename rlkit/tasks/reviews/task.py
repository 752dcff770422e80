"""``reviews``: the built-in world, a Task whose every artifact is built once and cached.

The first method that needs an artifact builds the whole world into a temporary directory
beside the cache entry and renames it into place, under a file lock: a killed build leaves
no half cache, and parallel runs of a comparison grid build it once and share it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rlkit.errors import ConfigError
from rlkit.tasks.base import CachedWorld, Split
from rlkit.tasks.reviews.build import (
    FIGURES_FILE,
    POLICY_DIR,
    PREFERENCES_FILE,
    PROMPT_FILES,
    REWARD_DIR,
    UNPAIRED_FILE,
    VERSION,
    build_world,
)
from rlkit.tasks.reviews.gold import gold_rewards
from rlkit.tasks.reviews.options import parse_options


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def format_prepare_report(figures: Mapping[str, Any]) -> str:
    """The figures of :meth:`ReviewsTask.prepare` as lines for a terminal."""
    f = figures
    built = f"built in {f['build_seconds']:.1f} s" if f.get("built") else "already built (cached)"
    lines = [
        f"reviews world v{f['version']} seed {f['seed']}: {built}",
        *([f"  cache: {f['cache_dir']}"] if "cache_dir" in f else []),
        f"  corpus: {f['corpus_size']} reviews (+{f['heldout_size']} held out), "
        f"vocabulary {f['vocab_size']} tokens",
        f"  prompts: {f['train_prompts']} train, {f['eval_prompts']} eval "
        f"(review openings; sample up to {f['max_new_tokens']} new tokens)",
        f"  SFT policy: {f['sft_params']:,} params, "
        f"held-out perplexity {f['sft_eval_perplexity']:.3f}",
        f"  reward model: {f['rm_params']:,} params, {f['rm_train_pairs']} pairs, "
        f"label noise {f['rm_label_noise']:.2f}",
        f"  reward model held-out pairwise accuracy vs gold: {f['rm_eval_accuracy']:.3f} "
        f"({f['rm_eval_pairs']} pairs)",
        f"  preference pairs for offline methods: {f['preference_pairs']} "
        f"(proxy labels agree with gold on {_fmt(f['preference_gold_agreement'])})",
        f"  SFT samples ({f['sft_samples']} on eval prompts): EOS rate {f['sft_eos_rate']:.3f}, "
        f"grammatical {f['sft_valid_rate']:.3f}",
        f"  SFT mean gold reward {f['sft_gold_mean']:+.3f}, mean proxy (RM) reward "
        f"{f['sft_proxy_mean']:+.3f}",
        f"  Pearson correlation proxy vs gold on SFT samples: {_fmt(f['sft_proxy_gold_pearson'])} "
        f"(grammatical samples only: {_fmt(f.get('sft_proxy_gold_pearson_grammatical'))})",
    ]
    return "\n".join(lines)


class ReviewsTask(CachedWorld):
    """Synthetic movie reviews with known sentiment: positive-sentiment RLHF on a CPU.

    Prompts are review openings ("the plot was"); the policy is a tiny GPT-2 trained on the
    grammar's reviews; the reward is a tiny learned reward model (the proxy); the gold reward
    is the grammar's exact sentiment, -1 for text the grammar cannot produce.
    """

    name = "reviews"
    description = (
        "Synthetic movie reviews with exact sentiment: tiny SFT policy, learned reward model, "
        "gold reward that exposes reward hacking. Builds in under a minute on a CPU."
    )

    def __init__(self, options: Mapping[str, Any] | None = None, *, cache_dir: Path | None = None):
        super().__init__(options, cache_dir=cache_dir)
        self.config = parse_options(self.options)

    #: ``rlkit prepare`` prints the figures of :meth:`prepare` with this.
    format_prepare_report = staticmethod(format_prepare_report)

    version = VERSION
    figures_file = FIGURES_FILE

    def build_into(self, directory: Path) -> Any:
        return build_world(directory, self.config)

    # -- the Task contract -------------------------------------------------------------------
    def prompts(self, split: Split) -> list[str]:
        if split not in PROMPT_FILES:
            raise ConfigError(f"Unknown prompt split '{split}'; valid splits: train, eval.")
        path = self.ensure_built() / PROMPT_FILES[split]
        return path.read_text(encoding="utf-8").splitlines()

    def policy(self) -> str:
        return str(self.ensure_built() / POLICY_DIR)

    def reward(self) -> str:
        return str(self.ensure_built() / REWARD_DIR)

    def tokenizer(self) -> Any:
        """The policy's word-level tokenizer (left padding), loaded fresh on each call so a
        caller may change it freely."""
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.policy())

    def gold_reward(self, prompts: Sequence[str], responses: Sequence[str],
                    metadata: Sequence[Mapping[str, Any]] | None = None) -> list[float]:
        """Exact sentiment of each ``prompt + " " + response`` in (-0.95, 0.95), -1 for text
        the grammar cannot produce. Needs no build."""
        return gold_rewards(prompts, responses)

    def preferences(self) -> str:
        return str(self.ensure_built() / PREFERENCES_FILE)

    def unpaired(self) -> str | None:
        """With ``preference_pairs: rich``, the unpaired desirable/undesirable file derived
        from the rich pairs; otherwise ``None`` (derived from :meth:`preferences`)."""
        if self.config.preference_pairs != "rich":
            return None
        return str(self.ensure_built() / UNPAIRED_FILE)

    def pretraining_texts(self) -> list[str]:
        """The SFT corpus (for PPO-ptx's language-model loss)."""
        return (self.ensure_built() / "corpus.txt").read_text(encoding="utf-8").splitlines()
