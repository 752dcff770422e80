"""``rlkit sft`` and ``rlkit train-rm``: the two pre-RLHF stages on a user's own files.

They make tiny models from scratch (a word-level tokenizer built from the data unless one is
given), so a user can try every algorithm on their own domain on a laptop before scaling up.
The lead's CLI group adds these commands; they also run standalone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from rlkit.errors import RlkitError


def _set_threads(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
    if value is not None:
        import torch

        torch.set_num_threads(value)


_MODEL_OPTIONS = (
    click.option("--n-layer", default=2, show_default=True, help="Transformer layers."),
    click.option("--n-embd", default=64, show_default=True, help="Embedding width."),
    click.option("--n-head", default=4, show_default=True, help="Attention heads."),
    click.option(
        "--n-positions",
        default=128,
        show_default=True,
        help="Context length; longer texts are truncated.",
    ),
    click.option(
        "--threads",
        type=click.IntRange(min=1),
        default=None,
        expose_value=False,
        callback=_set_threads,
        help="torch CPU threads (default: torch's). Tiny models train fastest on 1.",
    ),
)


def _model_options(func: Any) -> Any:
    for option in reversed(_MODEL_OPTIONS):
        func = option(func)
    return func


def _load_tokenizer(path: str | None, texts: list[str], max_vocab: int) -> Any:
    """The given tokenizer, or a word-level one built from the data."""
    from rlkit.training import word_tokenizer_from_texts

    if path is None:
        return word_tokenizer_from_texts(texts, max_vocab=max_vocab)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise RlkitError(f"Cannot load the tokenizer '{path}': {exc}") from None


def _echo_figures(title: str, figures: dict[str, Any]) -> None:
    click.echo(title)
    for key, value in figures.items():
        shown = f"{value:.4f}" if isinstance(value, float) else value
        click.echo(f"  {key.replace('_', ' ')}: {shown}")


@click.command("sft")
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Directory for the model and its tokenizer.",
)
@click.option("--field", default="text", show_default=True, help="JSONL key holding the text.")
@click.option(
    "--tokenizer",
    "tokenizer_path",
    default=None,
    help="Tokenizer dir/id; default: a word-level tokenizer built from DATA.",
)
@click.option(
    "--max-vocab",
    default=5000,
    show_default=True,
    help="Vocabulary cap of a tokenizer built from DATA.",
)
@click.option("--steps", default=1000, show_default=True)
@click.option("--lr", default=3e-3, show_default=True)
@click.option("--batch-size", default=32, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--eval-fraction",
    default=0.05,
    show_default=True,
    help="Share of DATA held out for perplexity.",
)
@_model_options
def sft_command(
    data: Path,
    out: Path,
    field: str,
    tokenizer_path: str | None,
    max_vocab: int,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    eval_fraction: float,
    n_layer: int,
    n_embd: int,
    n_head: int,
    n_positions: int,
) -> None:
    """Train a tiny GPT-2 policy on DATA (a text file, one text per line, or JSONL).

    The model learns each text followed by EOS, so it learns to stop; it is saved with
    its tokenizer in OUT and can be given as policy.model in a run config.
    """
    from rlkit.data import load_text_file
    from rlkit.training import split_holdout, train_sft

    texts = load_text_file(data, field=field)
    train, held = split_holdout(texts, eval_fraction, seed)
    tokenizer = _load_tokenizer(tokenizer_path, train, max_vocab)
    config = {"n_layer": n_layer, "n_embd": n_embd, "n_head": n_head, "n_positions": n_positions}
    figures = train_sft(train, tokenizer, out, model_config=config, steps=steps, lr=lr,
                        batch_size=batch_size, seed=seed, eval_texts=held or None)
    _echo_figures(f"SFT policy saved to {out}", {"vocabulary": len(tokenizer), **figures})


@click.command("train-rm")
@click.argument("prefs", type=click.Path(path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Directory for the reward model and its tokenizer.",
)
@click.option(
    "--tokenizer",
    "tokenizer_path",
    default=None,
    help="Tokenizer dir/id (e.g. the policy's); default: word-level from PREFS.",
)
@click.option(
    "--max-vocab",
    default=5000,
    show_default=True,
    help="Vocabulary cap of a tokenizer built from PREFS.",
)
@click.option("--steps", default=500, show_default=True)
@click.option("--lr", default=2e-3, show_default=True)
@click.option("--batch-size", default=32, show_default=True, help="Pairs per step.")
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--eval-fraction",
    default=0.1,
    show_default=True,
    help="Share of pairs held out for pairwise accuracy.",
)
@_model_options
def train_rm_command(
    prefs: Path,
    out: Path,
    tokenizer_path: str | None,
    max_vocab: int,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    eval_fraction: float,
    n_layer: int,
    n_embd: int,
    n_head: int,
    n_positions: int,
) -> None:
    """Train a tiny reward model on PREFS (JSONL: prompt, chosen, rejected).

    Pairwise ranking loss -log sigmoid(r(x, chosen) - r(x, rejected)); the model scores
    "prompt response" and is saved with its tokenizer in OUT, usable as reward.model.
    """
    from rlkit.data import load_preference_jsonl
    from rlkit.training import split_holdout, train_reward_model

    pairs = load_preference_jsonl(prefs)
    train, held = split_holdout(pairs, eval_fraction, seed)
    texts = [f"{p['prompt']} {p['chosen']} {p['rejected']}" for p in train]
    tokenizer = _load_tokenizer(tokenizer_path, texts, max_vocab)
    config = {"n_layer": n_layer, "n_embd": n_embd, "n_head": n_head, "n_positions": n_positions}
    figures = train_reward_model(train, tokenizer, out, model_config=config, steps=steps, lr=lr,
                                 batch_size=batch_size, seed=seed, eval_pairs=held or None)
    _echo_figures(f"Reward model saved to {out}", {"vocabulary": len(tokenizer), **figures})
