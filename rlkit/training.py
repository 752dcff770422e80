"""Supervised fine-tuning and reward-model training for tiny models, on any text.

These are the two stages that come before RLHF (Stiennon et al. 2020; Ouyang et al. 2022):
an SFT policy, trained with the language-model loss on demonstrations, and a reward model,
trained with the pairwise ranking loss on preferences. They build the built-in worlds, and
``rlkit sft`` / ``rlkit train-rm`` run them on a user's own files.

The code lives in :mod:`rlkit.pretrain`, one module per stage (``tokenizer``, ``sft``,
``reward_model``, ``samples``, and ``common`` plumbing); this module keeps the names
importable from ``rlkit.training``, where 0.1 had them.
"""

from __future__ import annotations

from rlkit.pretrain.common import (  # noqa: F401
    _batches,
    _check_steps,
    _encode,
    _fit,
    _gpt2_config,
    _n_params,
    _optimizer,
    _pad_right,
    join_prompt_response,
    quiet_transformers,
    seeded,
    split_holdout,
    write_jsonl,
)
from rlkit.pretrain.reward_model import (  # noqa: F401
    _group_batches,
    _PairTexts,
    _prompt_groups,
    _scores,
    pairwise_accuracy,
    ranking_loss,
    train_reward_model,
)
from rlkit.pretrain.samples import (  # noqa: F401
    Sample,
    reward_scores,
    sample_responses,
)
from rlkit.pretrain.sft import (  # noqa: F401
    _lm_batch,
    perplexity,
    train_sft,
)
from rlkit.pretrain.tokenizer import (  # noqa: F401
    BOS,
    EOS,
    PAD,
    SPECIAL_TOKENS,
    UNK,
    _check_tokenizer,
    _save_tokenizer,
    build_word_tokenizer,
    word_tokenizer_from_texts,
)

__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "SPECIAL_TOKENS",
    "Sample",
    "UNK",
    "build_word_tokenizer",
    "join_prompt_response",
    "pairwise_accuracy",
    "perplexity",
    "quiet_transformers",
    "ranking_loss",
    "reward_scores",
    "sample_responses",
    "seeded",
    "split_holdout",
    "train_reward_model",
    "train_sft",
    "word_tokenizer_from_texts",
    "write_jsonl",
]
