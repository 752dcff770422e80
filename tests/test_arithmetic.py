"""The built-in arithmetic world: problems, the one checker, tokenizer, options, the rewards,
the cache, determinism and the SFT policy's accuracy band."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from rlkit.errors import ConfigError
from rlkit.tasks.arithmetic import (
    EXACT_FORMAT_REWARD,
    EXACT_REWARD,
    ArithmeticTask,
    Problem,
    arithmetic_exact,
    arithmetic_exact_format,
    exact_scores,
    extract_answer,
    format_prepare_report,
    is_correct,
    is_well_formed,
    parse_prompt,
)
from rlkit.tasks.arithmetic.build import build_tokenizer, sizes
from rlkit.tasks.arithmetic.options import parse_options
from rlkit.tasks.arithmetic.problems import (
    demonstrations,
    problem_sets,
    random_problem,
    slipped_totals,
)
from rlkit.tasks.base import Split
from rlkit.training import EOS, PAD


@pytest.fixture(scope="session")
def arithmetic_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default arithmetic world, built once per test session into a temporary cache."""
    import torch

    torch.set_num_threads(1)
    cache = tmp_path_factory.mktemp("arithmetic-cache")
    ArithmeticTask({}, cache_dir=cache).prepare()
    return cache


def _answer_of(prompt: str) -> str:
    problem = parse_prompt(prompt)
    assert problem is not None, prompt
    return problem.answer


def _split(text: str) -> tuple[str, str]:
    """A demonstration's (prompt, response): the prompt ends at the first "="."""
    prompt, response = text.split("=", 1)
    return prompt + "=", response


# -- problems -----------------------------------------------------------------------------------


def test_a_problem_its_prompt_worked_answer_and_answer() -> None:
    two = Problem((38, 45), ("+",))
    assert (two.prompt, two.worked(), two.answer) == ("38 + 45 =", "83", "83")
    chain = Problem((38, 45, 17, 9), ("+", "-", "+"))
    assert chain.prompt == "38 + 45 - 17 + 9 ="
    assert chain.worked() == "83 - 17 + 9 = 66 + 9 = 75"
    assert chain.totals() == [83, 66, 75] and chain.answer == "75"
    with pytest.raises(ValueError):
        Problem((1,), ())
    with pytest.raises(ValueError):
        Problem((1, 2), ("*",))


def test_random_problems_are_seeded_fixed_width_and_never_negative() -> None:
    first = [random_problem(random.Random(3), 2, 3) for _ in range(2)]
    assert first[0] == first[1]
    rng = random.Random(0)
    for _ in range(2000):
        problem = random_problem(rng, 2, 3)
        assert all(10 <= t <= 99 for t in problem.terms)
        assert min(problem.totals()) >= 0
    ops = {random_problem(rng, 3, 2).ops[0] for _ in range(200)}
    assert ops == {"+", "-"}
    assert all(0 <= t <= 9 for t in random_problem(rng, 1, 5).terms)


def test_prompt_sets_are_deterministic_disjoint_and_distinct() -> None:
    sets = problem_sets(0, 2, 2, 300, 100)
    assert sets == problem_sets(0, 2, 2, 300, 100)
    assert sets != problem_sets(1, 2, 2, 300, 100)
    train, held_out = [p.prompt for p in sets["train"]], [p.prompt for p in sets["eval"]]
    assert len(set(train)) == 300 and len(set(held_out)) == 100
    assert not set(train) & set(held_out)
    with pytest.raises(ValueError, match="distinct"):
        problem_sets(0, 1, 2, 500, 10)  # one-digit pairs: fewer than 200 problems exist


def test_demonstrations_avoid_held_out_problems_and_mix_in_easier_ones() -> None:
    held_out = {p.prompt for p in problem_sets(0, 2, 2, 10, 200)["eval"]}
    texts = demonstrations(3000, 7, 2, 2, held_out, easy_fraction=0.3)
    assert texts == demonstrations(3000, 7, 2, 2, held_out, easy_fraction=0.3)
    prompts = [_split(t)[0] for t in texts]
    assert not set(prompts) & held_out
    one_digit = sum(len(p.split()[0]) == 1 and len(p.split()[2]) == 1 for p in prompts)
    assert 0.25 < one_digit / len(texts) < 0.35
    for text in texts:
        prompt, response = _split(text)
        assert is_correct(response, _answer_of(prompt))


def test_a_slip_changes_only_the_last_digit_of_the_answer() -> None:
    rng = random.Random(0)
    for _ in range(300):
        problem = random_problem(rng, 2, 3)
        slipped = slipped_totals(problem, rng)
        assert slipped[:-1] == problem.totals()[:-1]
        assert slipped[-1] != problem.value and slipped[-1] // 10 == problem.value // 10
    noisy = demonstrations(2000, 1, 2, 2, set(), noise=0.4)
    wrong = sum(not is_correct(_split(t)[1], _answer_of(_split(t)[0])) for t in noisy)
    assert 0.35 < wrong / len(noisy) < 0.45


# -- the checker --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response, answer, correct",
    [
        ("83", "83", True),
        ("  83 \n", "83", True),  # surrounding whitespace is not part of the answer
        ("83", 83, True),
        ("83 - 17 = 66", "66", True),  # a worked answer: what follows the last "="
        ("83 - 17 =66", "66", True),
        ("= 66", "66", True),
        ("83 - 17 = 66", "83", False),  # an intermediate total is not the answer
        ("66 = 67", "66", False),
        ("84", "83", False),
        ("083", "83", False),  # exact match: no leading zeros
        ("8 3", "83", False),
        ("83 + 0", "83", False),  # trails off into more arithmetic
        ("83.", "83", False),
        ("eighty-three", "83", False),
        ("", "83", False),
        ("=", "83", False),
        ("-83", "83", False),
        ("٨٣", "83", False),  # only ASCII digits are digits
    ],
)
def test_is_correct_on_hand_examples(response: str, answer: str | int, correct: bool) -> None:
    assert is_correct(response, answer) is correct


def test_extract_answer_and_well_formed() -> None:
    assert extract_answer("83 - 17 = 66") == "66"
    assert extract_answer(" 7 ") == "7"
    assert extract_answer("66 +") is None and extract_answer("") is None
    assert is_well_formed("83") and is_well_formed("83 - 17 + 9 = 66 + 9 = 75")
    assert is_well_formed(" 83 - 17 = 66 \n")  # the ends are stripped
    for bad in ("", "83 +", "83 - 17", "= 66", "83  - 17 = 66", "83 - 17 = 66 =", "8a", "٨٣"):
        assert not is_well_formed(bad), bad


def test_parse_prompt_solves_what_the_generator_writes() -> None:
    rng = random.Random(5)
    for _ in range(500):
        problem = random_problem(rng, rng.randint(1, 4), rng.randint(2, 5))
        assert parse_prompt(problem.prompt) == problem
    assert parse_prompt("38+45=") == Problem((38, 45), ("+",))
    for bad in ("38 + 45", "38 =", "5 - 9 =", "hello", "38 + 45 = 83", "38 * 2 ="):
        assert parse_prompt(bad) is None, bad


def test_exact_scores_and_the_registered_reward_functions() -> None:
    responses = ["83", "84", "83 - 1", "garbage", "7"]
    answers = ["83", "83", "83", "83", None]
    assert exact_scores(responses, answers) == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert exact_scores(responses, answers, 0.1) == pytest.approx([1.1, 0.1, 0.0, 0.0, 0.1])
    prompts = ["38 + 45 ="] * 5
    # TRL's convention: columns arrive as keyword lists; other columns are ignored
    assert arithmetic_exact(prompts, responses, answer=answers, source=[1] * 5) == exact_scores(
        responses, answers
    )
    assert arithmetic_exact_format(prompts, responses, answer=answers) == exact_scores(
        responses, answers, 0.1
    )
    with pytest.raises(ValueError):
        exact_scores(["1"], ["1", "2"])


# -- tokenizer ----------------------------------------------------------------------------------


def test_tokenizer_one_token_per_digit_and_canonical_decoding(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "38 + 45 - 17 = 83 - 17 = 66"
    for tok in (tokenizer, loaded):
        ids = tok(text)["input_ids"]
        assert tok.convert_ids_to_tokens(ids[:3]) == ["3", "8", "+"]
        assert len(ids) == sum(not c.isspace() for c in text)
        assert tok("38+45-17=83-17=66")["input_ids"] == ids  # whitespace is not a token
        assert tok.decode(ids + [tok.eos_token_id], skip_special_tokens=True) == text
        assert tok.decode([tok.eos_token_id], skip_special_tokens=True) == ""
        assert tok.eos_token_id not in ids and tok.pad_token_id not in ids
        assert (tok.pad_token, tok.eos_token) == (PAD, EOS)
        assert tok.padding_side == "left"
        assert len(tok) == 4 + 10 + 3
    assert loaded.get_vocab() == tokenizer.get_vocab()


def test_sizes_fit_the_longest_worked_answer() -> None:
    tokenizer = build_tokenizer()
    n_positions, max_new_tokens = sizes(parse_options({}), tokenizer)
    assert max_new_tokens == len("198") + 1 + 4  # 99 + 99, EOS, slack
    _, longest = sizes(parse_options({"digits": 3, "terms": 4}), tokenizer)
    # "2997" is at most 4 digits; 999 + 999 + 999 + 999 worked out in three steps
    assert longest == len("1998+999+999=2997+999=3996") + 1 + 4
    assert n_positions >= len("99+99=") + max_new_tokens


# -- options and the task without a build --------------------------------------------------------


def test_unknown_option_names_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        ArithmeticTask({"digit": 3}, cache_dir=tmp_path)
    message = str(err.value)
    assert "'digit'" in message and "digits" in message and "answer_noise" in message


@pytest.mark.parametrize(
    "options, key",
    [
        ({"digits": 0}, "digits"),
        ({"digits": 2.5}, "digits"),
        ({"terms": 1}, "terms"),
        ({"answer_noise": 1.5}, "answer_noise"),
        ({"answer_noise": True}, "answer_noise"),
        ({"format_reward": "yes"}, "format_reward"),
        ({"sft_lr": 0}, "sft_lr"),
        ({"policy_width": 30, "policy_heads": 8}, "policy_width"),
    ],
)
def test_bad_option_values_name_the_option(options: dict, key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=key):
        ArithmeticTask(options, cache_dir=tmp_path)


def test_options_select_the_cache_entry(tmp_path: Path) -> None:
    a = ArithmeticTask({"seed": 1}, cache_dir=tmp_path).world_dir
    assert a == ArithmeticTask({"seed": 1, "digits": 2}, cache_dir=tmp_path).world_dir
    assert a != ArithmeticTask({"seed": 1, "digits": 3}, cache_dir=tmp_path).world_dir
    assert a.parent == tmp_path / "arithmetic" and a.name.startswith("v1-seed1-")


def test_prompt_rows_carry_the_answer_and_need_no_build(tmp_path: Path) -> None:
    task = ArithmeticTask({"train_prompts": 50, "eval_prompts": 20}, cache_dir=tmp_path)
    splits: tuple[tuple[Split, int], ...] = (("train", 50), ("eval", 20))
    for split, n in splits:
        rows = task.prompt_rows(split)
        assert [r["prompt"] for r in rows] == task.prompts(split)
        assert len(rows) == n and all(set(r) == {"prompt", "answer"} for r in rows)
        for row in rows:
            assert isinstance(row["answer"], str)
            assert row["answer"] == _answer_of(row["prompt"])
    assert not set(task.prompts("train")) & set(task.prompts("eval"))
    with pytest.raises(ConfigError):
        task.prompts("test")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="distinct"):
        ArithmeticTask({"digits": 1}, cache_dir=tmp_path).prompts("train")
    assert not any(tmp_path.iterdir())


def test_gold_reward_with_and_without_metadata(tmp_path: Path) -> None:
    task = ArithmeticTask({}, cache_dir=tmp_path)
    prompts = ["38 + 45 =", "38 + 45 =", "90 - 7 =", "not a problem"]
    responses = ["83", "84", "83", "83"]
    rows = [{"prompt": p, "answer": a} for p, a in zip(prompts, ["83", "83", "83", "83"])]
    assert task.gold_reward(prompts, responses, rows) == [1.0, 0.0, 1.0, 1.0]
    # without metadata the prompt is solved; a prompt that states no problem scores 0
    assert task.gold_reward(prompts, responses) == [1.0, 0.0, 1.0, 0.0]
    assert task.gold_reward(prompts, responses, rows) == arithmetic_exact(
        prompts, responses, answer=[r["answer"] for r in rows]
    )
    with pytest.raises(ValueError):
        task.gold_reward(prompts, responses, rows[:2])
    assert task.reward() == EXACT_REWARD
    assert ArithmeticTask({"format_reward": True}, cache_dir=tmp_path).reward() == (
        EXACT_FORMAT_REWARD
    )
    assert not any(tmp_path.iterdir())


def test_registered_as_a_default_plugin() -> None:
    from rlkit.plugins import make_plugin_manager

    pm = make_plugin_manager()
    assert pm.task("arithmetic") is ArithmeticTask
    assert pm.registry.rewards[EXACT_REWARD] is arithmetic_exact
    assert pm.registry.rewards[EXACT_FORMAT_REWARD] is arithmetic_exact_format


def test_the_engine_passes_the_answer_column_to_the_reward() -> None:
    from rlkit.scoring import FunctionReward, RewardInputs

    rows = [{"prompt": "38 + 45 =", "answer": "83"}, {"prompt": "9 - 2 =", "answer": "7"}]
    inputs = RewardInputs(
        prompts=[r["prompt"] for r in rows],
        responses=["83", "6"],
        texts=["38 + 45 = 83", "9 - 2 = 6"],
        metadata=rows,
        response_lengths=[3, 2],
    )
    assert list(FunctionReward(EXACT_REWARD, arithmetic_exact)(inputs)) == [1.0, 0.0]


# -- the built world ----------------------------------------------------------------------------


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_sft_policy_is_sometimes_right(arithmetic_cache: Path) -> None:
    """The point of the world: a policy RL can improve, right well above never and well below
    always when sampled at temperature 1.0, and able to be right more often (greedy, pass@k)."""
    f = ArithmeticTask({}, cache_dir=arithmetic_cache).prepare()
    assert f["built"] is False
    assert 0.2 <= f["sft_sampled_accuracy"] <= 0.5
    assert f["sft_greedy_accuracy"] > f["sft_sampled_accuracy"] + 0.15
    assert f["sft_pass_at_k"] > f["sft_sampled_accuracy"] + 0.15
    assert f["careful_sampled_accuracy"] > f["sft_sampled_accuracy"]  # the slips cost accuracy
    assert f["sft_eos_rate"] >= 0.99 and f["sft_well_formed_rate"] >= 0.95


def test_same_seed_builds_byte_identical_worlds(arithmetic_cache: Path, tmp_path: Path) -> None:
    first = ArithmeticTask({}, cache_dir=arithmetic_cache)
    again = ArithmeticTask({}, cache_dir=tmp_path / "other")
    assert again.prepare()["built"] is True
    digests = _digests(first.world_dir)
    assert digests == _digests(again.world_dir)
    assert {"policy/model.safetensors", "policy/tokenizer.json", "figures.json"} <= set(digests)
    assert {"prompts_train.jsonl", "prompts_eval.jsonl", "corpus.txt"} <= set(digests)


def test_world_files_agree_with_the_task(arithmetic_cache: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    task = ArithmeticTask({}, cache_dir=arithmetic_cache)
    before = _digests(task.world_dir)
    splits: tuple[Split, ...] = ("train", "eval")
    for split in splits:
        lines = (task.world_dir / f"prompts_{split}.jsonl").read_text().splitlines()
        assert [json.loads(line) for line in lines] == task.prompt_rows(split)
    policy = AutoModelForCausalLM.from_pretrained(task.policy())
    tokenizer = AutoTokenizer.from_pretrained(task.policy())
    assert policy.config.pad_token_id == tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.padding_side == "left"
    assert task.tokenizer().get_vocab() == build_tokenizer().get_vocab()
    held_out = set(task.prompts("eval"))
    corpus = (task.world_dir / "corpus.txt").read_text().splitlines()
    assert len(corpus) == 40000 and not {_split(t)[0] for t in corpus} & held_out
    assert _digests(task.world_dir) == before  # reading builds nothing
    assert not [p for p in task.world_dir.parent.iterdir() if ".tmp-" in p.name]


def test_prepare_report_and_cli(arithmetic_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from rlkit.cli import cli_for_tests

    figures = ArithmeticTask({}, cache_dir=arithmetic_cache).prepare()
    report = format_prepare_report(figures)
    assert ArithmeticTask.format_prepare_report(figures) == report
    line = next(line for line in report.splitlines() if "SFT policy held-out accuracy" in line)
    assert f"greedy {figures['sft_greedy_accuracy']:.3f}" in line
    assert f"sampled (temperature 1.0) {figures['sft_sampled_accuracy']:.3f}" in line
    monkeypatch.setenv("RLKIT_CACHE_DIR", str(arithmetic_cache))
    result = CliRunner().invoke(cli_for_tests(), ["prepare", "arithmetic"])
    assert result.exit_code == 0, result.output
    assert "already built (cached)" in result.output and line in result.output


def test_a_failed_build_leaves_no_cache_and_a_killed_one_is_cleaned_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rlkit.tasks.arithmetic.task as task_module

    task = ArithmeticTask({}, cache_dir=tmp_path)
    killed = task.world_dir.parent / f".{task.world_dir.name}.tmp-killed"
    (killed / "policy").mkdir(parents=True)  # what a SIGKILL mid-build leaves behind

    def crash(out: Path, options: object) -> None:
        (out / "half-written").write_text("x")
        raise RuntimeError("boom")

    monkeypatch.setattr(task_module, "build_world", crash)
    with pytest.raises(RuntimeError, match="boom"):
        task.policy()
    assert not task.world_dir.exists()
    assert not [p for p in task.world_dir.parent.iterdir() if ".tmp-" in p.name]


# -- learning -----------------------------------------------------------------------------------


def test_grpo_raises_held_out_accuracy_within_a_cpu_minute(
    arithmetic_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GRPO on the built world (experiments/smoke_arithmetic.yaml's settings, fixed seed 0)
    raises held-out exact-match accuracy by at least 0.15 in 30 steps of 16 prompts x 8
    samples. Measured single-threaded on a shared 2-core CPU: 0.25 -> 0.547, 2.5-3 CPU-s for
    the run (sum of perf/step_time_s 2.3-4.3 s), far inside the minute budget."""
    import time

    import torch

    from rlkit.config import load_config
    from rlkit.core.run import Run

    torch.set_num_threads(1)
    monkeypatch.setenv("RLKIT_CACHE_DIR", str(arithmetic_cache))
    steps = 30
    data = {
        "name": "grpo_arithmetic",
        "seed": 0,
        "task": {"name": "arithmetic"},
        "reward": {"model": "task"},  # arithmetic_exact on the prompts' `answer` column
        "algorithm": {"name": "grpo", "lr": 3e-4, "samples_per_prompt": 8},
        "rollout": {"batch_size": 16, "max_new_tokens": 8},
        "train": {"steps": steps},
        "eval": {"every": steps, "num_prompts": 64},
        "tracking": {"trackers": ["jsonl"]},
    }
    started = time.process_time()
    Run(load_config(data=data), out=tmp_path / "runs").train()
    cpu_s = time.process_time() - started
    (metrics,) = (tmp_path / "runs").rglob("metrics.jsonl")
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    evals = {row["train/step"]: row["eval/gold_reward"] for row in rows if "eval/gold_reward" in row}
    step_time_s = sum(row.get("perf/step_time_s", 0.0) for row in rows)
    before, after = evals[0], evals[max(evals)]
    print(
        f"GRPO arithmetic: accuracy {before:.3f} -> {after:.3f} (+{after - before:.3f}) "
        f"in {max(evals)} steps; training time {step_time_s:.1f} s "
        f"(sum of perf/step_time_s), {cpu_s:.1f} CPU-s for the whole run"
    )
    assert max(evals) == steps
    assert cpu_s <= 60.0, f"{cpu_s:.1f} CPU-s exceeds the one-CPU-minute budget"
    assert after - before >= 0.15, (before, after)
