"""``rlkit new-plugin NAME``: a ready third-party algorithm package to edit."""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

import click

from rlkit.errors import RlkitError

PYPROJECT = Template('''\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "rlkit-$dist"
version = "0.1.0"
description = "The $name algorithm for rlkit."
requires-python = ">=3.10"
dependencies = ["rlkit"]

[project.optional-dependencies]
test = ["pytest"]

# This line is what makes rlkit find the plugin.
[project.entry-points.rlkit]
$name = "$module"

[tool.setuptools]
py-modules = ["$module"]
''')

MODULE = Template('''\
"""$name: REINFORCE with a moving-average baseline — a skeleton to turn into your algorithm.

    R̃(x, y) = R(x, y) − β · Σ_t KL_t
    loss    = −mean_i (R̃_i − b) · Σ_t log πθ(a_t | s_t),   b = EMA of R̃

Replace the formula above, `prepare` (advantages, no gradients) and `${name}_loss` (one short
pure function), keep the metrics beside the loss, and cite your source here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import rlkit
from rlkit import Algorithm, AlgorithmConfig, Experience, PolicyOutput, doc


@dataclass
class Config(AlgorithmConfig):
    baseline_decay: float = doc(0.9, "EMA decay of the reward baseline b.")


def ${name}_loss(advantages: torch.Tensor, logprobs: torch.Tensor, mask: torch.Tensor):
    """−mean_i A_i · Σ_t log π(a_t|s_t); ``advantages`` [N], ``logprobs``/``mask`` [N, R]."""
    loss = -(advantages * (logprobs * mask).sum(1)).mean()
    return loss, {"loss/policy": loss.detach()}


class $cls(Algorithm[Config]):
    name = "$name"
    Config = Config
    loss_aggregation = "seq_mean_token_sum"  # one term per sequence: Σ_t log π, then a mean

    def __init__(self, config: Config, total_steps: int) -> None:
        super().__init__(config, total_steps)
        self.baseline = 0.0

    def prepare(self, batch: Experience) -> dict[str, float]:
        shaped = batch.scores - self.kl_coef * batch.kl.sum(1)
        batch.advantages = (shaped - self.baseline).unsqueeze(1) * batch.response_mask
        decay = self.config.baseline_decay
        self.baseline = decay * self.baseline + (1 - decay) * float(shaped.mean())
        return {"$name/baseline": self.baseline}

    def loss(self, batch: Experience, out: PolicyOutput):
        return ${name}_loss(batch.require("advantages")[:, 0], out.logprobs,
                            batch.response_mask)

    def state_dict(self) -> dict[str, float]:
        return {"baseline": self.baseline}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.baseline = float(state["baseline"])


@rlkit.hookimpl
def rlkit_register_algorithms(register):
    register($cls)
''')

TEST = Template('''\
"""The rlkit conformance kit, plus a hand-computed loss."""

import torch

from rlkit.testing import conformance_suite
from $module import ${name}_loss

test_conformance = conformance_suite("$name")


def test_loss_on_hand_values():
    advantages = torch.tensor([1.0, -2.0])
    logprobs = torch.tensor([[-1.0, -2.0], [-0.5, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss, _ = ${name}_loss(advantages, logprobs, mask)
    # −mean(1·(−3), −2·(−0.5)) = −mean(−3, 1) = 1
    assert torch.isclose(loss, torch.tensor(1.0))
''')

README = Template('''\
# rlkit-$dist

The `$name` algorithm as an rlkit plugin.

```bash
pip install -e .            # registers the entry point: rlkit plugins now lists "$name"
rlkit run CONFIG.yaml --set algorithm.name=$name
pytest                      # the rlkit conformance kit and the loss test
```

Compare it with the built-in algorithms by listing `$name` in an experiment file's
`algorithms:` and running `rlkit compare EXPERIMENT.yaml`.
''')


def write_plugin(name: str, directory: Path) -> Path:
    """Write the package ``rlkit-NAME`` under ``directory``; return its path."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise RlkitError(
            f"Plugin name '{name}' must be a lowercase Python identifier (letters, digits, "
            f"underscores), e.g. 'grpo' or 'my_ppo'."
        )
    dist = name.replace("_", "-")
    module = f"rlkit_{name}"
    cls = "".join(part.capitalize() for part in name.split("_"))
    root = directory / f"rlkit-{dist}"
    if root.exists():
        raise RlkitError(f"'{root}' already exists; choose another --dir or name.")
    values = {"name": name, "dist": dist, "module": module, "cls": cls}
    (root / "tests").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT.substitute(values))
    (root / f"{module}.py").write_text(MODULE.substitute(values))
    (root / "tests" / f"test_{name}.py").write_text(TEST.substitute(values))
    (root / "README.md").write_text(README.substitute(values))
    return root


@click.command("new-plugin")
@click.argument("name")
@click.option("--dir", "directory", default=".", show_default=True,
              type=click.Path(file_okay=False), help="Where to create rlkit-NAME/.")
def new_plugin_command(name: str, directory: str) -> None:
    """Create a third-party algorithm plugin package registering the algorithm NAME."""
    root = write_plugin(name, Path(directory))
    click.echo(f"created {root}\nnext: pip install -e {root} && rlkit plugins && pytest {root}")
