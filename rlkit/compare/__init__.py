"""Comparison experiments: grid runner, statistics, plots and reports.

``rlkit.compare`` is also the function that runs an experiment (:func:`rlkit.api.compare`).
Importing this package binds the name ``compare`` on :mod:`rlkit` to the package, so the
package itself is callable and does the same, whichever of the two the name holds.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``rlkit.compare(experiment, *overrides, out=..., workers=..., ...)``."""
        from rlkit.api import compare

        return compare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
