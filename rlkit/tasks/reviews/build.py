"""Building the review world: corpus → SFT policy → reward model → preferences → figures.

The pipeline mirrors the IMDb positive-sentiment experiment of the DPO paper (Rafailov et al.
2023) shrunk to a CPU, with the learned reward model standing in for the human-preference
proxy and the grammar's exact sentiment as the gold reward (Gao et al. 2022). Every stage
draws its randomness from its own sub-seed of the world seed, so the output directory is a
pure function of the options, byte for byte.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import GPT2ForSequenceClassification, GPT2LMHeadModel

from rlkit.tasks.reviews.gold import GOLD_INVALID, gold_reward, review_gold
from rlkit.tasks.reviews.grammar import (
    ReviewGenerator,
    generate_reviews,
    prompt_sets,
    vocabulary,
)
from rlkit.tasks.reviews.options import RICH_SAMPLES_PER_PROMPT, ReviewsOptions
from rlkit.training import (
    build_word_tokenizer,
    quiet_transformers,
    reward_scores,
    sample_responses,
    train_reward_model,
    train_sft,
    write_jsonl,
)

#: Bump when a change to the grammar or the pipeline changes what gets built.
VERSION = 1
#: Context of both models: the longest review is 25 words.
N_POSITIONS = 64
#: Response budget when sampling: the longest continuation (23 words + EOS) plus slack,
#: so a policy that does not stop is seen as such.
MAX_NEW_TOKENS = 32
SAMPLES_PER_EVAL_PROMPT = 4

POLICY_DIR = "policy"
REWARD_DIR = "reward_model"
PREFERENCES_FILE = "preferences.jsonl"
UNPAIRED_FILE = "unpaired.jsonl"
PROMPT_FILES = {"train": "prompts_train.txt", "eval": "prompts_eval.txt"}
FIGURES_FILE = "figures.json"

log = logging.getLogger("rlkit.tasks.reviews")


def subseed(seed: int, stage: str) -> int:
    """An independent seed per stage, so changing one stage's size leaves the others' draws
    alone."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{stage}".encode()).digest()[:4], "little")


def gold_pairs(
    reviews: Sequence[str], n_pairs: int, seed: int, label_noise: float, group_size: int = 2
) -> list[dict[str, str]]:
    """Preference pairs between reviews that share an opening (the first 2–4 words: the
    prompt), the preferred side chosen by gold sentiment and flipped with probability
    ``label_noise`` — a noisy human labeller. Reviews come in groups of ``group_size``
    sharing one opening, every pair of a group labelled (InstructGPT's K-wise comparisons),
    adjacent in the output. Pairs of equal gold are skipped: no labeller could rank them."""
    rng = random.Random(seed)
    split = [r.split(" ") for r in reviews]
    golds = [review_gold(r) for r in reviews]
    index: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, words in enumerate(split):
        for k in (2, 3, 4):
            index[tuple(words[:k])].append(i)
    pairs: list[dict[str, str]] = []
    for _ in range(50 * n_pairs):
        if len(pairs) >= n_pairs:
            break
        anchor = rng.randrange(len(reviews))
        k = rng.choices((2, 3, 4), weights=(0.2, 0.5, 0.3))[0]
        opening = tuple(split[anchor][:k])
        candidates = sorted(set(index[opening]) - {anchor})
        group = [anchor, *rng.sample(candidates, min(group_size - 1, len(candidates)))]
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                if abs(golds[a] - golds[b]) < 1e-9 or len(pairs) >= n_pairs:
                    continue
                win, lose = (a, b) if golds[a] > golds[b] else (b, a)
                if rng.random() < label_noise:
                    win, lose = lose, win
                pairs.append(
                    {
                        "prompt": " ".join(opening),
                        "chosen": " ".join(split[win][k:]),
                        "rejected": " ".join(split[lose][k:]),
                    }
                )
    return pairs


def _unseen_reviews(n: int, seed: int, seen: set[str]) -> list[str]:
    """``n`` generated reviews absent from ``seen``: short reviews recur in a corpus of
    thousands, and a held-out figure must be measured on text the models never saw."""
    generator = ReviewGenerator(seed)
    out: list[str] = []
    for _ in range(1000 * n):
        if len(out) == n:
            break
        text = generator.review().text()
        if text not in seen:
            out.append(text)
    return out


def _pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return None
    return float(np.corrcoef(np.asarray(x), np.asarray(y))[0, 1])


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    return value


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one CPU thread, restoring the caller's setting after.

    Why: the models are so small that a second thread gains little, while on a busy machine
    OpenMP threads spin-wait on each other and a step can take 30× longer; and a fixed
    thread count keeps floating-point reductions, hence the built files, identical across
    machines with different core counts.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_world(out: Path, options: ReviewsOptions) -> dict[str, Any]:
    """Build every artifact into the (empty) directory ``out``; return the figures, which are
    also written to ``figures.json``."""
    with _one_thread(), quiet_transformers():
        return _build(out, options)


def _build(out: Path, options: ReviewsOptions) -> dict[str, Any]:
    seed = options.seed
    out.mkdir(parents=True, exist_ok=True)

    log.info("reviews: generating the corpus and prompts")
    corpus = generate_reviews(options.corpus_size, subseed(seed, "corpus"))
    heldout = _unseen_reviews(options.heldout_size, subseed(seed, "heldout"), set(corpus))
    train_prompts, eval_prompts = prompt_sets(
        options.train_prompts, options.eval_prompts, subseed(seed, "prompts")
    )
    (out / "corpus.txt").write_text("\n".join(corpus) + "\n", encoding="utf-8")
    for split, prompts in (("train", train_prompts), ("eval", eval_prompts)):
        (out / PROMPT_FILES[split]).write_text("\n".join(prompts) + "\n", encoding="utf-8")
    tokenizer = build_word_tokenizer(vocabulary())

    log.info("reviews: training the SFT policy")
    policy_config = {
        "n_layer": options.policy_layers,
        "n_embd": options.policy_width,
        "n_head": options.policy_heads,
        "n_positions": N_POSITIONS,
    }
    sft = train_sft(
        corpus,
        tokenizer,
        out / POLICY_DIR,
        model_config=policy_config,
        steps=options.sft_steps,
        lr=options.sft_lr,
        batch_size=options.batch_size,
        seed=subseed(seed, "sft"),
        eval_texts=heldout,
    )

    log.info("reviews: training the reward model")
    rm_train = gold_pairs(
        corpus,
        options.rm_pairs,
        subseed(seed, "rm_pairs"),
        options.label_noise,
        group_size=options.rm_group_size,
    )
    rm_eval = gold_pairs(heldout, options.heldout_size, subseed(seed, "rm_eval"), 0.0)
    write_jsonl(out / "rm_pairs.jsonl", rm_train)
    rm_config = {
        "n_layer": options.rm_layers,
        "n_embd": options.rm_width,
        "n_head": options.rm_heads,
        "n_positions": N_POSITIONS,
    }
    rm = train_reward_model(
        rm_train,
        tokenizer,
        out / REWARD_DIR,
        model_config=rm_config,
        steps=options.rm_steps,
        lr=options.rm_lr,
        batch_size=options.rm_batch_size,
        seed=subseed(seed, "rm"),
        eval_pairs=rm_eval,
        init_from=out / POLICY_DIR if options.rm_from_sft else None,
    )

    # Measure what was saved, not what is in memory.
    policy = GPT2LMHeadModel.from_pretrained(out / POLICY_DIR)
    reward_model = GPT2ForSequenceClassification.from_pretrained(out / REWARD_DIR)

    log.info("reviews: sampling preference pairs for offline methods")
    rich: dict[str, Any] = {}
    agree: float | None
    if options.preference_pairs == "rich":
        prefs, unpaired, rich = _rich_preference_pairs(policy, tokenizer, train_prompts, seed)
        identical, agree = rich.pop("ties_dropped"), 1.0
        write_jsonl(out / UNPAIRED_FILE, unpaired)
    else:
        prefs, identical, agree = _preference_pairs(
            policy, reward_model, tokenizer, train_prompts, seed
        )
    write_jsonl(out / PREFERENCES_FILE, prefs)

    log.info("reviews: measuring the SFT policy")
    samples = sample_responses(
        policy,
        tokenizer,
        eval_prompts,
        n_per_prompt=SAMPLES_PER_EVAL_PROMPT,
        seed=subseed(seed, "eval_samples"),
        max_new_tokens=MAX_NEW_TOKENS,
    )
    prompts = [s.prompt for s in samples]
    responses = [s.response for s in samples]
    golds = [gold_reward(p, r) for p, r in zip(prompts, responses, strict=True)]
    proxies = reward_scores(reward_model, tokenizer, prompts, responses)
    valid = [s.finished and g > GOLD_INVALID for s, g in zip(samples, golds, strict=True)]

    figures = {
        "version": VERSION,
        "seed": seed,
        "corpus_size": len(corpus),
        "heldout_size": len(heldout),
        "vocab_size": len(tokenizer),
        "train_prompts": len(train_prompts),
        "eval_prompts": len(eval_prompts),
        "max_new_tokens": MAX_NEW_TOKENS,
        "sft_params": sft["params"],
        "sft_train_loss": sft["train_loss"],
        "sft_eval_perplexity": sft["eval_perplexity"],
        "rm_params": rm["params"],
        "rm_train_pairs": rm["train_pairs"],
        "rm_label_noise": options.label_noise,
        "rm_eval_pairs": rm["eval_pairs"],
        "rm_eval_accuracy": rm["eval_accuracy"],
        "rm_eval_loss": rm["eval_loss"],
        "preference_pairs": len(prefs),
        "preference_identical_dropped": identical,
        "preference_gold_agreement": agree,
        **rich,
        "sft_samples": len(samples),
        "sft_eos_rate": sum(s.finished for s in samples) / len(samples),
        "sft_valid_rate": sum(valid) / len(samples),
        "sft_gold_mean": float(np.mean(golds)),
        "sft_proxy_mean": float(np.mean(proxies)),
        "sft_proxy_gold_pearson": _pearson(proxies, golds),
        "sft_proxy_gold_pearson_grammatical": _pearson(
            [p for p, ok in zip(proxies, valid, strict=True) if ok],
            [g for g, ok in zip(golds, valid, strict=True) if ok],
        ),
    }
    figures = {key: _round(value) for key, value in figures.items()}
    (out / FIGURES_FILE).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    (out / "options.json").write_text(
        json.dumps({"version": VERSION, **options.as_dict()}, indent=2, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    return figures


def _preference_pairs(
    policy: GPT2LMHeadModel,
    reward_model: GPT2ForSequenceClassification,
    tokenizer: Any,
    prompts: Sequence[str],
    seed: int,
) -> tuple[list[dict[str, str]], int, float | None]:
    """Two SFT samples per training prompt, ranked by the reward model (the DPO recipe:
    on-distribution pairs labelled by the proxy). Identical or tied pairs carry no
    preference and are dropped. Also returns how often the proxy's ranking agrees with gold."""
    samples = sample_responses(
        policy,
        tokenizer,
        prompts,
        n_per_prompt=2,
        seed=subseed(seed, "preferences"),
        max_new_tokens=MAX_NEW_TOKENS,
    )
    scores = reward_scores(
        reward_model, tokenizer, [s.prompt for s in samples], [s.response for s in samples]
    )
    pairs: list[dict[str, str]] = []
    dropped = 0
    agreements: list[float] = []
    for i in range(0, len(samples), 2):
        a, b = samples[i], samples[i + 1]
        if a.response == b.response or scores[i] == scores[i + 1]:
            dropped += 1
            continue
        win, lose = (a, b) if scores[i] > scores[i + 1] else (b, a)
        pairs.append({"prompt": a.prompt, "chosen": win.response, "rejected": lose.response})
        gold_win, gold_lose = (
            gold_reward(a.prompt, win.response),
            gold_reward(a.prompt, lose.response),
        )
        if gold_win != gold_lose:
            agreements.append(float(gold_win > gold_lose))
    agree = sum(agreements) / len(agreements) if agreements else None
    return pairs, dropped, agree


def _rich_preference_pairs(
    policy: GPT2LMHeadModel,
    tokenizer: Any,
    prompts: Sequence[str],
    seed: int,
) -> tuple[list[dict[str, str]], list[dict[str, Any]], dict[str, Any]]:
    """Preference pairs as the DPO paper built them for IMDb: several SFT samples per
    training prompt, and every pair of a prompt's samples ordered by the gold reward (pairs
    with equal gold, identical responses included, are dropped, and so are pairs with an
    empty response). Also the unpaired data for
    KTO-style methods derived from those pairs: a sample that wins more of its pairs than it
    loses is desirable, one that loses more is undesirable, an even record is left out (each
    distinct response once per prompt). Returns (pairs, unpaired, figures)."""
    n = RICH_SAMPLES_PER_PROMPT
    samples = sample_responses(
        policy,
        tokenizer,
        prompts,
        n_per_prompt=n,
        seed=subseed(seed, "rich_preferences"),
        max_new_tokens=MAX_NEW_TOKENS,
    )
    golds = [gold_reward(s.prompt, s.response) for s in samples]
    pairs: list[dict[str, str]] = []
    unpaired: list[dict[str, Any]] = []
    ties = empty = 0
    for start in range(0, len(samples), n):
        group = samples[start : start + n]
        gold = golds[start : start + n]
        record: dict[str, int] = defaultdict(int)  # wins minus losses per distinct response
        for i in range(n):
            for j in range(i + 1, n):
                if gold[i] == gold[j] or group[i].response == group[j].response:
                    ties += 1
                    continue
                if not (group[i].response.strip() and group[j].response.strip()):
                    empty += 1  # an immediate EOS: preference data needs two responses
                    continue
                win, lose = (i, j) if gold[i] > gold[j] else (j, i)
                pairs.append(
                    {
                        "prompt": group[0].prompt,
                        "chosen": group[win].response,
                        "rejected": group[lose].response,
                    }
                )
                record[group[win].response] += 1
                record[group[lose].response] -= 1
        for response, score in record.items():  # insertion order: deterministic
            if score:
                unpaired.append(
                    {"prompt": group[0].prompt, "completion": response, "label": score > 0}
                )
    figures = {
        "preference_samples_per_prompt": n,
        "ties_dropped": ties,
        "preference_empty_dropped": empty,
        "unpaired_examples": len(unpaired),
        "unpaired_desirable": sum(row["label"] for row in unpaired),
    }
    return pairs, unpaired, figures
