"""Reading prompt and preference files with errors that name the file and line."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rlkit.errors import DataError, RlkitError

PREFERENCE_KEYS: tuple[str, ...] = ("prompt", "chosen", "rejected")


def read_text(path: str | Path, what: str = "File",
              error: type[RlkitError] = DataError) -> str:
    """A UTF-8 text file's content; a missing, unreadable or non-UTF-8 file is one paragraph
    (an ``error``) naming the file, and the line of the first bad byte. The one reader of
    every text file the user hands over: data here, config files through
    :func:`rlkit.config.read_text`."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} '{path}' does not exist.")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error(f"{what} '{path}' cannot be read: {exc.strerror}.") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise error(
            f"{path} line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
            f"{exc.start}). Save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8 {path.name} "
            f"> fixed.{path.suffix.lstrip('.')})."
        ) from None


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) for each non-blank line; DataError for a missing file."""
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        line = line.rstrip("\r")
        if line.strip():
            yield number, line


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
    (responses without the prompt). A pair whose chosen or rejected response is empty, or
    whose two responses are the same, teaches nothing (its loss gradient is zero or
    undefined) and usually means a broken export: refused, naming the line."""
    path = Path(path)
    pairs = _string_fields(path, PREFERENCE_KEYS)
    if not pairs:
        raise DataError(f"{path}: the file holds no preference pairs.")
    numbers = [number for number, _ in _lines(path)]
    for number, pair in zip(numbers, pairs):
        for key in ("chosen", "rejected"):
            if not pair[key].strip():
                raise DataError(f"{path} line {number}: '{key}' is empty; every pair needs two "
                                f"non-empty responses. Remove or fix the line.")
        if pair["chosen"].strip() == pair["rejected"].strip():
            raise DataError(f"{path} line {number}: 'chosen' and 'rejected' are the same text, "
                            f"so the pair prefers nothing. Remove the line (or fix the export "
                            f"that wrote it).")
    return pairs


def read_prompt_rows(path: str | Path, field: str = "prompt") -> list[dict[str, Any]]:
    """Prompt rows from a JSONL (key ``field``) or CSV (column ``field``) file: ``{"prompt":
    text, **every other column}``, the other columns being the prompt's metadata (e.g. a
    reference ``answer``) that reward sources receive. Never empty."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Prompt file '{path}' does not exist (prompts.train / prompts.eval).")
    if path.suffix.lower() == ".csv":
        raw = _csv_rows(path, field)
    else:
        raw = read_jsonl(path, required=(field,))
    rows = [_prompt_row(r, field) for r in raw if r.get(field) is not None and str(r[field]).strip()]
    if not rows:
        raise DataError(f"{path}: the prompt set is empty; add at least one non-empty prompt.")
    return rows


def _csv_rows(path: Path, field: str) -> list[dict[str, Any]]:
    """Rows of a CSV file with a header; a row with more or fewer cells than the header is
    refused, naming its line (csv would silently pad it with None or pile the rest into an
    unnamed column)."""
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    header = next(reader, None)
    if header is None or field not in header:
        raise DataError(f"{path}: no column '{field}' (columns: {', '.join(header or [])}); "
                        f"set prompts.field.")
    rows = []
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise DataError(
                f"{path} line {reader.line_num}: {len(cells)} cells, but the header has "
                f"{len(header)} ({', '.join(header)}). Quote cells that contain commas, or "
                f"fix the row.")
        rows.append(dict(zip(header, cells)))
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
