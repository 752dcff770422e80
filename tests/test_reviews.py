"""The built-in review world: grammar, gold reward, tokenizer, options, cache and determinism."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from rlkit.errors import ConfigError
from rlkit.tasks.reviews import GOLD_INVALID, ReviewsTask, format_prepare_report, review_gold
from rlkit.tasks.reviews.build import gold_pairs
from rlkit.tasks.reviews.gold import gold_reward, parse_review
from rlkit.tasks.reviews.grammar import (
    ReviewGenerator,
    generate_reviews,
    prompt_sets,
    vocabulary,
)
from rlkit.training import EOS, PAD, build_word_tokenizer

# A world small enough to build in a few seconds; the figures are not meant to be good.
TINY = {
    "corpus_size": 400,
    "heldout_size": 60,
    "train_prompts": 12,
    "eval_prompts": 6,
    "rm_pairs": 200,
    "policy_width": 16,
    "policy_heads": 2,
    "policy_layers": 1,
    "rm_width": 16,
    "rm_heads": 2,
    "rm_layers": 1,
    "sft_steps": 8,
    "rm_steps": 8,
    "rm_group_size": 3,
    "batch_size": 8,
    "rm_batch_size": 8,
}


# -- grammar ------------------------------------------------------------------------------------


def test_generator_is_a_pure_function_of_the_seed() -> None:
    assert generate_reviews(50, seed=3) == generate_reviews(50, seed=3)
    assert generate_reviews(50, seed=3) != generate_reviews(50, seed=4)


def test_every_generated_review_parses_back_and_has_a_valid_gold() -> None:
    for review in ReviewGenerator(seed=0).reviews(2000):
        text = review.text()
        assert parse_review(text) == review, text
        assert -1.0 < review_gold(text) < 1.0, text


def test_generated_words_are_the_vocabulary() -> None:
    used = {w for text in generate_reviews(3000, seed=1) for w in text.split(" ")}
    assert used <= set(vocabulary())
    assert 80 <= len(vocabulary()) <= 200


def test_prompt_sets_are_deterministic_disjoint_openings() -> None:
    train, evals = prompt_sets(40, 10, seed=0)
    assert (train, evals) == prompt_sets(40, 10, seed=0)
    assert len(train) == 40 and len(evals) == 10
    assert not set(train) & set(evals)
    assert all(2 <= len(p.split(" ")) <= 4 for p in train + evals)
    assert len(set(train)) == len(train)


# -- gold -----------------------------------------------------------------------------------------


def test_gold_sign_follows_negation() -> None:
    assert review_gold("the movie was good .") > 0
    assert review_gold("the movie was not good .") < 0
    assert review_gold("the movie was bad .") < 0
    assert review_gold("the movie was not bad .") > 0


def test_gold_intensity_and_hand_checked_values() -> None:
    good, very_good = review_gold("the movie was good ."), review_gold("the movie was very good .")
    assert very_good > good
    assert review_gold("the movie was slightly good .") < good
    assert good == pytest.approx(0.4621172, abs=1e-6)  # tanh(0.5)
    assert review_gold("the movie was not good .") == pytest.approx(
        -0.2449187, abs=1e-6
    )  # tanh(-.25)


def test_gold_but_emphasises_the_second_clause() -> None:
    # (1 * -0.5 + 2 * 0.8) / 3 > 0: "bad , but great" is on balance positive.
    assert review_gold("the plot was bad , but the acting was great .") > 0
    assert review_gold("the plot was great , but the acting was bad .") < 0
    assert review_gold("the plot was great and the acting was bad .") > 0


def test_gold_is_invalid_for_text_the_grammar_cannot_produce() -> None:
    for text in [
        "the movie was good",  # no end
        "the movie was good . the movie was good .",  # text after the end
        "the movie was good and the movie was good .",  # repeated subject
        "the movie was good good .",  # broken structure
        "the movie were good .",  # agreement
        "the movie was very .",
        "great great great great",
        "",
        "the movie was good and the plot was good and the cast was good and the music was good .",
        "the movie was splendiferous .",
    ]:
        assert review_gold(text) == GOLD_INVALID, text
    assert all(review_gold(t) > GOLD_INVALID for t in generate_reviews(200, seed=5))


def test_gold_reward_joins_prompt_and_response() -> None:
    assert gold_reward("the plot was", "very good .") == review_gold("the plot was very good .")
    assert gold_reward("the plot was", "very good") == GOLD_INVALID
    assert review_gold("the plot was good.") == review_gold("the plot was good .")


def test_task_gold_reward_needs_no_build(tmp_path: Path) -> None:
    task = ReviewsTask(TINY, cache_dir=tmp_path)
    golds = task.gold_reward(["the movie was", "the plot"], ["great .", "was was ."])
    assert golds[0] > 0 and golds[1] == GOLD_INVALID
    assert not any(tmp_path.iterdir())


# -- tokenizer --------------------------------------------------------------------------------


def test_tokenizer_round_trip_without_eos_and_pad_differs_from_eos(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = build_word_tokenizer(vocabulary())
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "the plot was not very good , but the acting was great ."
    for tok in (tokenizer, loaded):
        ids = tok(text)["input_ids"]
        assert len(ids) == len(text.split(" "))
        assert tok.eos_token_id not in ids and tok.pad_token_id not in ids
        assert tok.decode(ids + [tok.eos_token_id], skip_special_tokens=True) == text
        assert tok.pad_token == PAD and tok.eos_token == EOS
        assert tok.pad_token_id != tok.eos_token_id
        assert tok.padding_side == "left"
    assert loaded.get_vocab() == tokenizer.get_vocab()


# -- options ------------------------------------------------------------------------------------


def test_unknown_option_names_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        ReviewsTask({"label_nosie": 0.2}, cache_dir=tmp_path)
    message = str(err.value)
    assert "label_nosie" in message and "label_noise" in message and "corpus_size" in message


@pytest.mark.parametrize(
    "options, key",
    [
        ({"seed": "zero"}, "seed"),
        ({"label_noise": 0.5}, "label_noise"),
        ({"label_noise": True}, "label_noise"),
        ({"rm_from_sft": "yes"}, "rm_from_sft"),
        ({"rm_group_size": 1}, "rm_group_size"),
        ({"corpus_size": 0}, "corpus_size"),
        ({"sft_lr": 0}, "sft_lr"),
        ({"policy_width": 30, "policy_heads": 4}, "policy_width"),
    ],
)
def test_bad_option_values_name_the_option(options: dict, key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=key):
        ReviewsTask(options, cache_dir=tmp_path)


def test_options_select_the_cache_entry(tmp_path: Path) -> None:
    a = ReviewsTask({"seed": 1}, cache_dir=tmp_path).world_dir
    assert a == ReviewsTask({"seed": 1, "label_noise": 0.1}, cache_dir=tmp_path).world_dir
    assert a != ReviewsTask({"seed": 1, "label_noise": 0.2}, cache_dir=tmp_path).world_dir
    assert a.parent == tmp_path / "reviews" and a.name.startswith("v1-seed1-")


def test_rm_pairs_share_an_opening_and_follow_gold_without_noise() -> None:
    reviews = generate_reviews(300, seed=2)
    for pair in gold_pairs(reviews, 100, seed=0, label_noise=0.0):
        assert gold_reward(pair["prompt"], pair["chosen"]) > gold_reward(
            pair["prompt"], pair["rejected"]
        )
    noisy = gold_pairs(reviews, 400, seed=0, label_noise=0.3)
    flipped = sum(
        gold_reward(p["prompt"], p["chosen"]) < gold_reward(p["prompt"], p["rejected"])
        for p in noisy
    )
    assert 0.2 < flipped / len(noisy) < 0.4


# -- the built world --------------------------------------------------------------------------


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> ReviewsTask:
    task = ReviewsTask(TINY, cache_dir=tmp_path_factory.mktemp("cache"))
    task.prepare()
    return task


def test_same_seed_builds_byte_identical_worlds(built: ReviewsTask, tmp_path: Path) -> None:
    again = ReviewsTask(TINY, cache_dir=tmp_path / "other")
    again.prepare()
    first, second = _digests(built.world_dir), _digests(again.world_dir)
    assert first == second
    assert {"policy/model.safetensors", "reward_model/model.safetensors"} <= set(first)
    assert "preferences.jsonl" in first and "figures.json" in first


def test_world_is_built_once_and_reused(built: ReviewsTask) -> None:
    before = _digests(built.world_dir)
    mtime = (built.world_dir / "figures.json").stat().st_mtime_ns
    figures = ReviewsTask(TINY, cache_dir=built.cache_dir).prepare()
    assert figures["built"] is False
    assert (built.world_dir / "figures.json").stat().st_mtime_ns == mtime
    assert _digests(built.world_dir) == before
    leftovers = [p.name for p in built.world_dir.parent.iterdir() if ".tmp-" in p.name]
    assert leftovers == []


def test_a_failed_build_leaves_no_cache_and_a_killed_one_is_cleaned_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rlkit.tasks.reviews.task as task_module

    task = ReviewsTask(TINY, cache_dir=tmp_path)
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


def test_task_contract_paths_load(built: ReviewsTask) -> None:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    assert len(built.prompts("train")) == TINY["train_prompts"]
    assert len(built.prompts("eval")) == TINY["eval_prompts"]
    assert not set(built.prompts("train")) & set(built.prompts("eval"))
    with pytest.raises(ConfigError):
        built.prompts("test")  # type: ignore[arg-type]
    policy = AutoModelForCausalLM.from_pretrained(built.policy())
    assert policy.config.pad_token_id != policy.config.eos_token_id
    assert AutoTokenizer.from_pretrained(built.policy()).padding_side == "left"
    assert AutoTokenizer.from_pretrained(built.reward()).padding_side == "right"
    reward = AutoModelForSequenceClassification.from_pretrained(built.reward())
    assert reward.config.num_labels == 1 and reward.config.pad_token_id is not None
    tokenizer = built.tokenizer()
    assert tokenizer.get_vocab() == AutoTokenizer.from_pretrained(built.reward()).get_vocab()
    lines = Path(built.preferences()).read_text().splitlines()
    assert lines
    for line in lines:
        record = json.loads(line)
        assert set(record) == {"prompt", "chosen", "rejected"}
        assert record["prompt"] in built.prompts("train")
        assert record["chosen"] != record["rejected"]


def test_prepare_report_lists_the_figures(built: ReviewsTask) -> None:
    figures = built.prepare()
    report = format_prepare_report(figures)
    assert built.format_prepare_report(figures) == report  # what `rlkit prepare` calls
    accuracy_line = next(line for line in report.splitlines() if "accuracy" in line)
    assert f"{figures['rm_eval_accuracy']:.3f}" in accuracy_line
    for word in ("perplexity", "vocabulary", "Pearson", "mean gold", "proxy"):
        assert word in report
    assert 0.0 <= figures["rm_eval_accuracy"] <= 1.0
    assert figures["vocab_size"] == len(vocabulary()) + 4
