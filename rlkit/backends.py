"""Generation backends: where responses come from (``rollout.backend``).

A backend turns left-padded prompt ids into :class:`~rlkit.rollout.Samples` — responses cut
after the first EOS, and the log-probs it sampled with — and keeps its copy of the policy in
step with the trained one (:meth:`GenerationBackend.sync_weights`, called after every update).
The built-in ``hf`` backend is rlkit's KV-cached sampler running on the trained policy itself,
so it has nothing to sync. A plugin registers others (vLLM, SGLang, a remote server) through
``rlkit_register_backends``, with no edit to the engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from rlkit.hookspecs import hookimpl
from rlkit.rollout import Samples, sample


@dataclass(frozen=True)
class SamplingParams:
    """The decoding settings every backend must honour one-to-one."""

    max_new_tokens: int
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0
    min_new_tokens: int = 0
    # Data parallelism: these prompts are rows row_offset… of a global batch of total_rows
    # (None: the call is the whole batch). A backend draws row i's randomness as one process
    # sampling the whole batch would, so N ranks sample what one process samples.
    row_offset: int = 0
    total_rows: int | None = None


class GenerationBackend(ABC):
    """Base class of generation backends.

    Built once per run with the trained policy, its tokenizer (left padding, pad ≠ eos), the
    device and the run config. ``generate`` must be deterministic given ``generator``'s seed,
    mask everything after the first EOS, and return the log-probs of the sampled tokens under
    softmax(logits/T) (unfiltered by top-k/p) in ``Samples.logprobs``; the engine logs their
    mean absolute difference from its own scoring forward as ``rollout/logprob_mismatch``.
    """

    name: ClassVar[str]

    def __init__(self, policy: torch.nn.Module, tokenizer: Any, device: torch.device,
                 config: Any) -> None:
        self.policy, self.tokenizer, self.device, self.config = policy, tokenizer, device, config

    @abstractmethod
    def generate(self, prompt_ids: Tensor, prompt_mask: Tensor, params: SamplingParams,
                 generator: torch.Generator) -> Samples:
        """Responses for left-padded ``prompt_ids`` [N, P] (already repeated k times)."""

    def sync_weights(self, policy: torch.nn.Module) -> None:
        """Make the backend's copy of the policy equal ``policy`` (after every update)."""


class HFBackend(GenerationBackend):
    """rlkit's KV-cached sampler on the trained policy itself (one forward per new token)."""

    name = "hf"

    def generate(self, prompt_ids: Tensor, prompt_mask: Tensor, params: SamplingParams,
                 generator: torch.Generator) -> Samples:
        tok = self.tokenizer
        was_training = self.policy.training
        self.policy.eval()
        try:
            return sample(
                self.policy, prompt_ids, prompt_mask, max_new_tokens=params.max_new_tokens,
                eos_id=tok.eos_token_id, pad_id=tok.pad_token_id,
                temperature=params.temperature, top_k=params.top_k, top_p=params.top_p,
                min_new_tokens=params.min_new_tokens, generator=generator,
                row_offset=params.row_offset, total_rows=params.total_rows,
            )
        finally:
            self.policy.train(was_training)


@hookimpl
def rlkit_register_backends(register):
    register(HFBackend)
