"""Reward-model training with the pairwise ranking loss, its accuracy, and scoring texts with it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import (
    GPT2ForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from rlkit.errors import ConfigError, DataError
from rlkit.pretrain.common import (
    _check_steps,
    _encode,
    _fit,
    _gpt2_config,
    _n_params,
    _pad_right,
    join_prompt_response,
    quiet_transformers,
    seeded,
)
from rlkit.pretrain.tokenizer import _check_tokenizer, _save_tokenizer

# ---------------------------------------------------------------------------------------------
# reward model
# ---------------------------------------------------------------------------------------------


def ranking_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Pairwise (Bradley–Terry) ranking loss, mean over pairs:

        L = −log σ(r(x, y_w) − r(x, y_l))

    (Christiano et al. 2017; Stiennon et al. 2020, eq. 1)."""
    return -F.logsigmoid(chosen - rejected).mean()


class _PairTexts:
    """The distinct texts of a pair set, encoded once, and each pair as two indices into
    them: a text shared by several pairs (K responses to one prompt, all pairs ranked, as
    in InstructGPT) is scored once per batch instead of once per pair."""

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[Mapping[str, str]], max_len: int
    ) -> None:
        index: dict[str, int] = {}
        self.pairs: list[tuple[int, int]] = []
        for p in pairs:
            chosen = join_prompt_response(p["prompt"], p["chosen"])
            rejected = join_prompt_response(p["prompt"], p["rejected"])
            self.pairs.append(
                (index.setdefault(chosen, len(index)), index.setdefault(rejected, len(index)))
            )
        self.rows = _encode(tokenizer, list(index), max_len, eos=False)

    def scores(
        self, model: PreTrainedModel, pair_ids: Sequence[int], pad_id: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(chosen, rejected) scores of the given pairs, one forward pass over their texts."""
        texts = sorted({t for i in pair_ids for t in self.pairs[i]})
        where = {t: k for k, t in enumerate(texts)}
        scores = _scores(model, [self.rows[t] for t in texts], pad_id)
        chosen = torch.tensor([where[self.pairs[i][0]] for i in pair_ids])
        rejected = torch.tensor([where[self.pairs[i][1]] for i in pair_ids])
        return scores[chosen], scores[rejected]


def _prompt_groups(pairs: Sequence[Mapping[str, str]], max_size: int) -> list[list[int]]:
    """Runs of adjacent pairs with the same prompt, at most ``max_size`` long (one group per
    pair in ordinary data; a file where every prompt is "" still gets many groups)."""
    groups: list[list[int]] = []
    for i, pair in enumerate(pairs):
        last = groups[-1] if groups else None
        if last and len(last) < max_size and pairs[last[0]]["prompt"] == pair["prompt"]:
            last.append(i)
        else:
            groups.append([i])
    return groups


def _group_batches(
    groups: Sequence[list[int]], batch_size: int, steps: int, seed: int
) -> Iterator[list[int]]:
    """``steps`` batches of whole groups (at least ``batch_size`` pairs, or all of them),
    groups reshuffled each epoch, so a group's shared texts are scored together."""
    generator = torch.Generator().manual_seed(seed)
    total = sum(len(g) for g in groups)
    order: list[int] = []
    for _ in range(steps):
        batch: list[int] = []
        while len(batch) < min(batch_size, total):
            if not order:
                order = torch.randperm(len(groups), generator=generator).tolist()
            batch.extend(groups[order.pop()])
        yield batch


def _scores(model: PreTrainedModel, rows: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    ids, mask = _pad_right(rows, pad_id)
    return model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits[:, 0]


@torch.no_grad()
def pairwise_accuracy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[Mapping[str, str]],
    *,
    batch_size: int = 256,
) -> tuple[float, float]:
    """(accuracy, mean ranking loss) of ``model`` on ``pairs``; a tie counts half."""
    model.eval()
    texts = _PairTexts(tokenizer, pairs, model.config.n_positions)
    correct, loss = 0.0, 0.0
    for start in range(0, len(pairs), batch_size):
        ids = range(start, min(start + batch_size, len(pairs)))
        w, rj = texts.scores(model, ids, tokenizer.pad_token_id)
        correct += float((w > rj).sum()) + 0.5 * float((w == rj).sum())
        loss += float(ranking_loss(w, rj)) * len(w)
    return correct / len(pairs), loss / len(pairs)


def train_reward_model(
    pairs: Sequence[Mapping[str, str]],
    tokenizer: PreTrainedTokenizerBase,
    out_dir: str | Path,
    *,
    model_config: Mapping[str, Any],
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    eval_pairs: Sequence[Mapping[str, str]] | None = None,
    init_from: str | Path | None = None,
) -> dict[str, Any]:
    """Train a tiny ``GPT2ForSequenceClassification`` (one score, read at the last non-pad
    token) with :func:`ranking_loss` on ``pairs`` (``prompt``, ``chosen``, ``rejected``);
    the model scores ``prompt + " " + response``. Saves it with a right-padding tokenizer.
    Returns figures including, with ``eval_pairs``, held-out pairwise accuracy.

    Adjacent pairs with the same prompt form a group that is always batched whole, so
    data written as all pairs of K responses per prompt trains at the cost of K texts, not
    K(K−1) (Ouyang et al. 2022, §3.5). ``init_from`` starts from a causal LM's weights (e.g.
    the SFT policy, as InstructGPT does) instead of ``model_config``."""
    _check_tokenizer(tokenizer)
    _check_steps(steps, lr, batch_size)
    if not pairs:
        raise DataError("No preference pairs.")
    config = _gpt2_config(model_config, tokenizer, num_labels=1)
    out = Path(out_dir)
    with seeded(seed), quiet_transformers():
        if init_from is not None:
            model = GPT2ForSequenceClassification.from_pretrained(init_from, num_labels=1)
            if model.config.vocab_size < len(tokenizer):
                raise ConfigError(
                    f"The model in '{init_from}' has {model.config.vocab_size} token embeddings "
                    f"but the tokenizer has {len(tokenizer)} tokens; use that model's tokenizer."
                )
            model.config.pad_token_id = tokenizer.pad_token_id
        else:
            model = GPT2ForSequenceClassification(config)
        texts = _PairTexts(tokenizer, pairs, model.config.n_positions)
        batches = _group_batches(_prompt_groups(pairs, batch_size), batch_size, steps, seed)
        losses = _fit(
            model, batches, lr, steps,
            lambda ids: ranking_loss(*texts.scores(model, ids, tokenizer.pad_token_id)),
        )
        figures: dict[str, Any] = {
            "params": _n_params(model),
            "train_pairs": len(pairs),
            "steps": steps,
            "train_loss": sum(losses[-20:]) / len(losses[-20:]),
        }
        if eval_pairs:
            accuracy, eval_loss = pairwise_accuracy(model, tokenizer, eval_pairs)
            figures.update(eval_pairs=len(eval_pairs), eval_accuracy=accuracy, eval_loss=eval_loss)
    out.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(out)
    _save_tokenizer(tokenizer, out, "right", model.config.n_positions)
    return figures
