"""Reading prompt and preference files with errors that name the file and line."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from rlkit.errors import DataError


def read_jsonl(path: str | Path, required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a malformed line or a missing key names file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"File '{path}' does not exist.")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{path} line {number}: not valid JSON ({exc.msg} at column {exc.colno}). "
                    f"Each line must be one JSON object."
                ) from None
            if not isinstance(row, dict):
                raise DataError(f"{path} line {number}: expected a JSON object, got {row!r:.60}.")
            missing = [k for k in required if k not in row]
            if missing:
                raise DataError(
                    f"{path} line {number}: missing key(s) {', '.join(missing)}; "
                    f"found {', '.join(row) or 'none'}."
                )
            rows.append(row)
    return rows


def read_prompts(path: str | Path, field: str = "prompt") -> list[str]:
    """Prompts from a JSONL (key ``field``) or CSV (column ``field``) file; never empty."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Prompt file '{path}' does not exist (prompts.train / prompts.eval).")
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or field not in reader.fieldnames:
                raise DataError(
                    f"{path}: no column '{field}' (columns: {', '.join(reader.fieldnames or [])}); "
                    f"set prompts.field."
                )
            prompts = [row[field] for row in reader]
    else:
        prompts = [str(row[field]) for row in read_jsonl(path, required=(field,))]
    prompts = [p for p in prompts if p is not None and str(p).strip()]
    if not prompts:
        raise DataError(f"{path}: the prompt set is empty; add at least one non-empty prompt.")
    return prompts


def read_dataset_prompts(name: str, split: str, field: str, limit: int | None = None) -> list[str]:
    """Prompts from a Hugging Face dataset (hub id, or a local directory / data files)."""
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"prompts.dataset='{name}' needs the datasets library: pip install 'rlkit[datasets]'."
        ) from None
    try:
        data = datasets.load_dataset(name, split=split)
    except Exception as exc:  # noqa: BLE001 - many failure types; the message is what matters
        raise DataError(
            f"Cannot load dataset '{name}' split '{split}': {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''} (a hub id needs a network)."
        ) from None
    if field not in data.column_names:
        raise DataError(f"Dataset '{name}' has no column '{field}' (columns: "
                        f"{', '.join(data.column_names)}); set prompts.field.")
    if limit is not None:
        data = data.select(range(min(limit, len(data))))
    prompts = [str(t) for t in data[field] if t is not None and str(t).strip()]
    if not prompts:
        raise DataError(f"Dataset '{name}' split '{split}': the prompt set is empty.")
    return prompts


def first_words(prompts: list[str], n: int | None) -> list[str]:
    return prompts if n is None else [" ".join(p.split()[:n]) for p in prompts]
