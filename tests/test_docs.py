"""The docs stay in step with the code."""

from __future__ import annotations

import inspect
from pathlib import Path

from rlkit import hookspecs
from rlkit import metrics as M

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_canonical_metric_is_defined_in_docs_metrics():
    text = (DOCS / "metrics.md").read_text()
    missing = [name for name in M.CANONICAL if f"`{name}`" not in text]
    assert not missing, missing


def test_every_hook_is_documented_with_its_signature():
    text = (DOCS / "hooks.md").read_text()
    hooks = [(n, f) for n, f in vars(hookspecs).items() if n.startswith("rlkit_")]
    assert len(hooks) >= 9
    for name, function in hooks:
        params = ", ".join(inspect.signature(function).parameters)
        assert f"{name}({params})" in text, f"{name}({params}) is not in docs/hooks.md"
