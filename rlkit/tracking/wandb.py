"""`wandb`: every run in Weights & Biases — offline unless the user is logged in.

group = experiment (or ``tracking.group``), job_type = algorithm, the full resolved config,
``train/step`` as the x-axis of every metric, the wandb directory inside the run directory.
"""

from __future__ import annotations

import netrc
import os
import uuid
from pathlib import Path

from rlkit.hookspecs import hookimpl
from rlkit.tracking.base import RunInfo, Tracker


def logged_in() -> bool:
    """True when an API key is available (env var or ~/.netrc), without touching the network."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
        hosts = netrc.netrc(str(path)).hosts if path.exists() else {}
    except (netrc.NetrcParseError, OSError):
        return False
    return any("wandb" in host for host in hosts)


def resolve_mode(setting: str) -> str:
    """auto → WANDB_MODE if set, else online when logged in, else offline."""
    if setting != "auto":
        return setting
    if env := os.environ.get("WANDB_MODE"):
        return env
    return "online" if logged_in() else "offline"


class WandbTracker(Tracker):
    def __init__(self, info: RunInfo) -> None:
        super().__init__(info)
        import wandb

        config = info.config
        tracking = config.tracking
        id_file = info.run_dir / "wandb_id"
        run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:8]
        id_file.write_text(run_id)
        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(
            project=tracking.project,
            group=tracking.group or config.name,
            job_type=config.algorithm_name,
            name=info.name,
            tags=list(tracking.tags),
            config=config.model_dump(mode="json"),
            dir=str(info.run_dir),
            mode=resolve_mode(tracking.wandb_mode),  # type: ignore[arg-type]
            id=run_id,
            resume="allow",
            reinit="create_new",
        )
        self.run.define_metric("train/step")
        self.run.define_metric("*", step_metric="train/step")

    def log(self, row: dict[str, float]) -> None:
        self.run.log({k: v for k, v in row.items() if v is not None})

    def finish(self, summary: dict[str, float], failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)


@hookimpl
def rlkit_register_trackers(register):
    register("wandb", WandbTracker)
