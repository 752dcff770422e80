"""Reading prompt and preference files with errors that name the file and line."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rlkit.errors import DataError

PREFERENCE_KEYS: tuple[str, ...] = ("prompt", "chosen", "rejected")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) for each non-blank line; DataError for a missing file."""
    if not path.is_file():
        raise DataError(f"File '{path}' does not exist.")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line.rstrip("\n")


def _json_object(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path} line {number}: not valid JSON ({exc.msg} at column {exc.colno}). "
            f"Each line must be one JSON object."
        ) from None
    if not isinstance(row, dict):
        raise DataError(f"{path} line {number}: expected a JSON object, got {type(row).__name__}.")
    return row


def _missing(path: Path, number: int, row: dict[str, Any], key: str) -> DataError:
    present = ", ".join(sorted(row)) or "none"
    return DataError(f"{path} line {number}: missing key '{key}' (keys present: {present}).")


def read_jsonl(path: str | Path, required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a malformed line or a missing key names file and line."""
    path = Path(path)
    rows = []
    for number, line in _lines(path):
        row = _json_object(path, number, line)
        for key in required:
            if key not in row:
                raise _missing(path, number, row, key)
        rows.append(row)
    return rows


def _string_fields(path: str | Path, keys: tuple[str, ...]) -> list[dict[str, str]]:
    """For each JSONL line, the string values of ``keys`` (errors name file and line)."""
    path = Path(path)
    out = []
    for number, line in _lines(path):
        row = _json_object(path, number, line)
        values = {}
        for key in keys:
            if key not in row:
                raise _missing(path, number, row, key)
            if not isinstance(row[key], str):
                raise DataError(f"{path} line {number}: '{key}' must be a string, got "
                                f"{type(row[key]).__name__}.")
            values[key] = row[key]
        out.append(values)
    return out


def load_text_file(path: str | Path, *, field: str = "text") -> list[str]:
    """Training texts: one per line of a plain text file, or the ``field`` of each JSONL line
    (``.jsonl`` / ``.json`` suffix). Blank lines are skipped."""
    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".json"):
        texts = [row[field] for row in _string_fields(path, (field,))]
    else:
        texts = [line.strip() for _, line in _lines(path)]
    if not texts:
        raise DataError(f"{path}: the file holds no texts.")
    return texts


def load_preference_jsonl(path: str | Path) -> list[dict[str, str]]:
    """Preference pairs: JSONL with string keys ``prompt``, ``chosen``, ``rejected``
    (responses without the prompt)."""
    pairs = _string_fields(path, PREFERENCE_KEYS)
    if not pairs:
        raise DataError(f"{path}: the file holds no preference pairs.")
    return pairs


def read_prompt_rows(path: str | Path, field: str = "prompt") -> list[dict[str, Any]]:
    """Prompt rows from a JSONL (key ``field``) or CSV (column ``field``) file: ``{"prompt":
    text, **every other column}``, the other columns being the prompt's metadata (e.g. a
    reference ``answer``) that reward sources receive. Never empty."""
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
            raw = list(reader)
    else:
        raw = read_jsonl(path, required=(field,))
    rows = [_prompt_row(r, field) for r in raw if r.get(field) is not None and str(r[field]).strip()]
    if not rows:
        raise DataError(f"{path}: the prompt set is empty; add at least one non-empty prompt.")
    return rows


def _prompt_row(row: dict[str, Any], field: str) -> dict[str, Any]:
    return {"prompt": str(row[field]), **{k: v for k, v in row.items() if k != field}}


def read_prompts(path: str | Path, field: str = "prompt") -> list[str]:
    """Prompt texts of :func:`read_prompt_rows`."""
    return [r["prompt"] for r in read_prompt_rows(path, field)]


def read_dataset_rows(name: str, split: str, field: str,
                      limit: int | None = None) -> list[dict[str, Any]]:
    """Prompt rows (prompt + every other column) from a Hugging Face dataset (hub id, or a
    local directory / data files)."""
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
    rows = [_prompt_row(r, field) for r in data
            if r[field] is not None and str(r[field]).strip()]
    if not rows:
        raise DataError(f"Dataset '{name}' split '{split}': the prompt set is empty.")
    return rows


def read_dataset_prompts(name: str, split: str, field: str, limit: int | None = None) -> list[str]:
    """Prompt texts of :func:`read_dataset_rows`."""
    return [r["prompt"] for r in read_dataset_rows(name, split, field, limit)]


def first_words(prompts: list[str], n: int | None) -> list[str]:
    return prompts if n is None else [" ".join(p.split()[:n]) for p in prompts]


def first_words_rows(rows: list[dict[str, Any]], n: int | None) -> list[dict[str, Any]]:
    """Rows whose prompt is cut to its first ``n`` words (metadata kept)."""
    if n is None:
        return rows
    return [{**r, "prompt": " ".join(r["prompt"].split()[:n])} for r in rows]
