"""The plugin manager: entry points, local plugin files, env switches and the registries.

Built-in pieces of the engine (trackers, tasks, reward functions) are registered as default
plugins, exactly as external ones are; the built-in *algorithms* come through the ``rlkit``
entry-point group like any third-party package, so the path an author uses is the path tested.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from rlkit import hookspecs
from rlkit.algorithm import Algorithm, validate_algorithm_class
from rlkit.errors import PluginError, unknown_name
from rlkit.metrics import CANONICAL_INFO, MetricInfo

if TYPE_CHECKING:
    from rlkit.backends import GenerationBackend
    from rlkit.core.datakinds import DataKind

DEFAULT_PLUGINS: tuple[str, ...] = (
    "rlkit.models",
    "rlkit.backends",
    "rlkit.core.datakinds",
    "rlkit.commands",
    "rlkit.tracking.console",
    "rlkit.tracking.jsonl",
    "rlkit.tracking.wandb",
    "rlkit.rewards",
    "rlkit.tasks.toy",
    "rlkit.tasks.reviews",
    "rlkit.tasks.arithmetic",
)


@dataclass
class Registry:
    """Everything plugins registered, by kind and name, with the plugin that registered it."""

    algorithms: dict[str, type[Algorithm]] = field(default_factory=dict)
    tasks: dict[str, Any] = field(default_factory=dict)
    rewards: dict[str, Any] = field(default_factory=dict)  # functions or RewardSource classes
    trackers: dict[str, Any] = field(default_factory=dict)
    backends: dict[str, type[GenerationBackend]] = field(default_factory=dict)
    data_kinds: dict[str, type[DataKind]] = field(default_factory=dict)
    metrics: dict[str, MetricInfo] = field(default_factory=dict)
    owner: dict[tuple[str, str], str] = field(default_factory=dict)

    def by_plugin(self, kind: str, plugin: str) -> list[str]:
        return sorted(name for (k, name), p in self.owner.items() if k == kind and p == plugin)


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus load errors, distribution versions and cached registries."""

    def __init__(self) -> None:
        super().__init__("rlkit")
        self.add_hookspecs(hookspecs)
        self.load_errors: list[tuple[str, str]] = []
        self.versions: dict[str, str] = {}
        self._registry: Registry | None = None

    def register(self, plugin: object, name: str | None = None) -> str | None:
        self._registry = None
        return super().register(plugin, name)

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        self._registry = None
        return super().unregister(plugin, name)

    # -- registries ---------------------------------------------------------------------------
    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = self._build_registry()
        return self._registry

    def _build_registry(self) -> Registry:
        reg = Registry()
        kinds = {
            "algorithm": ("rlkit_register_algorithms", reg.algorithms),
            "task": ("rlkit_register_tasks", reg.tasks),
            "reward": ("rlkit_register_rewards", reg.rewards),
            "tracker": ("rlkit_register_trackers", reg.trackers),
            "backend": ("rlkit_register_backends", reg.backends),
            "data kind": ("rlkit_register_data_kinds", reg.data_kinds),
            "metric": ("rlkit_register_metrics", reg.metrics),
        }
        for kind, (hook_name, table) in kinds.items():
            caller = getattr(self.hook, hook_name)
            # Call each implementation on its own so every registration knows its plugin.
            for impl in reversed(caller.get_hookimpls()):
                impl.function(register=self._register_callback(kind, table, reg, impl.plugin_name))
        return reg

    @staticmethod
    def _register_callback(kind: str, table: dict, reg: Registry, plugin: str) -> Callable:
        def register(obj_or_name: Any, obj: Any = None) -> None:
            if kind == "metric":
                if not isinstance(obj_or_name, MetricInfo):
                    raise PluginError(f"Plugin '{plugin}' registered {obj_or_name!r} as a metric;"
                                      f" pass an rlkit.MetricInfo.")
                obj, name = obj_or_name, obj_or_name.key
                if name in CANONICAL_INFO and CANONICAL_INFO[name] != obj:
                    raise PluginError(f"Plugin '{plugin}' redeclares the canonical metric "
                                      f"'{name}'; choose a name under the plugin's namespace.")
            elif obj is None:  # register(cls): the class carries its own name
                obj = obj_or_name
                found = getattr(obj, "name", None)
                if not isinstance(found, str) or not found:
                    raise PluginError(
                        f"Plugin '{plugin}' registered a {kind} {obj!r} without a string "
                        f"'name' attribute."
                    )
                name = found
            else:
                name = obj_or_name
            if name in table:
                first = reg.owner[(kind, name)]
                raise PluginError(
                    f"Two plugins register the {kind} '{name}': '{first}' and '{plugin}'. "
                    f"Uninstall or disable one of them (RLKIT_LOAD_PLUGINS=... restricts "
                    f"which entry points load)."
                )
            if kind == "algorithm":
                validate_algorithm_class(obj, plugin)
            table[name] = obj
            reg.owner[(kind, name)] = plugin

        return register

    # -- lookups ------------------------------------------------------------------------------
    def algorithm(self, name: str) -> Any:
        try:
            return self.registry.algorithms[name]
        except KeyError:
            raise unknown_name("algorithm", name, self.registry.algorithms) from None

    def task(self, name: str) -> Any:
        try:
            return self.registry.tasks[name]
        except KeyError:
            raise unknown_name("task", name, self.registry.tasks) from None

    def tracker(self, name: str) -> Any:
        try:
            return self.registry.trackers[name]
        except KeyError:
            raise unknown_name("tracker", name, self.registry.trackers) from None

    def backend(self, name: str) -> type[GenerationBackend]:
        try:
            return self.registry.backends[name]
        except KeyError:
            raise unknown_name("generation backend", name, self.registry.backends) from None

    def data_kind(self, name: str) -> type[DataKind]:
        try:
            return self.registry.data_kinds[name]
        except KeyError:
            raise unknown_name("data kind", name, self.registry.data_kinds) from None

    # -- listing ------------------------------------------------------------------------------
    def describe(self) -> list[dict[str, Any]]:
        """One dict per plugin: name, version, hooks and what it registered."""
        reg = self.registry
        rows = []
        for name, plugin in sorted(self.list_name_plugin(), key=lambda np: np[0]):
            hooks = sorted(hc.name for hc in self.get_hookcallers(plugin) or [])
            rows.append(
                {
                    "name": name,
                    "version": self.versions.get(name, _rlkit_version()),
                    "hooks": hooks,
                    "algorithms": reg.by_plugin("algorithm", name),
                    "tasks": reg.by_plugin("task", name),
                    "rewards": reg.by_plugin("reward", name),
                    "trackers": reg.by_plugin("tracker", name),
                    "backends": reg.by_plugin("backend", name),
                    "data_kinds": reg.by_plugin("data kind", name),
                    "metrics": reg.by_plugin("metric", name),
                }
            )
        return rows


def _rlkit_version() -> str:
    from rlkit import __version__

    return __version__


def _env_list(name: str) -> list[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _register_checked(pm: PluginManager, plugin: object, name: str) -> None:
    """Register ``plugin``; a hook name that matches no spec unregisters it with an error."""
    try:
        pm.register(plugin, name=name)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        if pm.is_registered(plugin):
            pm.unregister(plugin)
        pm.load_errors.append((name, f"invalid hook implementation: {exc}"))
    except ValueError as exc:  # already registered under that name
        pm.load_errors.append((name, str(exc)))


def _load_entry_points(pm: PluginManager, only: list[str] | None) -> None:
    for ep in importlib.metadata.entry_points(group="rlkit"):
        dist = ep.dist
        dist_name = dist.metadata["Name"] if dist is not None else ep.name
        if only is not None and ep.name not in only and dist_name not in only:
            continue
        if pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # noqa: BLE001 - any import failure is reported, others load
            pm.load_errors.append((ep.name, f"{type(exc).__name__}: {exc}"))
            continue
        if dist is not None:
            pm.versions[ep.name] = dist.version
        _register_checked(pm, plugin, ep.name)


def load_plugin_file(pm: PluginManager, path: str | Path) -> None:
    """Import a local ``.py`` file as a plugin (``--plugin path/to/file.py``)."""
    path = Path(path)
    if not path.is_file():
        raise PluginError(f"Plugin file '{path}' does not exist (given with --plugin).")
    module_name = f"rlkit_local_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001
        sys.modules.pop(module_name, None)
        pm.load_errors.append((str(path), f"{type(exc).__name__}: {exc}"))
        return
    pm.versions[str(path)] = "local file"
    _register_checked(pm, module, str(path))


def make_plugin_manager(plugin_files: Iterable[str | Path] = ()) -> PluginManager:
    """A fresh manager: default plugins, then entry points (unless disabled), then files.

    ``RLKIT_DISABLE_PLUGIN_AUTOLOAD=1`` skips entry points; ``RLKIT_LOAD_PLUGINS=a,b`` loads
    only the named entry points (or distributions).
    """
    pm = PluginManager()
    for module_name in DEFAULT_PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001
            pm.load_errors.append((module_name, f"{type(exc).__name__}: {exc}"))
            continue
        _register_checked(pm, module, module_name)
    if os.environ.get("RLKIT_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0"):
        _load_entry_points(pm, _env_list("RLKIT_LOAD_PLUGINS"))
    for path in plugin_files:
        load_plugin_file(pm, path)
    return pm


_pm: PluginManager | None = None


def get_plugin_manager() -> PluginManager:
    """The process-wide manager, created on first use."""
    global _pm
    if _pm is None:
        _pm = make_plugin_manager()
    return _pm


def set_plugin_manager(pm: PluginManager | None) -> None:
    """Replace (or with ``None``, reset) the process-wide manager; used by the CLI and tests."""
    global _pm
    _pm = pm
