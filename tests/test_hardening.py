"""Nothing lost, nothing escapes, nothing silent (issue 14).

One test per class of bad input or fault: the exit status (2 for input the user can fix, 1
for a comparison with failed runs), a one-paragraph message naming the problem and a fix (never
a traceback), and finished work left byte-for-byte intact. Then the kill tests: ``rlkit run``
(reinforce and dpo) and ``rlkit compare`` are SIGKILLed at random moments, resumed, and every
file of each run directory is compared with an uninterrupted run's; and two ``rlkit compare``
on one ``--out`` at once.

Processes that are killed are forks of this (already imported) test process running the CLI's
``main``: a real process and a real SIGKILL, without paying for a fresh interpreter each time.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import TINY_POLICY, read_rows, tiny_config

from rlkit.cli import cli_for_tests
from rlkit.rundir import DirLock, read_status

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="fork, /proc and SIGKILL")

PLUGIN = '''
import math, os
import rlkit
from rlkit.algorithm import doc
from dataclasses import dataclass
from rlkit_plugins.reinforce import Reinforce, ReinforceConfig

STATE = {"poison": False}

def nan_after_step_1(prompts, responses, **_):
    """count_good, but NaN for the one batch after step 1 while RLKIT_TEST_NAN is set."""
    bad = STATE["poison"] and os.environ.get("RLKIT_TEST_NAN") == "1"
    STATE["poison"] = False
    return [math.nan if bad else float(r.split().count("good")) for r in responses]

def raiser(prompts, responses, **_):
    raise ValueError("the judge is down")

def words(prompts, responses, **_):
    return ["many" for _ in responses]

@dataclass
class BoundedConfig(ReinforceConfig):
    temperature_boost: float = doc(1.0, "A plugin's own setting, declared with a range.",
                                   gt=0, le=2)

class Bounded(Reinforce):
    name = "bounded"
    Config = BoundedConfig

class NanLoss(Reinforce):
    name = "nan_loss"

    def loss(self, batch, out):
        loss, metrics = super().loss(batch, out)
        return loss * math.nan, {**metrics, "nan_loss/term": loss.detach() * math.nan}

class NanGrad(Reinforce):
    """A finite loss whose gradient is NaN: d/dx sqrt(0·x) = 0 · inf."""
    name = "nan_grad"

    def loss(self, batch, out):
        loss, metrics = super().loss(batch, out)
        return loss + (out.logprobs.sum() * 0.0).sqrt(), metrics

@rlkit.hookimpl
def rlkit_register_rewards(register):
    register("nan_after_step_1", nan_after_step_1)
    register("raiser", raiser)
    register("words", words)

@rlkit.hookimpl
def rlkit_register_algorithms(register):
    register(Bounded)
    register(NanLoss)
    register(NanGrad)

@rlkit.hookimpl
def rlkit_run_start(ctx):
    STATE["poison"] = False

@rlkit.hookimpl
def rlkit_after_update(ctx, step, metrics):
    STATE["poison"] = step == 1
'''

NOT_A_DATACLASS = '''
import rlkit
from rlkit_plugins.reinforce import Reinforce

class Settings:  # a plain class, not a @dataclass
    lr = 1e-3

class Broken(Reinforce):
    name = "broken_config"
    Config = Settings

@rlkit.hookimpl
def rlkit_register_algorithms(register):
    register(Broken)
'''

#: keys that measure time or speed: they differ between any two runs
TIMING = ("perf/", "train/wall_s", "wall_s")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def write_config(tmp_path: Path, config: dict[str, Any], name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def cli(tmp_path: Path, *args: str, plugins: tuple[Path, ...] = ()) -> Any:
    """``rlkit ARGS`` in this process; never an uncaught exception."""
    result = CliRunner().invoke(cli_for_tests(list(plugins)), list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        "".join(traceback.format_exception(result.exception)))
    return result


def run(tmp_path: Path, config: dict[str, Any] | None = None, *extra: str, text: str | None = None,
        plugins: tuple[Path, ...] = ()) -> Any:
    path = tmp_path / "run.yaml"
    if text is not None:
        path.write_text(text)
    else:
        write_config(tmp_path, config or tiny_config())
    return cli(tmp_path, "run", str(path), "--out", str(tmp_path / "runs"), *extra,
               plugins=plugins)


def refused(result: Any, *needles: str, status: int = 2) -> str:
    """One paragraph, no traceback, the expected status, naming each of ``needles``."""
    out = result.output
    assert result.exit_code == status, out
    assert "Traceback" not in out, out
    assert "Error:" in out, out
    message = out[out.index("Error:"):]
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


def plugin_file(tmp_path: Path, text: str = PLUGIN, name: str = "hardening_plugin.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (lock files aside) → sha256."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".lock")}


def _drop_timing(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith(TIMING)}


def same_run_directory(a: Path, b: Path) -> None:
    """Every file of two run directories is the same: JSONL rows and checkpoint metadata up to
    timing keys, status up to pid/heartbeat, everything else byte for byte."""
    files_a, files_b = snapshot(a), snapshot(b)
    assert sorted(files_a) == sorted(files_b)
    for rel in files_a:
        pa, pb = a / rel, b / rel
        if rel.endswith(".jsonl"):
            ra = [_drop_timing(r) for r in read_rows(pa)]
            rb = [_drop_timing(r) for r in read_rows(pb)]
            assert ra == rb, rel
        elif rel == "status.json":
            keep = ("state", "step", "total", "error")
            sa, sb = json.loads(pa.read_text()), json.loads(pb.read_text())
            assert {k: sa[k] for k in keep} == {k: sb[k] for k in keep}
            assert sa["state"] == "finished"
        elif rel.endswith("meta.json"):
            ma = [kv for kv in json.loads(pa.read_text())["__dict__"] if kv[0] != "wall_s"]
            mb = [kv for kv in json.loads(pb.read_text())["__dict__"] if kv[0] != "wall_s"]
            assert ma == mb, rel
        else:
            assert files_a[rel] == files_b[rel], rel


def fork_cli(args: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    """``rlkit ARGS`` in a forked child (output to ``log``); returns its pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            handle = open(log, "w", buffering=1)  # noqa: SIM115
            os.dup2(handle.fileno(), 1)
            os.dup2(handle.fileno(), 2)
            sys.stdout = sys.stderr = handle
            os.environ.update(env or {})
            from rlkit.cli import main

            try:
                main(args)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def wait_exit(pid: int, timeout: float = 120.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError(f"process {pid} did not finish in {timeout} s")


def logged_rows(run_dirs: list[Path]) -> int:
    """The most metric rows any of ``run_dirs`` has logged so far (step + 1)."""
    most = 0
    for run_dir in run_dirs:
        try:
            most = max(most, (run_dir / "metrics.jsonl").read_bytes().count(b"\n"))
        except OSError:
            pass
    return most


def kill_during(pid: int, run_dirs: list[Path], rows: int, extra_s: float) -> bool:
    """SIGKILL ``pid`` ``extra_s`` after one of ``run_dirs`` has logged ``rows`` metric rows
    (a random moment inside a step, its evaluation or its checkpoint); False when the process
    ended first."""
    deadline = time.monotonic() + 120
    while logged_rows(run_dirs) < rows:
        if os.waitpid(pid, os.WNOHANG)[0] or time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    time.sleep(extra_s)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == -signal.SIGKILL


def resume_like_a_user(tmp_path: Path, config_path: Path, out: Path, run_dir: Path) -> None:
    """What the messages tell a user to do after a kill: --resume from a checkpoint, or
    --restart a run stopped before its first one."""
    from rlkit.checkpoint import latest_checkpoint

    status = read_status(run_dir)
    if status is not None and status.state == "finished":
        return
    if latest_checkpoint(run_dir) is not None:
        extra = ["--resume"]
    elif (run_dir / "metrics.jsonl").exists() or (run_dir / "checkpoints").exists():
        extra = ["--restart"]
    else:
        extra = []
    result = cli(tmp_path, "run", str(config_path), "--out", str(out), *extra)
    assert result.exit_code == 0, result.output


def wait_unlocked(run_dir: Path, timeout: float = 10.0) -> None:
    """Leftover workers of a killed compare end themselves (parent-death watchdog)."""
    from rlkit.rundir import LockedError

    deadline = time.monotonic() + timeout
    while True:
        try:
            if (run_dir / ".lock").exists():
                DirLock(run_dir, "run directory").acquire()
            return
        except LockedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# ---------------------------------------------------------------------------------------------
# 1. containment
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/rlkit-escaped", ".hidden", "a/b"])
def test_run_name_never_escapes_the_output_directory(tmp_path, name):
    message = refused(run(tmp_path, tiny_config(name=name)), "run name", "not allowed",
                      "letters, digits")
    assert "line 1" in message  # names the file's line
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/rlkit-escaped").exists()
    assert not (tmp_path / "runs").exists()


def test_experiment_name_never_escapes_the_output_directory(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({"name": "../../outside", "seeds": [0],
                                   "algorithms": ["reinforce"]}))
    result = cli(tmp_path, "compare", str(exp), "--out", str(tmp_path / "out"))
    refused(result, "experiment name", "not allowed", "exp.yaml line")
    assert not (tmp_path / "outside").exists() and not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# 2. numerical guards
# ---------------------------------------------------------------------------------------------


def test_nonfinite_reward_stops_at_its_step_and_resumes_after_the_fix(tmp_path, monkeypatch):
    plugin = plugin_file(tmp_path)
    config = tiny_config(**{"reward.model": "nan_after_step_1", "checkpoint.every": 1,
                            "train.steps": 3})
    monkeypatch.setenv("RLKIT_TEST_NAN", "1")
    message = refused(run(tmp_path, config, plugins=(plugin,)), "at step 2",
                      "reward source 'nan_after_step_1'", "--resume", "skip_nonfinite")
    run_dir = tmp_path / "runs" / "tiny"
    assert read_status(run_dir).state == "failed"
    assert "at step 2" in read_status(run_dir).error and message
    kept = snapshot(run_dir / "checkpoints")
    assert sorted({k.split("/")[0] for k in kept}) == ["step_000001"]
    monkeypatch.delenv("RLKIT_TEST_NAN")  # the fix
    result = run(tmp_path, config, "--resume", plugins=(plugin,))
    assert result.exit_code == 0, result.output
    assert [r["train/step"] for r in read_rows(run_dir / "metrics.jsonl")] == [0, 1, 2, 3]
    # the checkpoint kept was the good one: the resumed run is the run that never saw a NaN
    clean = cli(tmp_path, "run", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "clean"),
                plugins=(plugin,))
    assert clean.exit_code == 0, clean.output
    same_run_directory(tmp_path / "clean" / "tiny", run_dir)


def test_nonfinite_loss_names_the_algorithm_and_the_term(tmp_path):
    plugin = plugin_file(tmp_path)
    config = tiny_config(**{"algorithm.name": "nan_loss", "checkpoint.every": 1})
    refused(run(tmp_path, config, plugins=(plugin,)), "at step 1", "the loss of algorithm "
            "'nan_loss'", "nan_loss/term", "skip_nonfinite")
    assert not (tmp_path / "runs" / "tiny" / "checkpoints").exists()  # weights never saved


def test_nonfinite_gradient_norm_is_caught_before_the_step(tmp_path):
    plugin = plugin_file(tmp_path)
    config = tiny_config(**{"algorithm.name": "nan_grad"})
    refused(run(tmp_path, config, plugins=(plugin,)), "at step 1", "the gradient norm",
            "the optimizer step was not taken")


def test_skip_nonfinite_counts_the_skipped_batches(tmp_path, monkeypatch):
    plugin = plugin_file(tmp_path)
    monkeypatch.setenv("RLKIT_TEST_NAN", "1")
    config = tiny_config(**{"reward.model": "nan_after_step_1", "train.skip_nonfinite": True,
                            "eval.every": 0})
    assert run(tmp_path, config, plugins=(plugin,)).exit_code == 0
    rows = read_rows(tmp_path / "runs" / "tiny" / "metrics.jsonl")
    assert [r.get("train/nonfinite_skipped", 0) for r in rows[1:]] == [0, 1, 0]
    loss_config = tiny_config(**{"algorithm.name": "nan_loss", "train.skip_nonfinite": True,
                                 "name": "loss"})
    assert run(tmp_path, loss_config, plugins=(plugin,)).exit_code == 0
    rows = read_rows(tmp_path / "runs" / "loss" / "metrics.jsonl")
    assert all(r["train/nonfinite_skipped"] == 1 for r in rows[1:])


# ---------------------------------------------------------------------------------------------
# 3. exact resume: config changes, no checkpoint
# ---------------------------------------------------------------------------------------------


def test_resume_refuses_a_changed_config_and_a_missing_checkpoint(tmp_path):
    config = tiny_config(**{"checkpoint.every": 1})
    assert run(tmp_path, config).exit_code == 0
    run_dir = tmp_path / "runs" / "tiny"
    before = snapshot(run_dir)
    changed = tiny_config(**{"checkpoint.every": 1, "algorithm.lr": 0.01,
                             "algorithm.name": "reinforce"})
    refused(run(tmp_path, changed, "--resume"), "algorithm.lr: 0.003 -> 0.01", "--force")
    assert snapshot(run_dir) == before
    shutil.rmtree(run_dir / "checkpoints")
    before = snapshot(run_dir)
    refused(run(tmp_path, config, "--resume"), "no checkpoint", "--restart")
    assert snapshot(run_dir) == before  # metrics.jsonl not replaced
    refused(run(tmp_path, config), "already holds a run", "--resume", "--restart")
    assert snapshot(run_dir) == before
    assert run(tmp_path, config, "--restart").exit_code == 0


def test_resume_with_force_accepts_the_new_config(tmp_path):
    config = tiny_config(**{"checkpoint.every": 1, "train.steps": 2, "eval.every": 0})
    assert run(tmp_path, config).exit_code == 0
    longer = tiny_config(**{"checkpoint.every": 1, "train.steps": 3, "eval.every": 0})
    refused(run(tmp_path, longer, "--resume"), "train.steps: 2 -> 3")
    assert run(tmp_path, longer, "--resume", "--force").exit_code == 0
    saved = yaml.safe_load((tmp_path / "runs" / "tiny" / "config.yaml").read_text())
    assert saved["train"]["steps"] == 3


# ---------------------------------------------------------------------------------------------
# 4. validated ranges, core and algorithm, a plugin's own fields included
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "value", "needle"), [
    ("algorithm.lr", 0, "must be > 0"),
    ("algorithm.lr", -1e-3, "must be > 0"),
    ("algorithm.lr", float("nan"), "finite"),
    ("algorithm.epochs", 0, "must be ≥ 1"),
    ("algorithm.num_minibatches", 0, "must be ≥ 1"),
    ("algorithm.samples_per_prompt", 0, "must be ≥ 1"),
    ("algorithm.kl_coef", -0.1, "must be ≥ 0"),
    ("algorithm.max_grad_norm", 0, "must be > 0"),
    ("algorithm.adam_eps", 0, "must be > 0"),
    ("algorithm.baseline_decay", 1.5, "must be ≥ 0 and ≤ 1"),
    ("rollout.batch_size", 0, "greater than 0"),
    ("rollout.top_p", 1.5, "less than or equal to 1"),
    ("eval.num_prompts", 0, "greater than 0"),
    ("train.steps", 0, "greater than 0"),
    ("rollout.temperature", float("inf"), "finite"),
])
def test_out_of_range_settings_are_refused_with_file_line_and_key(tmp_path, key, value, needle):
    config = tiny_config(**{key: value})
    message = refused(run(tmp_path, config), f"'{key}'", needle, "run.yaml line")
    assert "Traceback" not in message
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("key", "value", "needle"), [
    ("train.threads", 0, "expected a positive number of threads, 'auto'"),
    ("train.threads", "two", "expected a positive number of threads, 'auto'"),
    ("train.threads", True, "expected a positive number of threads, 'auto'"),
    ("policy.lora", {"r": 4, "target_modules": 5}, "expected list or str or null"),
    ("train.optimizer_impl", "fast", "'for_loop', 'foreach' or 'fused'"),
])
def test_a_value_of_a_union_type_is_one_message_at_the_key(tmp_path, key, value, needle):
    """A value that fits no member of a union (``int | 'auto' | None``) is one line naming the
    key the user wrote — not one line per member under keys like ``train.threads.int`` — and
    never reaches torch (``train.threads: 0`` once ended in an internal error)."""
    config = tiny_config(**{key: value})
    message = refused(run(tmp_path, config), needle, "run.yaml line")
    shown = key if key != "policy.lora" else "policy.lora.target_modules"
    assert f"key '{shown}' =" in message
    assert len(message.strip().splitlines()) == 1, message
    assert ".int'" not in message and "literal[" not in message


@pytest.mark.parametrize(("algorithm", "key", "value", "needle"), [
    ("ppo_clip", "clip_eps", -0.2, "must be > 0"),
    ("ppo_clip", "lam", 1.5, "≤ 1"),
    ("dpo", "kl_coef", 0, "must be > 0"),   # β = 0: DPO's loss would be constant
    ("bounded", "temperature_boost", 3, "must be > 0 and ≤ 2"),   # a plugin's own field
    ("bounded", "lr", 0, "must be > 0"),   # inherited from the base config
])
def test_algorithm_ranges_are_declared_beside_the_field(tmp_path, algorithm, key, value, needle):
    plugin = plugin_file(tmp_path)
    config = tiny_config(**{"algorithm": {"name": algorithm, key: value}})
    refused(run(tmp_path, config, plugins=(plugin,)), f"'algorithm.{key}'", needle,
            "run.yaml line")


def test_a_plugin_default_outside_its_own_range_is_refused_at_registration():
    from dataclasses import dataclass

    from rlkit.algorithm import AlgorithmConfig, doc, validate_algorithm_class
    from rlkit.errors import PluginError
    from rlkit_plugins.reinforce import Reinforce

    @dataclass
    class BadDefault(AlgorithmConfig):
        clip: float = doc(-1.0, "A clip range", gt=0)

    class Bad(Reinforce):
        name = "bad_default"
        Config = BadDefault  # type: ignore[assignment]

    with pytest.raises(PluginError, match="default clip=-1.0 must be > 0"):
        validate_algorithm_class(Bad, "demo")


# ---------------------------------------------------------------------------------------------
# 5. one paragraph, never a traceback
# ---------------------------------------------------------------------------------------------


def test_non_utf8_config_file(tmp_path):
    text = yaml.safe_dump(tiny_config()).replace("tiny", "caf\u00e9")
    path = tmp_path / "run.yaml"
    path.write_bytes(text.encode("latin-1"))
    result = cli(tmp_path, "run", str(path), "--out", str(tmp_path / "runs"))
    refused(result, "run.yaml line", "not UTF-8", "iconv")


def test_non_utf8_prompt_file(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_bytes(b'{"prompt": "good film"}\n{"prompt": "caf\xe9 au lait"}\n')
    refused(run(tmp_path, tiny_config(**{"prompts.train": str(prompts)})),
            "prompts.jsonl line 2", "not UTF-8")


def test_read_only_output_directory(tmp_path):
    out = tmp_path / "readonly"
    out.mkdir()
    immutable = os.geteuid() == 0 and subprocess.run(
        ["chattr", "+i", str(out)], capture_output=True).returncode == 0
    if not immutable:
        out.chmod(0o555)
    try:
        path = write_config(tmp_path, tiny_config())
        refused(cli(tmp_path, "run", str(path), "--out", str(out)), "Cannot write the run "
                "directory", str(out), "--out")
        exp = tmp_path / "exp.yaml"
        exp.write_text(yaml.safe_dump(_experiment(steps=1)))
        refused(cli(tmp_path, "compare", str(exp), "--out", str(out)), "Cannot create the "
                "experiment directory", "--out")
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(out)], check=True)
        else:
            out.chmod(0o755)


@pytest.mark.parametrize(("device", "needle"), [
    ("tpu", "not a device"),
    ("cuda", "no CUDA GPU"),
    ("cuda:7", "GPU"),
])
def test_unknown_or_missing_device(tmp_path, device, needle):
    import torch

    if device.startswith("cuda") and torch.cuda.is_available() and device == "cuda":
        pytest.skip("this machine has a GPU")
    refused(run(tmp_path, tiny_config(**{"train.device": device})), "train.device", needle)


def test_damaged_policy_weights_and_damaged_checkpoint(tmp_path):
    config = tiny_config(**{"checkpoint.every": 1})
    assert run(tmp_path, config).exit_code == 0
    run_dir = tmp_path / "runs" / "tiny"
    # a policy directory whose weights file was cut short
    damaged = tmp_path / "damaged_policy"
    shutil.copytree(run_dir / "policy", damaged)
    (damaged / "model.safetensors").write_bytes(b"\x00" * 64)
    other = tiny_config(**{"name": "from_damaged", "policy": {"model": str(damaged)}})
    refused(run(tmp_path, other), "Cannot load the policy", "damaged", "policy.model")
    # the last checkpoint damaged: named, with the way back to the one before it
    last = run_dir / "checkpoints" / "step_000003"
    (last / "optimizer.json").write_text("{not json")
    previous = snapshot(run_dir / "checkpoints" / "step_000002")
    refused(run(tmp_path, config, "--resume"), "step_000003", "damaged",
            "delete it to resume from the one before (step_000002)")
    assert snapshot(run_dir / "checkpoints" / "step_000002") == previous
    shutil.rmtree(last)
    assert run(tmp_path, config, "--resume").exit_code == 0


def test_plugin_config_that_is_not_a_dataclass(tmp_path):
    plugin = plugin_file(tmp_path, NOT_A_DATACLASS, "broken_plugin.py")
    result = run(tmp_path, tiny_config(**{"algorithm": {"name": "broken_config"}}),
                 plugins=(plugin,))
    refused(result, "Algorithm 'broken_config'", "broken_plugin.py",
            "Config must be a @dataclass subclassing rlkit.AlgorithmConfig")


@pytest.mark.parametrize(("reward", "needle"), [
    ("raiser", "Reward source 'raiser' raised ValueError: the judge is down"),
    ("words", "Reward source 'words' returned"),
])
def test_reward_function_that_raises_or_returns_non_numbers(tmp_path, reward, needle):
    plugin = plugin_file(tmp_path)
    refused(run(tmp_path, tiny_config(**{"reward.model": reward}), plugins=(plugin,)), needle)
    assert read_status(tmp_path / "runs" / "tiny").state == "failed"


@pytest.mark.parametrize(("pair", "needle"), [
    ({"prompt": "good film", "chosen": "", "rejected": "bad"}, "'chosen' is empty"),
    ({"prompt": "", "chosen": "", "rejected": ""}, "'chosen' is empty"),
    ({"prompt": "good film", "chosen": "good", "rejected": "good"}, "the same text"),
])
def test_degenerate_preference_pairs(tmp_path, pair, needle):
    prefs = tmp_path / "prefs.jsonl"
    good = {"prompt": "a film", "chosen": "good good", "rejected": "bad"}
    prefs.write_text("\n".join(json.dumps(p) for p in [good, good, pair]) + "\n")
    config = tiny_config(**{"algorithm": {"name": "dpo"}, "preferences": str(prefs)})
    refused(run(tmp_path, config), "prefs.jsonl line 3", needle, "Remove")


def test_prompt_longer_than_the_context(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    rows = [{"prompt": "good film"}, {"prompt": " ".join(["good"] * 40)}]
    prompts.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    config = tiny_config(**{"prompts.train": str(prompts)})
    refused(run(tmp_path, config), f"context holds {TINY_POLICY['n_positions']}",
            "prompts.max_words", "rollout.max_new_tokens")
    # the fix the message names works
    assert run(tmp_path, tiny_config(**{"prompts.train": str(prompts), "prompts.max_words": 8,
                                        "name": "cut"})).exit_code == 0
    # preference pairs are checked too
    prefs = tmp_path / "prefs.jsonl"
    pairs = [{"prompt": "a film", "chosen": "good good", "rejected": "bad"},
             {"prompt": " ".join(["good"] * 40), "chosen": "good", "rejected": "bad"}]
    prefs.write_text("\n".join(json.dumps(p) for p in pairs) + "\n")
    config = tiny_config(**{"algorithm": {"name": "dpo"}, "preferences": str(prefs),
                            "name": "dpo"})
    refused(run(tmp_path, config), "preferences prompt has 40 tokens",
            f"context holds {TINY_POLICY['n_positions']}", "Shorten")


def test_duplicate_yaml_keys_name_both_lines(tmp_path):
    text = yaml.safe_dump(tiny_config(), sort_keys=False) + "seed: 3\n"
    first = text.splitlines().index("seed: 0") + 1
    last = len(text.splitlines())
    refused(run(tmp_path, text=text), f"run.yaml line {last}", "'seed' is given twice",
            f"first on line {first}")


def test_ragged_csv_rows(tmp_path):
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("prompt,answer\ngood film,1\nbad, film,0\n")
    refused(run(tmp_path, tiny_config(**{"prompts.train": str(prompts)})),
            "prompts.csv line 3", "3 cells", "header has 2", "Quote")


def test_run_given_an_experiment_file(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(_experiment(steps=1)))
    result = cli(tmp_path, "run", str(exp), "--out", str(tmp_path / "runs"))
    refused(result, "is an experiment file", "rlkit compare")


def test_internal_errors_keep_the_traceback_and_say_where_to_report(tmp_path, monkeypatch):
    from rlkit.core import run as run_module

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(run_module.Run, "_load_rewards", broken)
    result = run(tmp_path, tiny_config())
    assert result.exit_code == 1
    assert "Traceback" in result.output and "please report it" in result.output


# ---------------------------------------------------------------------------------------------
# 6-8. comparisons: exclusive directories, honest exit codes and reports, measurements
# ---------------------------------------------------------------------------------------------


def _experiment(steps: int = 3, prompts: str | None = None, name: str = "hard",
                checkpoint_every: int = 1) -> dict[str, Any]:
    shared: dict[str, Any] = {
        "policy": {"config": dict(TINY_POLICY)}, "reward": {"model": "count_good"},
        "rollout": {"batch_size": 4, "max_new_tokens": 6}, "eval": {"every": 2, "num_prompts": 8},
        "checkpoint": {"every": checkpoint_every}, "tracking": {"trackers": ["jsonl"]},
    }
    bad = {"prompts.train": prompts} if prompts else {}
    return {
        "name": name, "seeds": [0], "budget": {"steps": steps}, "tasks": ["toy"],
        "shared": shared,
        "algorithms": [
            {"name": "reinforce", "set": {"algorithm.lr": 3e-3, "algorithm.samples_per_prompt": 2,
                                          "algorithm.baseline": "leave_one_out"}},
            {"name": "dpo", "set": {"algorithm.lr": 1e-3, **bad}},
        ],
    }


def test_compare_exits_1_with_failed_runs_in_the_report(tmp_path, monkeypatch):
    monkeypatch.delenv("RLKIT_START_METHOD", raising=False)  # the default: a fork server
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(_experiment(steps=2, prompts=str(tmp_path / "gone.jsonl"))))
    result = cli(tmp_path, "compare", str(exp), "--out", str(tmp_path / "out"), "--workers", "1")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "1 run(s) failed (dpo__toy__s0)" in result.output
    exp_dir = tmp_path / "out" / "hard"
    report = (exp_dir / "report.md").read_text()
    assert "dpo__toy__s0" in report and "gone.jsonl" in report  # the set-up failure, listed
    assert read_status(exp_dir / "reinforce__toy__s0").state == "finished"
    finished = snapshot(exp_dir / "reinforce__toy__s0")
    # rerunning keeps the finished run byte for byte and still reports the failure
    again = cli(tmp_path, "compare", str(exp), "--out", str(tmp_path / "out"), "--workers", "1")
    assert again.exit_code == 1
    assert snapshot(exp_dir / "reinforce__toy__s0") == finished


def test_compare_set_typo_is_refused_before_anything_runs(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(_experiment(steps=1)))
    result = cli(tmp_path, "compare", str(exp), "--out", str(tmp_path / "out"),
                 "--set", "rollout.batch_sise=4")
    refused(result, "rollout.batch_sise", "Did you mean 'batch_size'")
    assert not (tmp_path / "out").exists()
    result = cli(tmp_path, "compare", str(exp), "--out", str(tmp_path / "out"),
                 "--set", "algorithm.lr=-1")
    refused(result, "'algorithm.lr'", "must be > 0")
    assert not (tmp_path / "out").exists()


def test_a_live_holder_is_named_and_a_dead_one_is_resumed(tmp_path, monkeypatch):
    from rlkit.compare.runner import run_grid
    from rlkit.config import load_config
    from rlkit.rundir import LockedError, RunDir

    monkeypatch.setenv("RLKIT_START_METHOD", "fork")
    config = dict(tiny_config(**{"checkpoint.every": 1}), name="r0")
    exp_dir = tmp_path / "exp"
    # a run this process is writing (as a leftover worker of a killed compare would be)
    run_dir = exp_dir / "r0"
    run_dir.mkdir(parents=True)
    with DirLock(run_dir, "run directory"):
        with pytest.raises(LockedError, match=f"in use by process {os.getpid()}"):
            run_grid([config], exp_dir, workers=1)
        # the experiment directory too: a second compare is told which process holds it
        with DirLock(exp_dir, "experiment directory"):
            with pytest.raises(LockedError, match=f"process {os.getpid()}"):
                run_grid([config], exp_dir, workers=1)
    # a status that says "running" for a process that is gone is stale: resumed, not refused
    from rlkit.core.run import Run

    run = Run(load_config(data=config), out=exp_dir)
    real_step = run.train_step

    def die_after_2(trackers):
        if run.step == 2:
            raise KeyboardInterrupt
        return real_step(trackers)

    run.train_step = die_after_2
    with pytest.raises(KeyboardInterrupt):
        run.train()
    RunDir(exp_dir, "r0").write_status("running", step=2)
    status = json.loads((run_dir / "status.json").read_text())
    status["pid"] = _dead_pid()
    (run_dir / "status.json").write_text(json.dumps(status))
    assert read_status(run_dir).stale()
    assert [r.state for r in run_grid([config], exp_dir, workers=1)] == ["finished"]
    assert [r["train/step"] for r in read_rows(run_dir / "metrics.jsonl")] == [0, 1, 2, 3]


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_peak_memory_is_this_runs_own(tmp_path):
    import torch

    from rlkit.core.run import peak_memory_mb

    ballast = b"\x01" * (300 * 2**20)  # 300 MB touched, then freed before the run
    high = peak_memory_mb(torch.device("cpu"))
    del ballast
    assert run(tmp_path, tiny_config(**{"train.steps": 1})).exit_code == 0
    rows = read_rows(tmp_path / "runs" / "tiny" / "metrics.jsonl")
    assert rows[1]["perf/peak_memory_mb"] < high - 200


def test_one_live_display_fed_by_the_status_files(tmp_path):
    from io import StringIO

    from rich.console import Console

    from rlkit.compare.progress import GridDisplay
    from rlkit.rundir import RunDir

    for name, step in (("a", 3), ("b", 1)):
        (tmp_path / name).mkdir()
        RunDir(tmp_path, name).write_status("running", step=step, total=5, wall_s=2.0)
    buffer = StringIO()
    console = Console(file=buffer, force_terminal=True, width=100)
    with GridDisplay(tmp_path, ["a", "b"], console=console) as display:
        display.poll(force=True)
        assert {display.progress.tasks[t].completed for t in display.tasks.values()} == {3, 1}
        display.finished("a")
        assert list(display.tasks) == ["b"]
        assert display.progress.tasks[display.grid].completed == 1
    assert "a" in buffer.getvalue() and "3/5" in buffer.getvalue()


def test_grid_workers_print_no_progress_bars(tmp_path, monkeypatch):
    from rlkit.tracking.base import RunInfo
    from rlkit.tracking.console import ConsoleTracker

    monkeypatch.setenv("RLKIT_GRID_WORKER", "1")
    tracker = ConsoleTracker(RunInfo("w", tmp_path, None, 5, 0))
    assert tracker.progress is None and tracker.quiet


# ---------------------------------------------------------------------------------------------
# kill tests: SIGKILL at random moments, resume, every file as an uninterrupted run's
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["reinforce", "dpo"])
def test_killed_run_resumes_to_the_uninterrupted_files(tmp_path, algorithm):
    steps = 10  # long enough that a kill lands inside the run on an idle machine too
    config = tiny_config(**{"checkpoint.every": 1, "train.steps": steps})
    if algorithm == "dpo":
        config["algorithm"] = {"name": "dpo", "lr": 1e-3}
    path = write_config(tmp_path, config)
    reference = tmp_path / "reference"
    pid = fork_cli(["run", str(path), "--out", str(reference)], tmp_path / "ref.log")
    assert wait_exit(pid) == 0, (tmp_path / "ref.log").read_text()
    rng = random.Random(f"kill-{algorithm}")
    # during set-up, then after a random number of logged steps (the last: during the final
    # checkpoint and policy save), each a random fraction of a step later
    moments = [(0, rng.uniform(0, 0.3))] + [(rng.randint(1, steps + 1), rng.uniform(0, 0.01))
                                            for _ in range(4)]
    killed = []
    for trial, (rows, extra) in enumerate(moments):
        out = tmp_path / f"killed{trial}"
        pid = fork_cli(["run", str(path), "--out", str(out)], tmp_path / f"k{trial}.log")
        if kill_during(pid, [out / "tiny"], rows, extra):
            status = read_status(out / "tiny")
            killed.append(status.step if status is not None else -1)
        resume_like_a_user(tmp_path, path, out, out / "tiny")
        same_run_directory(reference / "tiny", out / "tiny")
    print(f"{algorithm}: killed at steps {killed} (-1: before the run directory existed)")
    assert len(killed) >= 3


def test_killed_while_saving_the_final_policy_resumes_to_the_uninterrupted_files(
        tmp_path, monkeypatch):
    """The moment the random kills above reach only by chance: SIGKILL after half the final
    policy is written. The resume leaves neither a half ``policy/`` nor the killed save's
    temporary files: the same files as an uninterrupted run."""
    import rlkit.core.run as run_module

    config = tiny_config(**{"checkpoint.every": 1, "train.steps": 2})
    path = write_config(tmp_path, config)
    reference = tmp_path / "reference"
    pid = fork_cli(["run", str(path), "--out", str(reference)], tmp_path / "ref.log")
    assert wait_exit(pid) == 0, (tmp_path / "ref.log").read_text()

    real_save = run_module.save_policy

    def save_then_die(model: Any, tokenizer: Any, target: Path, *args: Any, **kw: Any) -> None:
        model.save_pretrained(target, safe_serialization=True)  # the weights, no tokenizer
        (Path(target) / ".tmpHalfWritten").write_text("x")  # what an interrupted save leaves
        os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(run_module, "save_policy", save_then_die)
    out = tmp_path / "killed"
    pid = fork_cli(["run", str(path), "--out", str(out)], tmp_path / "k.log")
    assert wait_exit(pid) == -signal.SIGKILL
    assert not (out / "tiny" / "policy").exists()  # never a half policy/ in place
    assert list((out / "tiny").glob(".policy.tmp-*"))  # the killed save's leftovers
    monkeypatch.setattr(run_module, "save_policy", real_save)
    resume_like_a_user(tmp_path, path, out, out / "tiny")
    same_run_directory(reference / "tiny", out / "tiny")


def test_two_compares_then_killed_compares(tmp_path, monkeypatch):
    """Two ``rlkit compare`` on one --out at once: one trains, the other stops naming it, and
    nothing is trained twice. The winner's runs are then the uninterrupted reference for
    compares SIGKILLed at random moments and run again."""
    monkeypatch.setenv("RLKIT_START_METHOD", "fork")
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(_experiment(steps=3)))
    names = ["reinforce__toy__s0", "dpo__toy__s0"]
    args = ["compare", str(exp), "--out", str(tmp_path / "ref"), "--workers", "2"]
    first = fork_cli(args, tmp_path / "a.log")
    second = fork_cli(args, tmp_path / "b.log")
    codes = {first: wait_exit(first), second: wait_exit(second)}
    logs = {first: (tmp_path / "a.log").read_text(), second: (tmp_path / "b.log").read_text()}
    assert sorted(codes.values()) == [0, 2], logs
    loser = next(p for p, c in codes.items() if c == 2)
    winner = next(p for p, c in codes.items() if c == 0)
    assert f"in use by process {winner}" in logs[loser], logs[loser]
    assert "Traceback" not in logs[loser]
    for name in names:
        run_dir = tmp_path / "ref" / "hard" / name
        steps = [r["train/step"] for r in read_rows(run_dir / "metrics.jsonl")]
        assert steps == [0, 1, 2, 3]  # trained once: no step written twice
        assert read_status(run_dir).state == "finished"

    rng = random.Random("kill-compare")
    killed = []
    for trial in range(2):
        out = tmp_path / f"killed{trial}"
        args = ["compare", str(exp), "--out", str(out), "--workers", "2"]
        pid = fork_cli(args, tmp_path / f"k{trial}.log")
        run_dirs = [out / "hard" / name for name in names]
        if kill_during(pid, run_dirs, rng.randint(1, 3), rng.uniform(0, 0.2)):
            for run_dir in run_dirs:  # the killed compare's workers end with it
                wait_unlocked(run_dir)
            killed.append({d.name: getattr(read_status(d), "step", None) for d in run_dirs})
        pid = fork_cli(args, tmp_path / f"r{trial}.log")
        assert wait_exit(pid) == 0, (tmp_path / f"r{trial}.log").read_text()
        for name in names:
            same_run_directory(tmp_path / "ref" / "hard" / name, out / "hard" / name)
    print(f"compare killed with its runs at steps {killed}")
    assert killed
