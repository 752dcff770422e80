"""A test-only external plugin package (installed in the tests through its entry point).

It adds, with no edit to rlkit/: a generation backend (HF ``generate``), a reward source that
reads a metadata column of the prompt file (``target``), and a metric with a direction
(``eval/target_rate``) that the report ranks.
"""

from __future__ import annotations

import torch

import rlkit
from rlkit import GenerationBackend, MetricInfo, RewardInputs, RewardSource, Samples, SamplingParams


class HFGenerateBackend(GenerationBackend):
    """Transformers' own ``generate`` (sampling), seeded from the engine's generator."""

    name = "hf_generate"

    def generate(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                 params: SamplingParams, generator: torch.Generator) -> Samples:
        tok = self.tokenizer
        self.policy.eval()
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(generator.initial_seed())
            out = self.policy.generate(
                input_ids=prompt_ids, attention_mask=prompt_mask, do_sample=True,
                max_new_tokens=params.max_new_tokens, min_new_tokens=params.min_new_tokens,
                temperature=params.temperature, top_k=params.top_k or None, top_p=params.top_p,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                output_logits=True, return_dict_in_generate=True)
        response = out.sequences[:, prompt_ids.shape[1]:]
        is_eos = response == tok.eos_token_id
        after = (is_eos.long().cumsum(1) - is_eos.long()) > 0
        mask = (~after).float()
        response = torch.where(mask.bool(), response, torch.full_like(response, tok.pad_token_id))
        logits = torch.stack(out.logits, 1).float() / params.temperature
        logprobs = logits.log_softmax(-1).gather(-1, response.unsqueeze(-1)).squeeze(-1) * mask
        return Samples(torch.cat([prompt_ids, response], 1),
                       torch.cat([prompt_mask.long(), mask.long()], 1), prompt_ids.shape[1],
                       mask, is_eos.any(1), logprobs)


class TargetWord(RewardSource):
    """1 when the response contains the prompt's ``target`` column, else 0."""

    def __call__(self, inputs: RewardInputs) -> list[float]:
        return [float(row["target"] in response.split())
                for row, response in zip(inputs.metadata, inputs.responses)]


TARGET_RATE = MetricInfo("eval/target_rate", "Share of eval responses containing the target",
                         "fraction", goal="max", eval=True)


@rlkit.hookimpl
def rlkit_register_backends(register):
    register(HFGenerateBackend)


@rlkit.hookimpl
def rlkit_register_rewards(register):
    register("target_word", TargetWord)


@rlkit.hookimpl
def rlkit_register_metrics(register):
    register(TARGET_RATE)


@rlkit.hookimpl
def rlkit_evaluate(ctx, step):
    ev = ctx.last_eval
    hits = [float(row.get("target", "") in r.split()) for row, r in zip(ev.metadata, ev.responses)]
    return {TARGET_RATE.key: sum(hits) / len(hits)}
