"""Generation backends: where responses come from (``rollout.backend``).

A backend turns left-padded prompt ids into :class:`~rlkit.rollout.Samples` — responses cut
after the first EOS, and the log-probs it sampled with — and keeps its copy of the policy in
step with the trained one (:meth:`GenerationBackend.sync_weights`, called after every update).
The built-in ``hf`` backend is rlkit's KV-cached sampler running on the trained policy itself,
so it has nothing to sync. A plugin registers others (vLLM, SGLang, a remote server) through
``rlkit_register_backends``, with no edit to the engine.
"""

from __future__ import annotations

import functools
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from rlkit.hookspecs import hookimpl
from rlkit.rollout import Samples, StaticDecoder, sample

log = logging.getLogger(__name__)


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
        return self._sample(prompt_ids, prompt_mask, params, generator)

    def _sample(self, prompt_ids: Tensor, prompt_mask: Tensor, params: SamplingParams,
                generator: torch.Generator, decoder: Any = None) -> Samples:
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
                **({"decoder": decoder} if decoder is not None else {}),
            )
        finally:
            self.policy.train(was_training)


class HFCompiledBackend(HFBackend):
    """The ``hf`` sampler with a fixed-shape decode loop (a static KV cache) whose one-token
    step is ``torch.compile``d: the same sampling rule and noise, so the same distribution,
    but the compiled kernels round differently from the eager ones, so the tokens are not
    bit-identical to ``hf``'s (``rollout/logprob_mismatch`` shows the difference). Measured on
    the CPU (benchmarks/README.md): 1.66x the ``hf`` sampler's tokens/s on W1, 1.10x on W2,
    after a compilation of 5-25 s per batch shape in each process. Where compilation is not
    available (no C++ compiler, an unsupported model) the first call says why in a warning and
    the run samples with ``hf``'s loop from then on, drawing the same noise."""

    name = "hf_compiled"

    def __init__(self, policy: torch.nn.Module, tokenizer: Any, device: torch.device,
                 config: Any) -> None:
        super().__init__(policy, tokenizer, device, config)
        self.compiled: Any = None
        self.failed: str | None = None

    def generate(self, prompt_ids: Tensor, prompt_mask: Tensor, params: SamplingParams,
                 generator: torch.Generator) -> Samples:
        if self.failed is not None:
            return self._sample(prompt_ids, prompt_mask, params, generator)
        state = generator.get_state()
        try:
            if self.compiled is None:
                self.compiled = torch.compile(self.policy.forward, dynamic=False)
            decoder = functools.partial(StaticDecoder, compiled_step=self.compiled)
            return self._sample(prompt_ids, prompt_mask, params, generator, decoder)
        except Exception as exc:  # noqa: BLE001 - any compile/trace failure: sample eagerly
            self.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            log.warning("rollout.backend=hf_compiled: compiling the decode step failed (%s); "
                        "sampling with the eager hf loop instead for the rest of this run",
                        self.failed)
            generator.set_state(state)  # the same noise as if it had never been tried
            return self._sample(prompt_ids, prompt_mask, params, generator)


@hookimpl
def rlkit_register_backends(register):
    register(HFBackend)
    register(HFCompiledBackend)
