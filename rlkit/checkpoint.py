"""Checkpoints in safetensors: tensors in ``.safetensors`` files, everything else in JSON.

A checkpoint directory is written under a temporary name and renamed when complete, so a run
killed while saving never leaves a half checkpoint to resume from.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model


def _split(obj: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    """Replace tensors by references, keeping dict keys' types (optimizer state uses ints)."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu().contiguous()
        return {"__tensor__": path}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _split(v, tensors, f"{path}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_split(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
    return obj


def _join(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict) and "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {k: _join(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_join(v, tensors) for v in obj]
    return obj


def save_state(directory: Path, name: str, state: Any) -> None:
    """Write a nested state (dicts/lists of tensors and plain values) as name.{safetensors,json}."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(state, tensors, name)
    save_file(tensors, str(directory / f"{name}.safetensors"))
    (directory / f"{name}.json").write_text(json.dumps(skeleton))


def load_state(directory: Path, name: str) -> Any:
    tensors = load_file(str(directory / f"{name}.safetensors"))
    return _join(json.loads((directory / f"{name}.json").read_text()), tensors)


def save_checkpoint(
    run_dir: Path, step: int, models: dict[str, torch.nn.Module], states: dict[str, Any],
    keep_last: int,
) -> Path:
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp_step_{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, model in models.items():
        save_model(model, str(tmp / f"{name}.safetensors"))
    for name, state in states.items():
        save_state(tmp, name, state)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in sorted(root.glob("step_*"))[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted((run_dir / "checkpoints").glob("step_*"))
    return found[-1] if found else None


def load_checkpoint(
    directory: Path, models: dict[str, torch.nn.Module], state_names: list[str]
) -> dict[str, Any]:
    for name, model in models.items():
        load_model(model, str(directory / f"{name}.safetensors"), strict=False)
    return {name: load_state(directory, name) for name in state_names}
