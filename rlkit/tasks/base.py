"""The task contract: where prompts, starting models and the gold reward come from."""

from __future__ import annotations

import json
import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from filelock import FileLock

from rlkit.rundir import replacing_directory

Split = Literal["train", "eval"]


log = logging.getLogger("rlkit.tasks")


def checked_options(options: Mapping[str, Any], schema: type, task: str, valid: str,
                    check: Callable[[Any, Any], Any]) -> dict[str, Any]:
    """``options`` checked against the fields of the dataclass ``schema``, each value by
    ``check(field, value)``; an unknown key is a ConfigError naming the task and ``valid``."""
    import dataclasses

    from rlkit.errors import ConfigError, did_you_mean

    fields = {f.name: f for f in dataclasses.fields(schema)}
    values: dict[str, Any] = {}
    for key, value in options.items():
        if key not in fields:
            raise ConfigError(
                f"Unknown option '{key}' for task '{task}'.{did_you_mean(str(key), fields)} "
                f"Valid options: {valid}."
            )
        values[key] = check(fields[key], value)
    return values


def build_cached(final: Path, build: Callable[[Path], Any], is_built: Callable[[], bool],
                 label: str) -> float | None:
    """Build a world into ``final`` once: under a file lock (parallel runs of a grid build it
    once and share it), into a temporary directory beside it, renamed into place, so a killed
    build leaves no half cache. Returns the seconds spent, or None when it was already built."""
    if is_built():
        return None
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final.parent / f"{final.name}.lock")):
        if is_built():  # another process built it while we waited
            return None
        log.info("%s: building the world into %s (once; cached after)", label, final)
        start = time.perf_counter()
        # a stale entry without figures (an interrupted copy) is replaced too
        with replacing_directory(final) as tmp:
            build(tmp)
        return time.perf_counter() - start


def default_cache_dir() -> Path:
    """``$RLKIT_CACHE_DIR`` or ``~/.cache/rlkit`` (XDG_CACHE_HOME respected)."""
    if env := os.environ.get("RLKIT_CACHE_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rlkit"


class Task(ABC):
    """A registered task (``rlkit_register_tasks``).

    A task supplies prompts and may supply a starting policy, a reward model and a gold
    reward (the truth the proxy reward approximates). Everything it returns is plain data or
    a model *spec* (a local directory or hub id) so the engine loads every model the same way.

    Subclasses set ``name`` and implement :meth:`prompts`; the other methods are optional.
    ``options`` are the keys of the run config's ``task.options`` mapping.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""

    def __init__(self, options: Mapping[str, Any] | None = None, *, cache_dir: Path | None = None):
        self.options: dict[str, Any] = dict(options or {})
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    @abstractmethod
    def prompts(self, split: Split) -> list[str]:
        """The prompt texts of ``split`` ("train" or "eval"), deterministic for the options."""

    def prompt_rows(self, split: Split) -> list[dict[str, Any]]:
        """Prompts of ``split`` with their metadata: ``{"prompt": text, **columns}`` (e.g. a
        reference ``answer``), which reward sources and :meth:`gold_reward` receive. The
        default has no metadata."""
        return [{"prompt": p} for p in self.prompts(split)]

    def policy(self) -> str | None:
        """A local directory (or hub id) holding the starting policy and its tokenizer."""
        return None

    def tokenizer(self) -> Any | None:
        """A tokenizer for policies built from a config mapping (no pretrained tokenizer)."""
        return None

    def reward(self) -> str | None:
        """A reward spec: a sequence-classifier directory/hub id or a registered reward name."""
        return None

    def gold_reward(self, prompts: Sequence[str], responses: Sequence[str],
                    metadata: Sequence[Mapping[str, Any]] | None = None) -> list[float] | None:
        """The true reward of each response, when the task knows it; ``None`` otherwise.
        ``metadata`` holds each prompt's row (see :meth:`prompt_rows`), aligned with prompts."""
        return None

    def pretraining_texts(self) -> list[str] | None:
        """Plain texts of the supervised stage (for PPO-ptx style auxiliary LM losses)."""
        return None

    def preferences(self) -> str | None:
        """Path of a preference JSONL (``prompt``, ``chosen``, ``rejected``) for offline methods."""
        return None

    def unpaired(self) -> str | None:
        """Path of an unpaired JSONL (``prompt``, ``completion``, ``label`` true/false) for
        KTO-style methods; ``None``: derived from :meth:`preferences` (chosen → desirable)."""
        return None

    def prepare(self) -> dict[str, Any]:
        """Build every cached artifact now; return figures worth printing (sizes, accuracies)."""
        return {}


class CachedWorld(Task):
    """A task whose artifacts are built once per option set into
    ``<cache>/<name>/v<version>-seed<seed>-<digest>/`` (see :func:`build_cached`); the
    directory counts as built once its ``figures_file`` exists.

    Subclasses set ``version`` and ``figures_file``, parse their options into ``self.config``
    (with ``seed`` and ``digest()``), and implement :meth:`build_into`.
    """

    version: ClassVar[int]
    figures_file: ClassVar[str]
    config: Any

    @property
    def world_dir(self) -> Path:
        """Where this option set's world lives (it may not be built yet)."""
        name = f"v{self.version}-seed{self.config.seed}-{self.config.digest()}"
        return self.cache_dir / self.name / name

    def is_built(self) -> bool:
        return (self.world_dir / self.figures_file).is_file()

    def ensure_built(self) -> Path:
        """Build the world unless cached; return its directory."""
        self._build_if_needed()
        return self.world_dir

    def _build_if_needed(self) -> float | None:
        """Seconds spent building, or None when the world was already there."""
        return build_cached(self.world_dir, self.build_into, self.is_built, self.name)

    @abstractmethod
    def build_into(self, directory: Path) -> Any:
        """Build every artifact into the empty ``directory``."""

    def prepare(self) -> dict[str, Any]:
        """Build now (if needed) and return the world's figures, plus where it lives and
        whether this call built it."""
        seconds = self._build_if_needed()
        figures = json.loads((self.world_dir / self.figures_file).read_text(encoding="utf-8"))
        figures["cache_dir"] = str(self.world_dir)
        figures["built"] = seconds is not None
        if seconds is not None:
            figures["build_seconds"] = round(seconds, 1)
        return figures
