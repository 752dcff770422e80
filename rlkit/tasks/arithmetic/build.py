"""Building the arithmetic world: problems → tokenizer → SFT policy → careless phase → figures.

The policy is meant to be *sometimes* right: the starting point of RL with verifiable rewards
(GRPO and its family), where the answer is usually within reach (pass@k high) but not
reliably given (pass@1 low). A tiny GPT-2 first learns correct worked answers until it mostly
knows the arithmetic (greedy accuracy high), then briefly trains on demonstrations whose
final digit is sometimes wrong, so that sampling at temperature 1.0 slips that often.

Why two phases: mixing wrong answers into the only phase delays, by a seed-dependent number
of steps, the moment a tiny model learns to carry (greedy held-out accuracy after 1200 steps
ranged from about 10 % to 75 % over seeds); learning first and getting careless after lands
near the same accuracy whatever the seed (sampled: 0.26–0.39 over seeds 0, 1, 2 and 5). The
careless phase has its own short loop because :func:`rlkit.training.train_sft` always starts
from a fresh model.

Every stage draws its randomness from its own sub-seed of the world seed and torch runs on
one thread with deterministic kernels, so the output directory is a pure function of the
options, byte for byte.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import decoders, pre_tokenizers
from transformers import GPT2LMHeadModel, PreTrainedModel, PreTrainedTokenizerFast

from rlkit.pretrain.tokenizer import word_level_backend, wrap_backend
from rlkit.tasks.arithmetic.options import ArithmeticOptions
from rlkit.tasks.arithmetic.problems import (
    EQUALS,
    OPERATORS,
    Problem,
    demonstrations,
    is_correct,
    is_well_formed,
    problem_sets,
    subseed,
)
from rlkit.training import (
    quiet_transformers,
    sample_responses,
    seeded,
    train_sft,
    write_jsonl,
)

#: Bump when a change to the problems or the pipeline changes what gets built.
VERSION = 1
#: Samples per held-out problem when measuring the policy (pass@k uses all of them).
SAMPLES_PER_EVAL_PROMPT = 4
#: Tokens a response may run past the longest worked answer before it counts as not stopping.
RESPONSE_SLACK = 4

POLICY_DIR = "policy"
PROMPT_FILES = {"train": "prompts_train.jsonl", "eval": "prompts_eval.jsonl"}
FIGURES_FILE = "figures.json"

log = logging.getLogger("rlkit.tasks.arithmetic")


# ---------------------------------------------------------------------------------------------
# tokenizer and sizes
# ---------------------------------------------------------------------------------------------


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The world's tokenizer: one token per digit, operator and ``=``, with [PAD] [EOS] [UNK]
    [BOS] as ids 0–3 (as :func:`rlkit.training.build_word_tokenizer` numbers them).

    Why not the word tokenizer: it would make each number one token, and a tiny model cannot
    learn to add numbers whose digits it cannot see. Encoding ignores whitespace ("38+45="
    and "38 + 45 =" are the same tokens) and adds no special tokens (a prompt must be
    continued, not closed by EOS); decoding writes the canonical spacing back
    ("38 + 45 = 83"), with at most a stray space at either end, which the checker strips.
    pad ≠ eos, so masks never hide a real EOS.
    """
    backend = word_level_backend([*(str(d) for d in range(10)), *OPERATORS, EQUALS])
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.Punctuation(),
        ]
    )
    # No Strip decoder to trim the ends: tokenizers 0.23 panics on it for an empty response.
    backend.decoder = decoders.Sequence(
        [*(decoders.Replace(s, f" {s} ") for s in (*OPERATORS, EQUALS)), decoders.Fuse()]
    )
    return wrap_backend(backend)


def _n_tokens(tokenizer: PreTrainedTokenizerFast, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def sizes(options: ArithmeticOptions, tokenizer: PreTrainedTokenizerFast) -> tuple[int, int]:
    """(context length of the model, response budget when sampling) for the options: the
    longest worked answer (every number at its widest, every operation an addition) plus
    EOS plus slack, so a policy that does not stop is seen as such."""
    widest = 10**options.digits - 1
    longest = Problem((widest,) * options.terms, ("+",) * (options.terms - 1))
    max_new_tokens = _n_tokens(tokenizer, longest.worked()) + 1 + RESPONSE_SLACK
    needed = _n_tokens(tokenizer, longest.prompt) + max_new_tokens
    return max(32, 16 * math.ceil(needed / 16)), max_new_tokens


# ---------------------------------------------------------------------------------------------
# the careless phase
# ---------------------------------------------------------------------------------------------


def _careless_phase(
    model: GPT2LMHeadModel,
    tokenizer: PreTrainedTokenizerFast,
    texts: Sequence[str],
    *,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> float:
    """Continue training ``model`` with the language-model loss on ``text + eos`` (constant
    learning rate, batches drawn with replacement); the mean loss of the last 20 steps."""
    rows = [
        row + [tokenizer.eos_token_id]
        for row in tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    ]
    losses: list[float] = []
    with seeded(seed):
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        model.train()
        for _ in range(steps):
            batch = [rows[i] for i in torch.randint(len(rows), (batch_size,), generator=generator)]
            width = max(len(row) for row in batch)
            ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, row in enumerate(batch):
                ids[i, : len(row)] = torch.tensor(row)
                mask[i, : len(row)] = 1
            loss = model(
                input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)
            ).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.detach().item())
        model.eval()
    tail = losses[-20:]
    return sum(tail) / len(tail) if tail else float("nan")


# ---------------------------------------------------------------------------------------------
# measuring a policy
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def greedy_responses(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int = 256,
) -> list[str]:
    """The most likely continuation of each prompt, cut at the first EOS."""
    model.eval()
    before = tokenizer.padding_side
    tokenizer.padding_side = "left"
    out: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start : start + batch_size])
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            ids = model.generate(  # type: ignore[operator]
                **enc.to(model.device),
                do_sample=False,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            out.extend(
                tokenizer.batch_decode(
                    ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True
                )
            )
    finally:
        tokenizer.padding_side = before
    return out


def measure_policy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    problems: Sequence[Problem],
    *,
    seed: int,
    max_new_tokens: int,
    n_samples: int = SAMPLES_PER_EVAL_PROMPT,
) -> dict[str, float]:
    """Greedy accuracy, accuracy of samples at temperature 1.0, pass@``n_samples`` (a problem
    counts when any of its samples is right), EOS and well-formed rates of the samples."""
    prompts = [p.prompt for p in problems]
    greedy = greedy_responses(model, tokenizer, prompts, max_new_tokens=max_new_tokens)
    samples = sample_responses(
        model,
        tokenizer,
        prompts,
        n_per_prompt=n_samples,
        seed=seed,
        max_new_tokens=max_new_tokens,
    )
    right = [is_correct(s.response, problems[i // n_samples].answer) for i, s in enumerate(samples)]
    solved = [any(right[i : i + n_samples]) for i in range(0, len(right), n_samples)]
    return {
        "greedy_accuracy": sum(
            is_correct(r, p.answer) for r, p in zip(greedy, problems, strict=True)
        )
        / len(problems),
        "sampled_accuracy": sum(right) / len(right),
        "pass_at_k": sum(solved) / len(solved),
        "eos_rate": sum(s.finished for s in samples) / len(samples),
        "well_formed_rate": sum(is_well_formed(s.response) for s in samples) / len(samples),
    }


# ---------------------------------------------------------------------------------------------
# the build
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one CPU thread, restoring the caller's setting after.

    Why: the model is so small that a second thread gains little, while on a busy machine
    OpenMP threads spin-wait on each other; and a fixed thread count keeps floating-point
    reductions, hence the built files, identical across machines with different core counts.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    return value


def build_world(out: Path, options: ArithmeticOptions) -> dict[str, Any]:
    """Build every artifact into the (empty) directory ``out``; return the figures, which are
    also written to ``figures.json``."""
    with _one_thread(), quiet_transformers():
        return _build(out, options)


def _build(out: Path, options: ArithmeticOptions) -> dict[str, Any]:
    seed, digits, terms = options.seed, options.digits, options.terms
    out.mkdir(parents=True, exist_ok=True)

    log.info("arithmetic: generating problems and worked answers")
    splits = problem_sets(seed, digits, terms, options.train_prompts, options.eval_prompts)
    held_out = {p.prompt for p in splits["eval"]}
    for split, problems in splits.items():
        write_jsonl(
            out / PROMPT_FILES[split], ({"prompt": p.prompt, "answer": p.answer} for p in problems)
        )
    corpus = demonstrations(
        options.corpus_size,
        subseed(seed, "corpus"),
        digits,
        terms,
        held_out,
        easy_fraction=options.easy_fraction,
    )
    careless = demonstrations(
        options.careless_steps * options.batch_size,
        subseed(seed, "careless"),
        digits,
        terms,
        held_out,
        noise=options.answer_noise,
    )
    (out / "corpus.txt").write_text("".join(t + "\n" for t in corpus), encoding="utf-8")
    (out / "careless.txt").write_text("".join(t + "\n" for t in careless), encoding="utf-8")
    tokenizer = build_tokenizer()
    n_positions, max_new_tokens = sizes(options, tokenizer)

    log.info("arithmetic: training the SFT policy on correct worked answers")
    policy_config = {
        "n_layer": options.policy_layers,
        "n_embd": options.policy_width,
        "n_head": options.policy_heads,
        "n_positions": n_positions,
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
        eval_texts=[f"{p.prompt} {p.worked()}" for p in splits["eval"]],
    )
    policy = GPT2LMHeadModel.from_pretrained(out / POLICY_DIR)
    careful = measure_policy(
        policy,
        tokenizer,
        splits["eval"],
        seed=subseed(seed, "eval_samples"),
        max_new_tokens=max_new_tokens,
    )

    careless_loss = None
    if options.careless_steps:
        log.info("arithmetic: the careless phase (demonstrations with slips)")
        careless_loss = _careless_phase(
            policy,
            tokenizer,
            careless,
            steps=options.careless_steps,
            lr=options.careless_lr,
            batch_size=options.batch_size,
            seed=subseed(seed, "careless_phase"),
        )
        policy.save_pretrained(out / POLICY_DIR)
        # Measure what was saved, not what is in memory.
        policy = GPT2LMHeadModel.from_pretrained(out / POLICY_DIR)

    log.info("arithmetic: measuring the SFT policy")
    final = measure_policy(
        policy,
        tokenizer,
        splits["eval"],
        seed=subseed(seed, "eval_samples"),
        max_new_tokens=max_new_tokens,
    )

    figures: dict[str, Any] = {
        "version": VERSION,
        "seed": seed,
        "digits": digits,
        "terms": terms,
        "vocab_size": len(tokenizer),
        "train_prompts": len(splits["train"]),
        "eval_prompts": len(splits["eval"]),
        "max_new_tokens": max_new_tokens,
        "corpus_size": len(corpus),
        "careless_demonstrations": len(careless),
        "answer_noise": options.answer_noise,
        "sft_params": sft["params"],
        "sft_train_loss": sft["train_loss"],
        "sft_eval_perplexity": sft["eval_perplexity"],
        "careless_train_loss": careless_loss,
        "samples_per_eval_prompt": SAMPLES_PER_EVAL_PROMPT,
        **{f"careful_{key}": value for key, value in careful.items()},
        **{f"sft_{key}": value for key, value in final.items()},
    }
    figures = {key: _round(value) for key, value in figures.items()}
    (out / FIGURES_FILE).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    (out / "options.json").write_text(
        json.dumps({"version": VERSION, **options.as_dict()}, indent=2, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    return figures
