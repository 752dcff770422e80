"""`toy`: random word prompts over a 20-word vocabulary; no models, builds in milliseconds.

Used by tests and as a sanity task: with a tiny policy built from config and the
``count_good`` reward, any working algorithm learns to say "good" within a few dozen steps.
"""

from __future__ import annotations

import json
import os
import random

from transformers import PreTrainedTokenizerFast

from rlkit.errors import ConfigError, did_you_mean
from rlkit.hookspecs import hookimpl
from rlkit.tasks.base import Split, Task
from rlkit.training import build_word_tokenizer

WORDS = (
    "the a movie plot film actor was is very not good bad great awful and but it so quite fine"
).split()
class ToyTask(Task):
    name = "toy"
    description = "Random 3-word prompts; reward counts a word. For tests and sanity checks."
    OPTIONS = {"seed": 0, "num_train": 256, "num_eval": 32, "prompt_words": 3}

    def __init__(self, options=None, *, cache_dir=None):
        super().__init__(options, cache_dir=cache_dir)
        for key in self.options:
            if key not in self.OPTIONS:
                raise ConfigError(
                    f"task.options: unknown option '{key}' for task 'toy'."
                    f"{did_you_mean(key, self.OPTIONS)} Valid: {', '.join(self.OPTIONS)}."
                )
        self.settings = {**self.OPTIONS, **self.options}

    def prompts(self, split: Split) -> list[str]:
        rng = random.Random(f"{self.settings['seed']}-{split}")
        count = self.settings["num_train" if split == "train" else "num_eval"]
        return [
            " ".join(rng.choice(WORDS) for _ in range(self.settings["prompt_words"]))
            for _ in range(count)
        ]

    def tokenizer(self) -> PreTrainedTokenizerFast:
        return build_word_tokenizer(WORDS)

    def reward(self) -> str:
        return "count_good"

    def preferences(self) -> str:
        """Pairs preferring responses with more "good" (for preference methods in tests)."""
        path = self.cache_dir / "toy" / f"prefs-{self.settings['seed']}.jsonl"
        if not path.exists():
            rng = random.Random(f"{self.settings['seed']}-prefs")
            rows = []
            for prompt in self.prompts("train")[:64]:
                chosen = " ".join(rng.choice(["good", "great", "good"]) for _ in range(3))
                rejected = " ".join(rng.choice(["bad", "awful", "the"]) for _ in range(3))
                rows.append(json.dumps({"prompt": prompt, "chosen": chosen, "rejected": rejected}))
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text("\n".join(rows) + "\n")
            os.replace(tmp, path)
        return str(path)


@hookimpl
def rlkit_register_tasks(register):
    register(ToyTask)
