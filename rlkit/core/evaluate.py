"""Evaluation: held-out prompts, fixed decoding and fixed seeds, identical for every algorithm.

With ``eval.seeds`` (several evaluation seeds) each metric is the mean over seeds and
``eval/<metric>/eval_std`` the spread across them — evaluation noise, reported apart from the
spread across training seeds. With ``eval.samples_per_prompt`` k > 1 the reward is mean@k and,
when every reward is 0 or 1, ``eval/pass@k`` the share of prompts with at least one success.
``eval.select_prompts`` holds a disjoint selection split (``eval/select/<metric>``) on which a
report chooses the "best" step without peeking at the prompts it reports.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rlkit import metrics as M
from rlkit.api import EvalSamples
from rlkit.core.experience import ExperienceMaker


def _metrics(maker: ExperienceMaker, rows: list[dict[str, Any]], k: int, seed: int,
             temperature: float, max_new: int) -> tuple[dict[str, float], EvalSamples]:
    dist, local, span = maker.dist, rows, None
    if dist is not None and dist.active:  # each rank evaluates a slice; the rows are gathered
        start, stop = dist.span(len(rows))
        local, span = rows[start:stop], (start, len(rows))
    samples, _ = maker.generate([r["prompt"] for r in local], k, seed, temperature, max_new,
                                span=span)
    exp, info = maker.score(samples, [r for r in local for _ in range(k)], temperature,
                            with_values=False, with_entropy=False, for_eval=True)
    has_kl = exp.ref_logprobs is not None  # no reference at all only with eval.kl: false
    per_row: dict[str, Any] = {"raw": info.raw_scores.tolist(), "kl": exp.kl.sum(1).tolist(),
               "length": exp.response_mask.sum(1).float().tolist(),
               "ended": info.ended.float().tolist(), "gold": info.gold,
               "responses": info.responses}
    if dist is not None and dist.active:
        parts = dist.all_gather_object(per_row)
        per_row = {key: None if any(p[key] is None for p in parts)
                   else [x for p in parts for x in p[key]] for key in per_row}
    raw = torch.tensor(per_row["raw"])
    row = {
        M.EVAL_REWARD: float(raw.mean()),
        M.EVAL_REWARD_STD: float(raw.std()) if len(raw) > 1 else 0.0,
        M.EVAL_RESPONSE_LENGTH: float(torch.tensor(per_row["length"]).mean()),
        M.EVAL_EOS_RATE: float(torch.tensor(per_row["ended"]).mean()),
    }
    if has_kl:
        row[M.EVAL_KL] = float(torch.tensor(per_row["kl"]).mean())
    gold = per_row["gold"]
    if gold is not None:
        row[M.EVAL_GOLD_REWARD] = float(np.mean(gold))
    if k > 1 and bool(((raw == 0) | (raw == 1)).all()):
        row[f"eval/pass@{k}"] = float(raw.view(-1, k).amax(1).mean())
    repeated = [r for r in rows for _ in range(k)]
    evs = EvalSamples(0, [r["prompt"] for r in repeated], repeated, per_row["responses"],
                      [float(x) for x in raw], gold, k)
    return row, evs


@torch.inference_mode()
def evaluate(maker: ExperienceMaker, config: Any, eval_rows: list[dict[str, Any]],
             select_rows: list[dict[str, Any]], step: int) -> tuple[dict[str, float],
                                                                   EvalSamples]:
    """The eval/ row of ``step`` and the first seed's samples."""
    ev, rollout = config.eval, config.rollout
    temperature = ev.temperature or rollout.temperature
    max_new = ev.max_new_tokens or rollout.max_new_tokens
    k = ev.samples_per_prompt
    seeds = ev.seed_list()
    per_seed, first = [], None
    for seed in seeds:
        row, samples = _metrics(maker, eval_rows, k, seed, temperature, max_new)
        per_seed.append(row)
        first = first or samples
    assert first is not None
    first.step = step
    out = {key: float(np.mean([r[key] for r in per_seed])) for key in per_seed[0]}
    if len(seeds) > 1:
        for key in per_seed[0]:
            if key != M.EVAL_REWARD_STD:
                out[M.eval_std_key(key)] = float(np.std([r[key] for r in per_seed], ddof=1))
    if select_rows:
        sel = [_metrics(maker, select_rows, k, seed, temperature, max_new)[0] for seed in seeds]
        for key in (M.EVAL_REWARD, M.EVAL_GOLD_REWARD, M.EVAL_KL):
            if key in sel[0]:
                out[M.select_key(key)] = float(
                    np.mean([r[key] for r in sel]))
    return out, first


def sample_rows(samples: EvalSamples, limit: int = 8) -> list[dict[str, Any]]:
    """The first ``limit`` evaluation samples as ``samples.jsonl`` rows."""
    return [{"train/step": samples.step, "prompt": samples.prompts[i],
             "response": samples.responses[i], "reward": samples.rewards[i],
             "gold_reward": None if samples.gold is None else float(samples.gold[i])}
            for i in range(min(limit, len(samples.responses)))]
