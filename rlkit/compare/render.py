"""Report blocks and their two renderers: Markdown (beside PNG files) and one HTML page.

A report is a list of typed blocks. Layout (what goes where, in which words) is
:mod:`rlkit.compare.report`'s job; this module only turns blocks into text, with one
dispatch per renderer, so a new block kind is a type checker error in both renderers until
each knows how to draw it.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class Heading:
    """A section title; ``level`` 1 is the page title."""

    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    """Running text; ``style="warning"`` sets it apart (a call-out in both renderers)."""

    text: str
    style: Literal["plain", "warning"] = "plain"


@dataclass(frozen=True)
class List:
    """A bulleted list."""

    items: list[str]


@dataclass(frozen=True)
class Table:
    """A table of already formatted cells (every row as long as ``headers``)."""

    headers: list[str]
    rows: list[list[str]]
    caption: str = ""

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.headers):
                raise ValueError(f"table row {row} has {len(row)} cells for "
                                 f"{len(self.headers)} headers")


@dataclass(frozen=True)
class Figure:
    """A PNG on disk with its caption; Markdown links it, HTML embeds it."""

    name: str
    path: Path
    caption: str
    alt: str = field(default="")


Block = Heading | Paragraph | List | Table | Figure


def warning(text: str) -> Paragraph:
    """A warning paragraph."""
    return Paragraph(text, "warning")


# --------------------------------------------------------------------------- Markdown


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_block(block: Block, base: Path) -> str:
    """One block as Markdown; figure paths relative to ``base`` (the report's directory)."""
    match block:
        case Heading(level, text):
            return f"{'#' * level} {text}"
        case Paragraph(text, "warning"):
            return f"> **Warning:** {text}"
        case Paragraph(text):
            return text
        case List(items):
            return "\n".join(f"- {item}" for item in items)
        case Table(headers, rows, caption):
            lines = [
                "| " + " | ".join(_md_cell(h) for h in headers) + " |",
                "|" + "|".join("---" for _ in headers) + "|",
            ]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            if caption:
                lines += ["", f"*{caption}*"]
            return "\n".join(lines)
        case Figure(name, path, caption, alt):
            rel = _relative(path, base)
            return f"![{alt or name}]({rel})\n\n*{caption}*"
    raise TypeError(f"no Markdown for {type(block).__name__}")


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return Path(path).resolve().relative_to(base.resolve()).as_posix()


def render_markdown(blocks: list[Block], base: Path) -> str:
    """Markdown with figures linked relative to ``base`` (the report's directory)."""
    return "\n\n".join(markdown_block(b, base) for b in blocks) + "\n"


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:0.8em 0;font-size:0.92em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} tr:nth-child(even) td{background:#fafafa}
.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:0.6em 1em;margin:1em 0}
figure{margin:1.5em 0} figure img{max-width:100%;border:1px solid #eee}
figcaption,.caption{font-size:0.9em;color:#555}
"""


def html_block(block: Block) -> str:
    """One block as HTML; a figure is embedded as a PNG data URI (no external file)."""
    esc = html.escape
    match block:
        case Heading(level, text):
            return f"<h{level}>{esc(text)}</h{level}>"
        case Paragraph(text, "warning"):
            return f'<div class="warn"><strong>Warning:</strong> {esc(text)}</div>'
        case Paragraph(text):
            return f"<p>{esc(text)}</p>"
        case List(items):
            return "<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>"
        case Table(headers, rows, caption):
            head = "".join(f"<th>{esc(h)}</th>" for h in headers)
            body = "".join(
                "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows
            )
            cap = f'<p class="caption">{esc(caption)}</p>' if caption else ""
            return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{cap}"
        case Figure(name, path, caption, alt):
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            return (f'<figure><img alt="{esc(alt or name)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{esc(caption)}</figcaption></figure>")
    raise TypeError(f"no HTML for {type(block).__name__}")


def render_html(blocks: list[Block], title: str) -> str:
    """One self-contained HTML page: CSS inline, every figure embedded as a PNG data URI."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(html_block(b) for b in blocks)
        + "\n</body></html>\n"
    )


def write_pages(blocks: list[Block], directory: Path, title: str,
                stem: str = "report") -> dict[str, Path]:
    """Write ``<stem>.md`` and ``<stem>.html`` into ``directory``; returns both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    md_path, html_path = directory / f"{stem}.md", directory / f"{stem}.html"
    md_path.write_text(render_markdown(blocks, directory), encoding="utf-8")
    html_path.write_text(render_html(blocks, title), encoding="utf-8")
    return {"markdown": md_path, "html": html_path}
