"""The conformance kit: checks any algorithm plugin runs in its own tests.

In a plugin's test module::

    from rlkit.testing import conformance_suite

    test_conformance = conformance_suite("my_algo")

That parametrizes one pytest test per check below. Each check builds a tiny run on the
built-in ``toy`` task (a 1-layer GPT-2 from config, seconds on a CPU) and fails with a message
that says what the plugin must fix.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from rlkit import metrics as M
from rlkit.algorithm import Algorithm, AlgorithmConfig

TINY_POLICY = {"n_layer": 1, "n_head": 2, "n_embd": 16, "n_positions": 48}
NONDETERMINISTIC = ("perf/", "train/wall_s")


def tiny_run_config(algorithm: str, **algorithm_options: Any) -> dict[str, Any]:
    """A run config for ``algorithm`` on the toy task that trains in a second or two."""
    return {
        "name": f"conformance-{algorithm}",
        "seed": 0,
        "task": {"name": "toy"},
        "policy": {"config": dict(TINY_POLICY)},
        "reward": {"model": "count_good"},
        "algorithm": {"name": algorithm, **algorithm_options},
        "rollout": {"batch_size": 4, "max_new_tokens": 6},
        "train": {"steps": 3},
        "eval": {"every": 0, "num_prompts": 4},
        "tracking": {"trackers": ["jsonl"]},
    }


def _run(algorithm: str, out: Path, batch_size: int | None = None, **options: Any):
    from rlkit.config import load_config
    from rlkit.engine import Run
    from rlkit.plugins import get_plugin_manager

    pm = get_plugin_manager()
    data = tiny_run_config(algorithm, **options)
    if batch_size is not None:
        data["rollout"]["batch_size"] = batch_size
    config = load_config(data=data, algorithms=pm.registry.algorithms)
    return Run(config, out=out, pm=pm)


def _batch(run):
    exp, info = run.batch(1)
    if info.is_rollout and run.spec.data_kind == "rollout":
        # Distinct rewards, so a zero gradient means broken plumbing, not a batch of equal
        # (e.g. all-zero) rewards that leaves nothing to learn.
        noise = torch.randn(len(exp), generator=torch.Generator().manual_seed(0))
        exp.scores = exp.scores + noise.to(exp.scores.device)
    with torch.no_grad():
        run.algorithm.prepare(exp)
        run.algorithm.prepare_minibatch(exp)  # the whole batch is the one minibatch
    return exp


def _rows(path: Path) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------
# the checks
# --------------------------------------------------------------------------------------------


def check_registers(name: str) -> None:
    """The name resolves to an Algorithm subclass whose ``name`` is that name."""
    from rlkit.plugins import get_plugin_manager

    cls = get_plugin_manager().algorithm(name)
    assert isinstance(cls, type) and issubclass(cls, Algorithm), (
        f"'{name}' must register a subclass of rlkit.algorithm.Algorithm, got {cls!r}")
    assert cls.name == name, f"the class registered as '{name}' says name={cls.name!r}"
    spec = cls.spec(cls.Config())
    known = get_plugin_manager().registry.data_kinds
    assert spec.data_kind in known, (
        f"'{name}' declares data_kind={spec.data_kind!r}; registered: {', '.join(known)}")


def check_config_documented(name: str) -> None:
    """Config is a dataclass subclassing AlgorithmConfig; every field has a default and a doc."""
    from rlkit.plugins import get_plugin_manager

    config_cls = get_plugin_manager().algorithm(name).Config
    assert isinstance(config_cls, type) and dataclasses.is_dataclass(config_cls) and issubclass(
        config_cls, AlgorithmConfig), (
        f"{name}.Config must be a dataclass subclassing rlkit.algorithm.AlgorithmConfig")
    for field in dataclasses.fields(config_cls):
        has_default = (field.default is not dataclasses.MISSING
                       or field.default_factory is not dataclasses.MISSING)
        assert has_default, f"{name}.Config.{field.name} has no default"
        assert field.metadata.get("doc"), (
            f"{name}.Config.{field.name} is undocumented: declare it with rlkit.algorithm.doc("
            f"default, 'what it does')")
    config_cls()  # the defaults must construct


def check_declarations(name: str) -> None:
    """The AlgorithmSpec the engine acts on is valid and honoured: no reference model is built
    for an algorithm that needs none, and a critic exactly when it asks for one."""
    with tempfile.TemporaryDirectory() as tmp:
        run = _run(name, Path(tmp))
        spec = run.spec
        spec.validate(name)
        # a reference exists for training when declared, and for eval/kl unless eval.kl is off
        wanted = spec.needs_reference or run.config.eval.kl
        assert (run.reference is not None) == wanted, (
            f"needs_reference={spec.needs_reference}, eval.kl={run.config.eval.kl} but the run "
            f"{'built' if run.reference is not None else 'has no'} reference model")
        assert (run.critic is not None) == spec.needs_critic, (
            f"needs_critic={spec.needs_critic} but the run "
            f"{'built' if run.critic is not None else 'has no'} critic")
        exp = _batch(run)
        assert (exp.ref_logprobs is not None) == spec.needs_reference, (
            "reference log-probs present/absent against the declaration")


def check_loss_finite_and_differentiable(name: str) -> None:
    """On a tiny batch the loss is a finite scalar that carries a gradient."""
    with tempfile.TemporaryDirectory() as tmp:
        run = _run(name, Path(tmp))
        exp = _batch(run)
        loss, metrics = run.algorithm.loss(exp, run.policy_output(exp))
        assert isinstance(loss, torch.Tensor) and loss.ndim == 0, "loss must be a 0-dim tensor"
        assert torch.isfinite(loss), f"loss is not finite: {loss}"
        assert loss.requires_grad, "loss does not depend on the policy's outputs"
        assert isinstance(metrics, dict), "loss must return (loss, metrics: dict)"


def check_gradients_reach_the_models(name: str) -> None:
    """Backward gives a non-zero gradient to the policy (and to the critic when it has one)."""
    with tempfile.TemporaryDirectory() as tmp:
        run = _run(name, Path(tmp))
        exp = _batch(run)
        out = run.policy_output(exp)
        loss, _ = run.algorithm.loss(exp, out)
        loss.backward()
        policy_grad = sum(float(p.grad.abs().sum()) for p in run.policy.parameters()
                          if p.grad is not None)
        assert policy_grad > 0, "no gradient reaches the policy"
        if run.critic is not None:
            critic_grad = sum(float(p.grad.abs().sum()) for p in run.critic.parameters()
                              if p.grad is not None)
            assert critic_grad > 0, "needs_critic is set but no gradient reaches the critic"


def first_step_gradients(run: Any, batch: Any) -> dict[str, torch.Tensor]:
    """The policy's gradients at the first optimizer step of ``run.update(batch, ...)`` on a
    prepared batch (the update then goes on as usual)."""
    captured: dict[str, torch.Tensor] = {}
    step = run.optimizer.step

    def capture(*args: Any, **kwargs: Any) -> Any:
        if not captured:
            captured.update({n: p.grad.clone() for n, p in run.policy.named_parameters()
                             if p.grad is not None})
        return step(*args, **kwargs)

    run.optimizer.step = capture
    run.update(batch, 1, 1.0)
    return captured


def check_micro_batches_make_the_minibatch_gradient(name: str) -> None:
    """Accumulated micro-batches (``grad_accum_steps`` 2 and 3, of 8 prompts) give the
    gradient of the minibatch taken whole: a statistic over the minibatch belongs in
    ``prepare_minibatch``, a loss averaged over some rows only declares that count with
    ``loss_weight``."""
    grads = []
    with tempfile.TemporaryDirectory() as tmp:
        for accum in (1, 2, 3):
            run = _run(name, Path(tmp) / str(accum), batch_size=8, num_minibatches=1,
                       grad_accum_steps=accum)
            grads.append(first_step_gradients(run, _batch(run)))
    whole = grads[0]
    assert whole, "no gradient reached the policy"
    for parts, split in zip((2, 3), grads[1:], strict=True):
        assert split.keys() == whole.keys(), f"{parts} micro-batches: other parameters got grads"
        for key in whole:
            close = torch.allclose(whole[key], split[key], rtol=1e-4, atol=1e-6)
            assert close, (
                f"the gradient of {key} differs when the minibatch is split in {parts} "
                f"micro-batches (max |diff| "
                f"{float((whole[key] - split[key]).abs().max()):.3g}): compute minibatch "
                f"statistics in prepare_minibatch, and return the count a partial mean divides "
                f"by from loss_weight (docs/writing-plugins.md)")


def check_metric_namespaces(name: str) -> None:
    """Every metric the plugin logs is canonical or under the algorithm's own name."""
    allowed = set(M.CANONICAL_NAMESPACES) | {name}
    with tempfile.TemporaryDirectory() as tmp:
        run = _run(name, Path(tmp))
        run.train()
        rows = _rows(run.run_dir / "metrics.jsonl")
    bad = sorted({k for row in rows for k in row if k.split("/")[0] not in allowed})
    assert not bad, (f"metrics outside the canonical namespaces and '{name}/': {bad}; "
                     f"see docs/metrics.md")


def check_deterministic(name: str) -> None:
    """Two runs with the same seed log identical metrics (timings aside)."""
    logs = []
    with tempfile.TemporaryDirectory() as tmp:
        for sub in ("a", "b"):
            run = _run(name, Path(tmp) / sub)
            run.train()
            logs.append([{k: v for k, v in row.items() if not k.startswith(NONDETERMINISTIC)}
                         for row in _rows(run.run_dir / "metrics.jsonl")])
    assert logs[0] == logs[1], "same seed, different metrics: is there unseeded randomness?"


def check_few_updates_without_nan(name: str) -> None:
    """A few updates produce no NaN or infinite metric and leave the weights finite."""
    with tempfile.TemporaryDirectory() as tmp:
        run = _run(name, Path(tmp))
        run.train()
        rows = _rows(run.run_dir / "metrics.jsonl")
        assert all(torch.isfinite(p).all() for p in run.policy.parameters()), "non-finite weights"
    for row in rows:
        for key, value in row.items():
            assert value is not None and math.isfinite(value), f"{key} = {value} at step {row[M.STEP]}"


CHECKS: tuple[Callable[[str], None], ...] = (
    check_registers,
    check_config_documented,
    check_declarations,
    check_loss_finite_and_differentiable,
    check_gradients_reach_the_models,
    check_micro_batches_make_the_minibatch_gradient,
    check_metric_namespaces,
    check_deterministic,
    check_few_updates_without_nan,
)


def check_algorithm(name: str) -> None:
    """Run every check; the first failure raises AssertionError with what to fix."""
    for check in CHECKS:
        check(name)


def conformance_suite(name: str) -> Callable[..., None]:
    """A pytest test, parametrized over :data:`CHECKS`, for the algorithm ``name``."""
    import pytest

    @pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
    def test_conformance(check: Callable[[str], None]) -> None:
        check(name)

    return test_conformance
