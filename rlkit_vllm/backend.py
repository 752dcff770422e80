"""The vLLM generation backend: sampling in vLLM, training in torch, weights synced after
every update.

* Sampling parameters map one-to-one onto ``vllm.SamplingParams``: ``max_new_tokens`` →
  ``max_tokens``, ``min_new_tokens`` → ``min_tokens``, ``temperature``, ``top_k`` (0 = off),
  ``top_p``; EOS stops a response (``stop_token_ids``) and is kept in it, as the ``hf``
  backend keeps it. Each row gets its own ``seed`` (the step's seed + the row's index in the
  global batch), so a run is reproducible and data-parallel ranks sample what one process
  would.
* The log-probs returned are vLLM's own (``logprobs=0``: the sampled token's), with
  ``logprobs_mode="processed_logprobs"``: after temperature, so they are comparable with the
  engine's scoring pass and ``rollout/logprob_mismatch`` measures the real train–rollout gap
  (kernels, dtype, batch shapes). With top-k/top-p active vLLM renormalizes over the kept
  tokens, which then adds log(kept mass) to the mismatch.
* ``sync_weights`` loads the trained policy's weights (under LoRA: merged into the base)
  into vLLM's model in place (``model.load_weights``), then resets vLLM's prefix cache.

Options (``rollout.backend_options``): ``gpu_memory_utilization`` (default 0.3: the trainer
shares the GPU), ``dtype`` (default ``bfloat16``), ``enforce_eager`` (default True: no CUDA
graph capture at start), and any other ``vllm.LLM`` keyword.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rlkit.backends import GenerationBackend, SamplingParams
from rlkit.errors import ConfigError
from rlkit.models import base_state_dict, is_lora
from rlkit.rollout import Samples, response_mask_after_eos

DEFAULTS: dict[str, Any] = {"gpu_memory_utilization": 0.3, "dtype": "bfloat16",
                            "enforce_eager": True}


def sampling_params(params: SamplingParams, eos_id: int, seed: int) -> Any:
    """rlkit's SamplingParams as vLLM's, one-to-one (a function, so a test can read it)."""
    from vllm import SamplingParams as VLLMSamplingParams

    return VLLMSamplingParams(
        n=1, max_tokens=params.max_new_tokens, min_tokens=params.min_new_tokens,
        temperature=params.temperature, top_k=params.top_k if params.top_k > 0 else -1,
        top_p=params.top_p, seed=seed, logprobs=0, stop_token_ids=[eos_id],
        skip_special_tokens=False, detokenize=False)


def policy_state(policy: torch.nn.Module) -> dict[str, Tensor]:
    """The policy's weights under Hugging Face names (a LoRA policy: merged)."""
    if is_lora(policy):
        return base_state_dict(policy, merged=True)
    return policy.state_dict()


class VLLMBackend(GenerationBackend):
    """Generation in vLLM (GPU); the trained policy stays in torch."""

    name = "vllm"

    def __init__(self, policy: torch.nn.Module, tokenizer: Any, device: torch.device,
                 config: Any) -> None:
        super().__init__(policy, tokenizer, device, config)
        if device.type != "cuda":
            raise ConfigError("rollout.backend=vllm needs a CUDA device (train.device); use "
                              "rollout.backend=hf on CPU.")
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # model in this process
        from vllm import LLM

        options = {**DEFAULTS, **dict(getattr(config.rollout, "backend_options", {}) or {})}
        self._dir = tempfile.TemporaryDirectory(prefix="rlkit-vllm-")
        path = Path(self._dir.name)
        self._save(policy, path)
        self.llm = LLM(model=str(path), tokenizer=str(path), seed=int(config.seed),
                       logprobs_mode="processed_logprobs", **options)

    def _save(self, policy: torch.nn.Module, path: Path) -> None:
        from rlkit.models import save_policy

        save_policy(policy, self.tokenizer, path, merged=True)

    # -- weights ---------------------------------------------------------------------------
    def _model(self) -> Any:
        engine = self.llm.llm_engine
        for get in (lambda: engine.model_executor.driver_worker.worker.model_runner.model,
                    lambda: engine.model_executor.driver_worker.model_runner.model,
                    lambda: engine.engine_core.engine_core.model_executor.driver_worker.worker
                    .model_runner.model):
            try:
                return get()
            except AttributeError:
                continue
        return None

    @torch.no_grad()
    def sync_weights(self, policy: torch.nn.Module) -> None:
        state = policy_state(policy)
        model = self._model()
        if model is not None:
            model.load_weights(weights=list(state.items()))
        else:  # newer vLLM: run the load inside the engine's workers
            items = [(k, v.detach().cpu()) for k, v in state.items()]
            self.llm.apply_model(lambda m: m.load_weights(weights=items))
        self.llm.reset_prefix_cache()

    # -- sampling --------------------------------------------------------------------------
    def generate(self, prompt_ids: Tensor, prompt_mask: Tensor, params: SamplingParams,
                 generator: torch.Generator) -> Samples:
        from vllm.inputs import TokensPrompt

        tok = self.tokenizer
        eos, pad = tok.eos_token_id, tok.pad_token_id
        seed = int(generator.initial_seed())
        prompts = [TokensPrompt(prompt_token_ids=row[mask.bool()].tolist())
                   for row, mask in zip(prompt_ids.cpu(), prompt_mask.cpu())]
        per_row = [sampling_params(params, eos, (seed + params.row_offset + i) % 2**63)
                   for i in range(len(prompts))]
        outputs = self.llm.generate(prompts, per_row, use_tqdm=False)
        bodies, logprobs = [], []
        for out in outputs:
            completion = out.outputs[0]
            ids = list(completion.token_ids)
            bodies.append(ids)
            logprobs.append([float(step[token].logprob)
                             for step, token in zip(completion.logprobs or [], ids)])
        width = max(1, max(len(b) for b in bodies))
        response = torch.full((len(bodies), width), pad, dtype=torch.long)
        lp = torch.zeros(len(bodies), width)
        for i, (body, row_lp) in enumerate(zip(bodies, logprobs)):
            response[i, :len(body)] = torch.tensor(body, dtype=torch.long)
            lp[i, :len(row_lp)] = torch.tensor(row_lp)
        response_mask, ended = response_mask_after_eos(response, eos)
        lengths = torch.tensor([len(b) for b in bodies])
        response_mask = response_mask * (torch.arange(width)[None, :] < lengths[:, None])
        response = torch.where(response_mask.bool(), response, torch.full_like(response, pad))
        device = prompt_ids.device
        return Samples(
            input_ids=torch.cat([prompt_ids, response.to(device)], 1),
            attention_mask=torch.cat([prompt_mask.long(), response_mask.long().to(device)], 1),
            prompt_len=prompt_ids.shape[1], response_mask=response_mask.to(device),
            ended=ended.to(device), logprobs=(lp * response_mask).to(device))
