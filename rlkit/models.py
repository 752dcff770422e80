"""Loading the policy, reference, reward model and critic.

A model spec is a Hugging Face hub id, a local directory, or (policies only) a config mapping
for a tiny model built from scratch. Loading goes through the ``rlkit_load_model`` hook; the
Hugging Face loader below is registered ``trylast`` so a plugin can take over any spec.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from rlkit.errors import ConfigError
from rlkit.hookspecs import hookimpl
from rlkit.rollout import no_cache


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def disable_dropout(model: nn.Module) -> None:
    """RL needs the sampling and scoring passes to be the same function: no dropout anywhere."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel | None) -> None:
    """Make pad ≠ eos: if they coincide, masks would drop the real EOS and the policy would
    never learn to stop. Adds a ``[PAD]`` token (and resizes embeddings) when needed."""
    if tokenizer.eos_token_id is None:
        raise ConfigError(
            f"The tokenizer of '{tokenizer.name_or_path}' has no EOS token; rlkit needs one to "
            f"end responses. Set tokenizer.eos_token or pick another model."
        )
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        tokenizer.add_special_tokens({"pad_token": "[PAD]"})
        embeddings: Any = model.get_input_embeddings() if model is not None else None
        if model is not None and embeddings.num_embeddings < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer))
    if model is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        model.config.eos_token_id = tokenizer.eos_token_id
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


def _load_error(role: str, spec: str, exc: Exception) -> ConfigError:
    return ConfigError(
        f"Cannot load the {role} model '{spec}': {type(exc).__name__}: {str(exc).splitlines()[0]} "
        f"Give a local directory holding a Hugging Face model, or a hub id (downloading needs "
        f"a network and HF_HUB_OFFLINE unset)."
    )


@hookimpl(trylast=True)
def rlkit_load_model(spec: Any, role: str, run_config: Any) -> Any:
    """The built-in loader: Hugging Face Auto classes for a hub id or local directory."""
    if not isinstance(spec, str):
        return None
    section = {"policy": run_config.policy, "critic": run_config.critic}.get(role,
                                                                             run_config.reward)
    trust = bool(section.trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec, trust_remote_code=trust)
        auto = {"policy": AutoModelForCausalLM, "critic": AutoModel}.get(
            role, AutoModelForSequenceClassification)
        model = auto.from_pretrained(spec, trust_remote_code=trust)
    except (OSError, ValueError) as exc:
        raise _load_error(role, spec, exc) from None
    return model, tokenizer


def build_from_config(
    model_config: dict[str, Any], tokenizer: PreTrainedTokenizerBase, seed: int
) -> PreTrainedModel:
    """A tiny causal LM from a config mapping (``model_type`` defaults to gpt2)."""
    options = dict(model_config)
    model_type = options.pop("model_type", "gpt2")
    ensure_pad_token(tokenizer, None)
    try:
        config = AutoConfig.for_model(
            model_type,
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **options,
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"policy.config: {exc}") from None
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config)


def load_policy(run_config: Any, task: Any, hook: Any) -> tuple[PreTrainedModel, Any]:
    """Policy and tokenizer per ``run_config.policy``; tokenizer pads on the left."""
    section = run_config.policy
    if section.config is not None:
        if section.tokenizer is not None:
            tokenizer = AutoTokenizer.from_pretrained(section.tokenizer)
        elif task is not None and task.tokenizer() is not None:
            tokenizer = task.tokenizer()
        else:
            raise ConfigError(
                "policy.config builds a model from scratch but no tokenizer is known: set "
                "policy.tokenizer to a tokenizer id/path, or use a task that provides one."
            )
        model = build_from_config(section.config, tokenizer, run_config.seed)
    else:
        spec = section.model
        if spec == "task":
            spec = task.policy() if task is not None else None
            if spec is None:
                raise ConfigError(
                    "policy.model is 'task' but the task provides no policy: set policy.model to "
                    "a hub id or local directory, or policy.config to build a tiny model."
                )
        loaded = hook.rlkit_load_model(spec=spec, role="policy", run_config=run_config)
        if loaded is None:
            raise ConfigError(f"No plugin could load the policy '{spec}'.")
        model, tokenizer = loaded
        if section.tokenizer is not None:
            tokenizer = AutoTokenizer.from_pretrained(section.tokenizer)
    ensure_pad_token(tokenizer, model)
    tokenizer.padding_side = "left"
    disable_dropout(model)
    return model, tokenizer


def frozen_copy(model: nn.Module) -> nn.Module:
    """The reference policy: a frozen copy of the initial policy."""
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref


class ValueModel(nn.Module):
    """A critic: a transformer trunk with a linear head giving V(s_t) at every position."""

    def __init__(self, backbone: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            **no_cache(self.backbone),
        ).last_hidden_state
        return self.head(hidden.to(self.head.weight.dtype)).squeeze(-1)


def build_critic(init: str, policy: PreTrainedModel, tokenizer: Any,
                 reward_model: nn.Module | None, reward_tokenizer: Any) -> ValueModel:
    """A critic initialised from the policy trunk (zero head) or from the reward model (its
    trunk and scoring head: Ouyang et al. 2022; Zheng et al. 2023 recommend it). ``auto``: the
    reward model when it is a Hugging Face model sharing the policy's tokenizer, else the policy."""
    if init == "auto":
        shares = (reward_model is not None and hasattr(reward_model, "base_model")
                  and reward_tokenizer is not None
                  and reward_tokenizer.get_vocab() == tokenizer.get_vocab())
        init = "reward" if shares else "policy"
    if init == "reward":
        if reward_model is None or not hasattr(reward_model, "base_model"):
            raise ConfigError(
                "critic_init='reward' needs a Hugging Face reward model; this run's reward is a "
                "function. Use critic_init='policy'."
            )
        if reward_tokenizer is None or reward_tokenizer.get_vocab() != tokenizer.get_vocab():
            raise ConfigError(
                "critic_init='reward' needs the reward model to share the policy's tokenizer "
                "(the critic reads the policy's tokens). Use critic_init='policy'."
            )
        trunk = copy.deepcopy(_trunk(reward_model))
        source_head = getattr(reward_model, "score", None) or getattr(reward_model, "classifier", None)
        hidden = trunk.config.hidden_size
        head = nn.Linear(hidden, 1, bias=True)
        with torch.no_grad():
            head.weight.zero_()
            head.bias.zero_()
            if isinstance(source_head, nn.Linear) and source_head.in_features == hidden:
                head.weight.copy_(source_head.weight[:1])
                if source_head.bias is not None:
                    head.bias.copy_(source_head.bias[:1])
    elif init == "policy":
        trunk = copy.deepcopy(_trunk(policy))
        head = nn.Linear(trunk.config.hidden_size, 1, bias=True)
        with torch.no_grad():  # a zero head: V ≡ 0 at the start (OpenAI 2019)
            head.weight.zero_()
            head.bias.zero_()
    else:
        raise ConfigError(f"critic_init must be 'policy', 'reward' or 'auto', not '{init}'.")
    critic = ValueModel(trunk, head)
    disable_dropout(critic)
    return critic


def _trunk(model: nn.Module) -> Any:
    """A Hugging Face model's transformer trunk (``base_model``; the model itself otherwise)."""
    return getattr(model, "base_model", model)


def critic_from_model(model: nn.Module, tokenizer: Any, policy_tokenizer: Any) -> ValueModel:
    """A separate critic model (``critic.model``): its trunk with a zero value head. It reads
    the policy's tokens, so it must share the policy's vocabulary."""
    if tokenizer is not None and tokenizer.get_vocab() != policy_tokenizer.get_vocab():
        raise ConfigError(
            "critic.model must share the policy's tokenizer (the critic reads the policy's "
            "tokens); pick a critic of the same model family or leave critic.model unset.")
    trunk = _trunk(model)
    hidden = trunk.config.hidden_size
    head = nn.Linear(hidden, 1, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
    critic = ValueModel(trunk, head)
    disable_dropout(critic)
    return critic


# ---------------------------------------------------------------------------------------------
# LoRA, gradient checkpointing, bf16 weights and offloading (docs/scaling.md)
# ---------------------------------------------------------------------------------------------


def apply_lora(model: PreTrainedModel, lora: Any) -> Any:
    """Wrap ``model`` in LoRA adapters (peft): only the adapters train, the base is frozen.

    B starts at zero, so the wrapped policy equals the base policy until the first update,
    and the base with the adapter disabled *is* the reference (:class:`AdapterDisabled`)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:  # pragma: no cover - peft is a dependency
        raise ConfigError(f"policy.lora needs the peft library ({exc}); pip install peft.") from None
    is_conv1d = model.config.model_type in ("gpt2",)  # GPT-2 stores Linear as Conv1D (in, out)
    try:
        config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                            target_modules=lora.target_modules, task_type="CAUSAL_LM",
                            fan_in_fan_out=is_conv1d)
        return get_peft_model(model, config)
    except ValueError as exc:
        raise ConfigError(
            f"policy.lora: {exc} Set policy.lora.target_modules to module names of this "
            f"architecture ({model.config.model_type}), e.g. 'all-linear'.") from None


def is_lora(model: Any) -> bool:
    """Whether ``model`` is a peft model (LoRA adapters on a frozen base)."""
    return model is not None and hasattr(model, "disable_adapter") and hasattr(model,
                                                                               "peft_config")


class AdapterDisabled(nn.Module):
    """The reference of a LoRA run: the policy's own weights, run with the adapter disabled.

    It holds no parameters (the policy is kept outside the module tree, so ``.parameters()``,
    ``.to()``, ``.eval()`` and checkpoints never touch the policy through it): no second
    copy of the base weights exists. Its forward is the policy's forward under
    ``disable_adapter()``, so it is used wherever a reference model is."""

    model: Any  # the peft policy

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.__dict__["model"] = model  # not a submodule: shared, not owned

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with self.model.disable_adapter():
            return self.model(*args, **kwargs)


def reference_of(policy: Any) -> nn.Module:
    """The reference policy: the adapter-disabled policy under LoRA, else a frozen copy."""
    return AdapterDisabled(policy) if is_lora(policy) else frozen_copy(policy)


class SharedValueModel(nn.Module):
    """A critic that is a value head on the policy's adapter-enabled trunk (``critic.shared``).

    Only the head is this module's parameter; the trunk (and its adapter) belongs to the
    policy, so the value loss's gradient also reaches the adapter, as in a shared actor-critic."""

    trunk: Any  # the policy's transformer, not owned

    def __init__(self, policy: Any) -> None:
        super().__init__()
        base = policy.get_base_model() if is_lora(policy) else policy
        self.__dict__["trunk"] = base.base_model  # the transformer without the LM head
        hidden = self.trunk.config.hidden_size
        self.head = nn.Linear(hidden, 1, bias=True)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.zero_()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.trunk(input_ids=input_ids, attention_mask=attention_mask,
                            position_ids=position_ids).last_hidden_state
        return self.values_from_hidden(hidden)

    def values_from_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """V for every position of the trunk's last hidden state [N, T, H] → [N, T]."""
        return self.head(hidden.to(self.head.weight.dtype)).squeeze(-1)

    def fuses_with(self, policy: Any) -> bool:
        """Whether one policy forward can serve this critic too
        (:func:`rlkit.rollout.forward_response_and_values`): this is the policy's own trunk,
        and the policy's last ``hidden_states`` entry is exactly the trunk's
        ``last_hidden_state`` (true of GPT-2, checked once on a 3-token input rather than
        assumed for every architecture)."""
        cached = self.__dict__.get("_fuses")
        if cached is not None:
            return bool(cached)
        base = policy.get_base_model() if is_lora(policy) else policy
        ok = getattr(base, "base_model", None) is self.trunk
        if ok:
            try:
                device = next(self.head.parameters()).device
                ids = torch.zeros((1, 3), dtype=torch.long, device=device)
                mask = torch.ones_like(ids)
                pos = torch.arange(3, device=device)[None]
                was_training = policy.training
                policy.eval()  # no dropout: the two passes must be the same computation
                try:
                    with torch.no_grad():
                        full = policy(input_ids=ids, attention_mask=mask, position_ids=pos,
                                      output_hidden_states=True).hidden_states[-1]
                        trunk = self.trunk(input_ids=ids, attention_mask=mask,
                                           position_ids=pos).last_hidden_state
                finally:
                    policy.train(was_training)
                ok = bool(torch.equal(full, trunk))
            except Exception:  # noqa: BLE001 - any model that cannot say: two passes
                ok = False
        self.__dict__["_fuses"] = ok
        return ok


def fused_critic(policy: nn.Module, critic: nn.Module | None) -> bool:
    """A ``critic.shared`` value head whose values come out of the policy's own forward (one
    trunk pass, one backward, for both: :func:`rlkit.rollout.forward_response_and_values`)."""
    return isinstance(critic, SharedValueModel) and critic.fuses_with(policy)


def critic_trunk_source(policy: Any) -> Any:
    """The Hugging Face model a separate critic's trunk is copied from (under LoRA: the base
    with its adapters, so the copy trains its own adapter on a frozen base)."""
    return policy.get_base_model() if is_lora(policy) else policy


def enable_gradient_checkpointing(model: Any) -> None:
    """Recompute activations in the backward pass (non-reentrant: works with a frozen base)."""
    target: Any = model
    if isinstance(model, ValueModel):
        target = model.backbone
    elif is_lora(model):
        target = model.get_base_model()
    if not hasattr(target, "gradient_checkpointing_enable"):
        raise ConfigError(f"train.gradient_checkpointing: {type(target).__name__} does not "
                          f"support gradient checkpointing.")
    kwargs = {"use_reentrant": False}
    if hasattr(target, "activation_checkpointing_enable"):  # transformers ≥ 5.x's name
        target.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        target.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def to_bf16(model: nn.Module, frozen_only: bool) -> nn.Module:
    """Store weights in bf16: every floating weight, or (``frozen_only``) those that do not
    require gradients — trained weights then keep fp32 masters for AdamW."""
    for param in model.parameters():
        if param.is_floating_point() and (not frozen_only or not param.requires_grad):
            param.data = param.data.to(torch.bfloat16)
    return model


@contextmanager
def on_device(model: nn.Module | None, device: torch.device, offload: bool) -> Iterator[None]:
    """Run a block with ``model`` on ``device``; with ``offload`` it lives on the CPU
    otherwise (moved in before the block and out after it)."""
    if model is None or not offload or device.type == "cpu":
        yield
        return
    model.to(device)
    try:
        yield
    finally:
        model.to("cpu")


def _adapter_name(model: Any) -> str:
    name = model.active_adapter
    return name if isinstance(name, str) else name[0]


def base_state_dict(model: Any, merged: bool) -> dict[str, torch.Tensor]:
    """The plain Hugging Face state dict of a peft model's base: Hugging Face key names, the
    adapter merged into the weights (W + (alpha/r)·B·A) or left out. The model is unchanged."""
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    state = {k.replace(".base_layer.", "."): v for k, v in base.state_dict().items()
             if ".lora_" not in k}
    if merged:
        adapter = _adapter_name(model)
        with torch.no_grad():
            for name, module in base.named_modules():
                if isinstance(module, LoraLayer) and adapter in module.lora_A:
                    weight = module.get_base_layer().weight
                    delta = module.get_delta_weight(adapter)  # type: ignore[attr-defined]
                    state[f"{name}.weight"] = (weight.float() + delta.float()).to(weight.dtype)
    return state


def save_policy(model: Any, tokenizer: Any, target: Path | str, merged: bool,
                final: Path | str | None = None) -> None:
    """The final policy: a plain model; under LoRA the adapter merged into it (``merged``) or
    the adapter alone in peft format, with the base beside it in ``base/`` when the base has
    no name to be loaded by (a model built from config). ``final``: where ``target`` will be
    renamed to (the adapter's base path points there), when it is written elsewhere first."""
    target = Path(target)
    home = Path(final) if final is not None else target
    if not is_lora(model):
        model.save_pretrained(target, safe_serialization=True)
    elif merged:
        _save_plain(model, base_state_dict(model, merged=True), target)
    else:
        adapter = _adapter_name(model)
        peft_config = model.peft_config[adapter]
        original = peft_config.base_model_name_or_path
        if not original:
            _save_plain(model, base_state_dict(model, merged=False), target / "base")
            tokenizer.save_pretrained(target / "base")
            peft_config.base_model_name_or_path = str((home / "base").resolve())
        try:
            model.save_pretrained(target, safe_serialization=True)
        finally:
            peft_config.base_model_name_or_path = original
    tokenizer.save_pretrained(target)


def _save_plain(model: Any, state: dict[str, torch.Tensor], target: Path) -> None:
    """Save ``state`` as a plain Hugging Face model of the peft model's architecture."""
    base = model.get_base_model()
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(base.config)
    plain.load_state_dict(state, strict=False, assign=True)
    plain.tie_weights()
    plain.save_pretrained(target, safe_serialization=True)


def adapter_state(model: Any) -> dict[str, torch.Tensor]:
    """The trained part of a LoRA policy (what a checkpoint keeps of it)."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}


def load_adapter_state(model: Any, state: dict[str, torch.Tensor]) -> None:
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, state)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ConfigError(f"The checkpoint's adapter does not fit this policy (unexpected keys "
                          f"{unexpected[:3]}…); resume with the policy.lora it was saved with.")
