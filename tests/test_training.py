"""SFT and reward-model training on user data: loss, files, errors, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from rlkit.cli import cli_for_tests
from rlkit.cli_training import sft_command, train_rm_command
from rlkit.data import load_preference_jsonl, load_text_file
from rlkit.errors import DataError
from rlkit.training import (
    build_word_tokenizer,
    ranking_loss,
    reward_scores,
    sample_responses,
    train_reward_model,
    train_sft,
    word_tokenizer_from_texts,
)

TINY_MODEL = {"n_layer": 1, "n_embd": 16, "n_head": 2, "n_positions": 32}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from a second thread, and on a busy machine lose a lot."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_ranking_loss_hand_computed() -> None:
    loss = ranking_loss(torch.tensor([1.0]), torch.tensor([0.0]))
    assert float(loss) == pytest.approx(math.log1p(math.exp(-1.0)), abs=1e-6)
    assert float(loss) == pytest.approx(0.31326, abs=1e-5)
    both = ranking_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]))
    assert float(both) == pytest.approx((0.31326169 + math.log(2)) / 2, abs=1e-6)


# -- data files ---------------------------------------------------------------------------------


def test_load_text_file_plain_and_jsonl(tmp_path: Path) -> None:
    plain = tmp_path / "a.txt"
    plain.write_text("one two\n\nthree\n")
    assert load_text_file(plain) == ["one two", "three"]
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"text": "x y"}\n{"body": "z", "text": "w"}\n')
    assert load_text_file(jsonl) == ["x y", "w"]
    with pytest.raises(DataError, match=r"a\.jsonl line 1: missing key 'body'"):
        load_text_file(jsonl, field="body")


def test_malformed_jsonl_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "prefs.jsonl"
    path.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n\n{"prompt": "a", oops}\n')
    with pytest.raises(DataError, match=r"prefs\.jsonl line 3: not valid JSON"):
        load_preference_jsonl(path)


def test_missing_key_names_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "prefs.jsonl"
    path.write_text(
        '{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": "b"}\n'
    )
    with pytest.raises(DataError, match=r"prefs\.jsonl line 2: missing key 'rejected'"):
        load_preference_jsonl(path)
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "fine"}\n{"txt": "oops"}\n')
    with pytest.raises(DataError, match=r"texts\.jsonl line 2: missing key 'text'.*txt"):
        load_text_file(texts)


def test_wrong_types_missing_and_empty_files(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a", "chosen": 3, "rejected": "c"}\n')
    with pytest.raises(DataError, match=r"p\.jsonl line 1: 'chosen' must be a string"):
        load_preference_jsonl(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(DataError, match=r"p\.jsonl line 1: expected a JSON object"):
        load_preference_jsonl(path)
    with pytest.raises(DataError, match="missing.txt. does not exist"):
        load_text_file(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(DataError, match="empty.txt"):
        load_text_file(empty)
    with pytest.raises(DataError, match="empty.txt"):
        load_preference_jsonl(empty)


# -- tokenizer ----------------------------------------------------------------------------------


def test_word_tokenizer_from_texts_ranks_by_frequency() -> None:
    tok = word_tokenizer_from_texts(["b a a", "c a b ."], max_vocab=2)
    vocab = tok.get_vocab()
    assert vocab["a"] == 4 and vocab["b"] == 5 and "c" not in vocab
    assert tok.decode(tok("a b c")["input_ids"], skip_special_tokens=True) == "a b"  # c is [UNK]
    assert tok.convert_ids_to_tokens(tok("c")["input_ids"]) == ["[UNK]"]


# -- training -----------------------------------------------------------------------------------

# Every combination, so any text the model composes from its parts is a training text.
TEXTS = [f"{d} {n} {v} ." for d in ("the", "a") for n in ("cat", "dog") for v in ("sat", "ran")] * 4


def test_sft_learns_and_saves_a_loadable_model(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = word_tokenizer_from_texts(TEXTS)
    figures = train_sft(
        TEXTS,
        tok,
        tmp_path,
        model_config=TINY_MODEL,
        steps=100,
        lr=1e-2,
        batch_size=8,
        seed=0,
        eval_texts=TEXTS[:8],
    )
    # Two fair binary choices over four predicted tokens: the best perplexity is 2**0.5.
    assert figures["eval_perplexity"] < 1.8
    assert (tmp_path / "model.safetensors").is_file()
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.padding_side == "left" and tok.padding_side == "left"
    assert model.config.eos_token_id == loaded.eos_token_id
    samples = sample_responses(
        model, loaded, ["the", "a"], n_per_prompt=8, seed=0, max_new_tokens=8
    )
    assert all(s.finished for s in samples)
    in_corpus = [f"{s.prompt} {s.response}" in TEXTS for s in samples]
    assert sum(in_corpus) >= 0.75 * len(samples)


def test_sft_is_deterministic(tmp_path: Path) -> None:
    tok = word_tokenizer_from_texts(TEXTS)
    for name in ("a", "b"):
        train_sft(
            TEXTS,
            tok,
            tmp_path / name,
            model_config=TINY_MODEL,
            steps=5,
            lr=1e-2,
            batch_size=4,
            seed=3,
        )
    a = (tmp_path / "a" / "model.safetensors").read_bytes()
    assert a == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_reward_model_learns_a_preference(tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    pairs = [
        {"prompt": p, "chosen": "good thing", "rejected": "bad thing"}
        for p in ("the", "a", "one", "my")
    ] * 4
    tok = build_word_tokenizer(["the", "a", "one", "my", "good", "bad", "thing"])
    figures = train_reward_model(
        pairs,
        tok,
        tmp_path,
        model_config=TINY_MODEL,
        steps=40,
        lr=1e-2,
        batch_size=8,
        seed=0,
        eval_pairs=pairs[:4],
    )
    assert figures["eval_accuracy"] == 1.0
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.padding_side == "right"
    good, bad = reward_scores(model, loaded, ["the", "the"], ["good thing", "bad thing"])
    assert good > bad
    # padding must not change a score: score one text alone and in a padded batch
    alone = reward_scores(model, loaded, ["the"], ["good"])[0]
    batched = reward_scores(model, loaded, ["the", "the"], ["good", "good thing thing thing"])[0]
    assert alone == pytest.approx(batched, abs=1e-5)


def test_pairs_sharing_a_prompt_are_batched_together_up_to_the_batch_size() -> None:
    from rlkit.training import _group_batches, _prompt_groups

    pairs = [{"prompt": p, "chosen": "x", "rejected": "y"} for p in "aaabbc"] + [
        {"prompt": "", "chosen": "x", "rejected": "y"}
    ] * 10
    groups = _prompt_groups(pairs, max_size=4)
    assert groups[:3] == [[0, 1, 2], [3, 4], [5]]
    assert [len(g) for g in groups[3:]] == [4, 4, 2]  # a run of equal prompts is capped
    for batch in _group_batches(groups, batch_size=4, steps=10, seed=0):
        assert 4 <= len(batch) <= 7
        assert all(any(set(g) <= set(batch) for g in groups if i in g) for i in batch)


# -- CLI ----------------------------------------------------------------------------------------


SMALL = "--n-layer 1 --n-embd 16 --n-head 2".split()


def test_sft_cli_on_a_text_file(tmp_path: Path) -> None:
    data = tmp_path / "texts.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    out = tmp_path / "sft"
    result = CliRunner().invoke(
        sft_command,
        [str(data), "--out", str(out), *"--steps 3 --batch-size 4 --threads 1".split(), *SMALL],
    )
    assert result.exit_code == 0, result.output
    assert "perplexity" in result.output
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()


def test_train_rm_cli_reports_bad_line(tmp_path: Path) -> None:
    data = tmp_path / "prefs.jsonl"
    data.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\nnot json\n')
    # through the rlkit group, which turns an RlkitError into exit status 2
    result = CliRunner().invoke(cli_for_tests(), ["train-rm", str(data), "--out",
                                                  str(tmp_path / "rm")])
    assert result.exit_code == 2
    assert "prefs.jsonl line 2" in result.output
    assert "Traceback" not in result.output


def test_train_rm_cli_trains(tmp_path: Path) -> None:
    data = tmp_path / "prefs.jsonl"
    rows = [{"prompt": "the", "chosen": "good", "rejected": "bad"}] * 6
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "rm"
    result = CliRunner().invoke(
        train_rm_command,
        [str(data), "--out", str(out), "--steps", "3", *SMALL],
    )
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output
    assert (out / "model.safetensors").is_file()
