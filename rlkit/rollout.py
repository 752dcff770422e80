"""Batched sampling with a KV cache, and the scoring forward pass.

Sampling: left-padded prompts, one prefill pass, then one cached forward per new token; the
only per-token Python is the sampling step itself. Responses end at the first EOS: every
later position is padding and masked out. Log-probs are always those of the *sampling*
distribution softmax(logits / T), so the ratio π/π_old is exactly 1 before any update.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rlkit.ops import (
    entropy_from_logits,
    entropy_from_logp,
    log_softmax_at,
    logprobs_from_logits,
)

log = logging.getLogger(__name__)


def _preallocated_layer_class() -> type | None:
    """A KV-cache layer that writes into a buffer sized for the whole generation and hands
    attention a view of its filled part: the values a growing ``DynamicLayer`` would hold,
    without its per-token ``torch.cat`` of every layer's keys and values (a quarter of the
    decode time of a small model on CPU). None when this transformers has no such layer API."""
    try:
        from transformers.cache_utils import DynamicLayer
    except ImportError:  # pragma: no cover - older transformers
        return None

    class PreallocatedLayer(DynamicLayer):  # type: ignore[misc, valid-type]
        def __init__(self, capacity: int) -> None:
            super().__init__()
            self.capacity = capacity
            self.length = 0

        def update(self, key_states: Tensor, value_states: Tensor, *args: Any,
                   **kwargs: Any) -> tuple[Tensor, Tensor]:
            new = key_states.shape[-2]
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
                shape = (*key_states.shape[:-2], self.capacity, key_states.shape[-1])
                self._k = key_states.new_empty(shape)
                self._v = value_states.new_empty(
                    (*value_states.shape[:-2], self.capacity, value_states.shape[-1]))
            if self.length + new > self.capacity:  # never in ``sample``; grow like the base
                return super().update(key_states, value_states, *args, **kwargs)
            self._k[..., self.length:self.length + new, :] = key_states
            self._v[..., self.length:self.length + new, :] = value_states
            self.length += new
            self.keys = self._k[..., :self.length, :]
            self.values = self._v[..., :self.length, :]
            return self.keys, self.values

    return PreallocatedLayer


@functools.cache
def _layer_class() -> type | None:
    return _preallocated_layer_class()


def preallocated_cache(model: torch.nn.Module, capacity: int) -> Any:
    """A ``DynamicCache`` for ``model`` whose full-attention layers are preallocated for
    ``capacity`` positions (sliding-window or other special layers are kept as transformers
    builds them). None, so the model builds its own cache, when that is not possible."""
    layer = _layer_class()
    config = getattr(model, "config", None)
    if layer is None or config is None:
        return None
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer

        cache = DynamicCache(config=config)
        if cache.layer_class_to_replicate is DynamicLayer:
            # a factory where transformers annotates a class: it only ever calls it
            cache.layer_class_to_replicate = functools.partial(layer, capacity)  # type: ignore[assignment]
        cache.layers = [layer(capacity) if type(x) is DynamicLayer else x for x in cache.layers]
        return cache
    except Exception as exc:  # noqa: BLE001 - an unusual model keeps its own cache
        log.debug("no preallocated KV cache for %s: %s", type(model).__name__, exc)
        return None


@dataclass
class Samples:
    input_ids: Tensor  # [N, P+R] prompt (left padded) + response (right padded)
    attention_mask: Tensor  # [N, P+R]
    prompt_len: int
    response_mask: Tensor  # [N, R] float: 1 up to and including the first EOS
    ended: Tensor  # [N] bool: the response contains an EOS
    logprobs: Tensor | None = None  # [N, R] the sampler's log softmax(logits/T)[token], masked


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Positions that skip left padding, so a padded prompt sees the same positions as an
    unpadded one."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def filter_logits(logits: Tensor, top_k: int, top_p: float) -> Tensor:
    """Top-k then nucleus (top-p) filtering; removed entries get −inf."""
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        remove = cum - sorted_logits.softmax(-1) > top_p  # keep the token that crosses top_p
        sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def response_mask_after_eos(tokens: Tensor, eos_id: int) -> tuple[Tensor, Tensor]:
    """Mask of positions up to and including the first EOS, and whether an EOS occurred."""
    is_eos = tokens == eos_id
    # eos_before[t] = an EOS occurred strictly before t
    eos_before = (is_eos.long().cumsum(-1) - is_eos.long()) > 0
    return (~eos_before).float(), is_eos.any(-1)


class Decoder:
    """One generation's model calls: ``prefill`` the prompts, then one ``step`` per new token;
    each returns the next-token logits [N, V]. This one (``sample``'s default) keeps the KV
    cache in buffers preallocated for the whole generation (:func:`preallocated_cache`) and the
    attention mask as a growing view; :class:`StaticDecoder` is the fixed-shape variant that
    ``torch.compile`` can capture once."""

    def __init__(self, model: torch.nn.Module, prompt_ids: Tensor, prompt_mask: Tensor,
                 max_new_tokens: int) -> None:
        n, prompt_len = prompt_ids.shape
        self.model, self.prompt_ids = model, prompt_ids
        self.mask_buffer = torch.ones((n, prompt_len + max_new_tokens), dtype=torch.long,
                                      device=prompt_ids.device)
        self.mask_buffer[:, :prompt_len] = prompt_mask
        self.width = prompt_len
        self.positions = position_ids_from_mask(self.mask_buffer[:, :prompt_len])
        self.past: Any = preallocated_cache(model, prompt_len + max_new_tokens)

    def prefill(self) -> Tensor:
        out = self.model(input_ids=self.prompt_ids, attention_mask=self.mask_buffer[:, :self.width],
                         position_ids=self.positions, past_key_values=self.past, use_cache=True)
        self.past = out.past_key_values
        self.next_pos = self.positions[:, -1:] + 1
        return out.logits[:, -1, :]

    def step(self, token: Tensor, attend: Tensor) -> Tensor:
        """Feed ``token`` [N]; ``attend`` [N] says which rows' new position later tokens see."""
        self.mask_buffer[:, self.width] = attend.long()
        self.width += 1
        out = self.model(input_ids=token.unsqueeze(1),
                         attention_mask=self.mask_buffer[:, :self.width],
                         position_ids=self.next_pos, past_key_values=self.past, use_cache=True)
        self.past = out.past_key_values
        self.next_pos = self.next_pos + 1
        return out.logits[:, -1, :]


#: the static cache's length is rounded up to a multiple of this, so that batches with
#: prompts of different widths reuse one compiled step
STATIC_CACHE_BUCKET = 32


class StaticDecoder(Decoder):
    """Fixed-shape decoding: a transformers ``StaticCache`` and a full-length attention mask,
    so every one-token step has the same tensor shapes and ``compiled_step`` (a
    ``torch.compile``d ``model.forward``, or the plain one) is captured once per batch size
    and cache length. The cache length is the prompt width + ``max_new_tokens`` rounded up to
    :data:`STATIC_CACHE_BUCKET`; positions past the generated ones are masked out."""

    def __init__(self, model: torch.nn.Module, prompt_ids: Tensor, prompt_mask: Tensor,
                 max_new_tokens: int, compiled_step: Callable[..., Any] | None = None) -> None:
        from transformers import StaticCache

        self.compiled_step = compiled_step
        n, prompt_len = prompt_ids.shape
        length = -(-(prompt_len + max_new_tokens) // STATIC_CACHE_BUCKET) * STATIC_CACHE_BUCKET
        self.model, self.prompt_ids = model, prompt_ids
        self.mask_buffer = torch.zeros((n, length), dtype=torch.long, device=prompt_ids.device)
        self.mask_buffer[:, :prompt_len] = prompt_mask
        self.width = prompt_len
        self.positions = position_ids_from_mask(prompt_mask.long())
        self.past = StaticCache(config=model.config, max_cache_len=length)  # type: ignore[arg-type]

    def prefill(self) -> Tensor:
        device = self.prompt_ids.device
        out = self.model(input_ids=self.prompt_ids, attention_mask=self.mask_buffer,
                         position_ids=self.positions, past_key_values=self.past,
                         cache_position=torch.arange(self.width, device=device), use_cache=True)
        self.next_pos = self.positions[:, -1:] + 1
        return out.logits[:, -1, :]

    def step(self, token: Tensor, attend: Tensor) -> Tensor:
        self.mask_buffer[:, self.width] = attend.long()
        forward = self.compiled_step or self.model.forward
        out = forward(input_ids=token.unsqueeze(1), attention_mask=self.mask_buffer,
                      position_ids=self.next_pos, past_key_values=self.past,
                      cache_position=torch.tensor([self.width], device=token.device),
                      use_cache=True)
        self.width += 1
        self.next_pos = self.next_pos + 1
        return out.logits[:, -1, :]


@torch.inference_mode()
def sample(
    model: torch.nn.Module,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    *,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_new_tokens: int = 0,
    generator: torch.Generator | None = None,
    row_offset: int = 0,
    total_rows: int | None = None,
    decoder: Callable[[torch.nn.Module, Tensor, Tensor, int], Decoder] = Decoder,
) -> Samples:
    """Sample responses for left-padded prompts; stops early once every row has ended.

    EOS is masked out for the first ``min_new_tokens`` tokens (HF ``min_new_tokens``). The
    returned log-probs are those of the sampled tokens under softmax(logits/T) before top-k/p
    filtering — the distribution the scoring forward measures — so the engine can compare
    the two (the train–rollout mismatch).

    Each token is argmax(p / q) with q ~ Exp(1) (the Gumbel-max form torch.multinomial uses
    for one sample, so this draws exactly what it draws). The noise is drawn for a batch of
    ``total_rows`` rows, of which these are rows ``row_offset``… : data-parallel ranks that
    sample slices of one global batch draw the very tokens one process would. ``decoder``
    makes the model calls (:class:`Decoder`, or :class:`StaticDecoder`)."""
    n, prompt_len = prompt_ids.shape
    total_rows = n if total_rows is None else total_rows
    if not 0 <= row_offset <= total_rows - n:
        raise ValueError(f"rows {row_offset}..{row_offset + n} are not inside a batch of "
                         f"{total_rows}")
    device = prompt_ids.device
    calls = decoder(model, prompt_ids, prompt_mask, max_new_tokens)
    next_logits = calls.prefill()
    finished = torch.zeros(n, dtype=torch.bool, device=device)
    new_tokens, new_logprobs = [], []
    for step in range(max_new_tokens):
        scaled = next_logits.float() / temperature
        if step < min_new_tokens:
            scaled[:, eos_id] = float("-inf")
        logits = filter_logits(scaled, top_k, top_p)
        probs = logits.softmax(-1)
        noise = torch.empty((total_rows, probs.shape[-1]), dtype=probs.dtype,
                            device=device).exponential_(1, generator=generator)
        token = (probs / noise[row_offset : row_offset + n]).argmax(-1)
        token = torch.where(finished, torch.full_like(token, pad_id), token)
        new_tokens.append(token)
        new_logprobs.append(scaled.log_softmax(-1).gather(-1, token.unsqueeze(-1)).squeeze(-1))
        finished |= token == eos_id
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        next_logits = calls.step(token, ~finished | (token == eos_id))
    response = torch.stack(new_tokens, dim=1)
    response_mask, ended = response_mask_after_eos(response, eos_id)
    response = torch.where(response_mask.bool(), response, torch.full_like(response, pad_id))
    input_ids = torch.cat([prompt_ids, response], dim=1)
    attention_mask = torch.cat([prompt_mask.long(), response_mask.long()], dim=1)
    logprobs = torch.stack(new_logprobs, dim=1) * response_mask
    return Samples(input_ids, attention_mask, prompt_len, response_mask, ended, logprobs)


def no_cache(model: Any) -> dict[str, Any]:
    """``{"use_cache": False}`` for a model whose config has ``use_cache`` (every Hugging Face
    causal LM, a PEFT wrapper of one), else ``{}``: a scoring or training forward reads the
    logits only, and with the config's default a transformers model also builds a KV cache it
    never uses (a cache object and a copy of every layer's keys and values per forward). The
    outputs are the same either way."""
    config = getattr(model, "config", None)
    return {"use_cache": False} if getattr(config, "use_cache", None) is not None else {}


def forward_response(
    model: torch.nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    prompt_len: int,
    temperature: float,
    with_entropy: bool = True,
    entropy_grad: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """Log-probs (and exact entropies) of the response tokens under softmax(logits/T).

    Logits at position i predict token i+1, so the response tokens P..P+R−1 are scored by
    the logits at P−1..P+R−2; only those R positions are materialised. With
    ``entropy_grad=False`` (or no autograd) one log_softmax serves both, the entropy taken
    outside the graph: the values, and the gradient of the log-probs, are bit-identical to
    two separate log_softmax passes. With an entropy gradient the two stay separate passes
    (one shared pass would sum the two backward paths in another order: not bit-identical).
    """
    positions = position_ids_from_mask(attention_mask)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                **no_cache(model))
    return _response_logprobs(out.logits, input_ids, prompt_len, temperature, with_entropy,
                              entropy_grad)


def forward_response_and_values(
    model: torch.nn.Module,
    critic: Any,
    input_ids: Tensor,
    attention_mask: Tensor,
    prompt_len: int,
    temperature: float,
    with_entropy: bool = True,
    entropy_grad: bool = True,
) -> tuple[Tensor, Tensor | None, Tensor]:
    """:func:`forward_response` and :func:`forward_values` of a critic that is a value head on
    the policy's own trunk (``critic.shared``) in **one** trunk pass: the policy's forward
    returns its last hidden state too, and the critic's head reads it, so the backward also
    runs through the trunk once. The log-probs are :func:`forward_response`'s bit for bit; the
    values equal ``critic``'s own forward wherever the model's last hidden state is its trunk's
    output (checked once per critic by :meth:`~rlkit.models.SharedValueModel.fuses_with`)."""
    positions = position_ids_from_mask(attention_mask)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                output_hidden_states=True, **no_cache(model))
    logprobs, entropy = _response_logprobs(out.logits, input_ids, prompt_len, temperature,
                                           with_entropy, entropy_grad)
    values = critic.values_from_hidden(out.hidden_states[-1])
    return logprobs, entropy, values[:, prompt_len - 1 : -1].float()


def _response_logprobs(logits: Tensor, input_ids: Tensor, prompt_len: int, temperature: float,
                       with_entropy: bool, entropy_grad: bool) -> tuple[Tensor, Tensor | None]:
    hidden_logits = logits[:, prompt_len - 1 : -1]
    tokens = input_ids[:, prompt_len:]
    if not with_entropy:
        return logprobs_from_logits(hidden_logits, tokens, temperature), None
    if entropy_grad and torch.is_grad_enabled():
        return (logprobs_from_logits(hidden_logits, tokens, temperature),
                entropy_from_logits(hidden_logits, temperature))
    logp = log_softmax_at(hidden_logits, temperature)
    logprobs = logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    with torch.no_grad():
        entropy = entropy_from_logp(logp)
    return logprobs, entropy


def forward_values(
    critic: torch.nn.Module, input_ids: Tensor, attention_mask: Tensor, prompt_len: int
) -> Tensor:
    """V(s_t) for each response position t: the critic's output at the token before a_t."""
    positions = position_ids_from_mask(attention_mask)
    values = critic(input_ids, attention_mask, positions)
    return values[:, prompt_len - 1 : -1].float()
