"""experiments/imdb_gpt2.yaml on local stand-ins: the hub loading path (AutoModelForCausalLM,
AutoModelForSequenceClassification with a chosen label, datasets prompts) without a network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import (
    DistilBertConfig,
    DistilBertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
)

from rlkit.compare.experiment import load_experiment
from rlkit.compare.runner import run_grid
from rlkit.config import apply_overrides
from rlkit.errors import RlkitError
from rlkit.plugins import get_plugin_manager
from rlkit.tasks.toy import WORDS
from rlkit.training import build_word_tokenizer

EXPERIMENT = Path(__file__).resolve().parent.parent / "experiments" / "imdb_gpt2.yaml"
pytest.importorskip("datasets")


@pytest.fixture
def standins(tmp_path):
    tok = build_word_tokenizer(WORDS)
    policy_dir, reward_dir, data_dir = tmp_path / "gpt2-imdb", tmp_path / "distilbert-imdb", \
        tmp_path / "imdb"
    policy = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_layer=1, n_head=2, n_embd=16,
                                        n_positions=64, eos_token_id=tok.eos_token_id))
    policy.save_pretrained(policy_dir)
    tok.save_pretrained(policy_dir)
    reward = DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=len(tok), n_layers=1, n_heads=2, dim=16, hidden_dim=32, num_labels=2,
        pad_token_id=tok.pad_token_id, id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1}))
    reward.save_pretrained(reward_dir)
    reward_tok = build_word_tokenizer(WORDS)
    reward_tok.padding_side = "right"
    reward_tok.save_pretrained(reward_dir)
    data_dir.mkdir()
    for split, n in (("train", 40), ("test", 10)):
        rows = [{"text": f"the movie was very good and the plot {i} was fine", "label": 1}
                for i in range(n)]
        (data_dir / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return policy_dir, reward_dir, data_dir


def test_imdb_experiment_runs_on_local_standins(standins, tmp_path):
    policy_dir, reward_dir, data_dir = standins
    algorithms = get_plugin_manager().registry.algorithms
    exp, planned = load_experiment(EXPERIMENT, algorithms)
    assert exp.name == "imdb_gpt2" and len(planned) == len(exp.algorithms) * 3
    config = planned[0].config  # reinforce, seed 0
    assert config.policy.model == "lvwerra/gpt2-imdb"
    assert config.reward.model == "lvwerra/distilbert-imdb" and config.reward.label == 1
    wanted = [p for p in planned if p.seed == 0 and p.algorithm in ("reinforce", "ppo_clip")]
    configs = [apply_overrides(p.config.model_dump(mode="json"), [
        f"policy.model={policy_dir}", f"reward.model={reward_dir}",
        f"prompts.dataset={data_dir}", "train.samples=16", "train.bf16=false",
        "rollout.batch_size=4", "rollout.max_new_tokens=6", "eval.num_prompts=4",
        "tracking.trackers=[jsonl]"]) for p in wanted]
    results = run_grid(configs, tmp_path / "runs", workers=1)
    assert [r.state for r in results] == ["finished"] * len(wanted), results
    rows = [json.loads(line) for line in
            (tmp_path / "runs" / wanted[0].name / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train/samples"] == 16
    samples = (tmp_path / "runs" / wanted[0].name / "samples.jsonl").read_text()
    assert "the movie was very good and the plot" in samples  # 8-word openings


def test_a_multi_label_reward_model_needs_reward_label(standins, tmp_path):
    from rlkit.config import load_config
    from rlkit.engine import Run

    policy_dir, reward_dir, data_dir = standins
    config = load_config(data={
        "name": "nolabel", "policy": {"model": str(policy_dir)},
        "reward": {"model": str(reward_dir)}, "prompts": {"dataset": str(data_dir),
                                                          "field": "text"},
        "algorithm": {"name": "reinforce"}, "tracking": {"trackers": ["jsonl"]}})
    with pytest.raises(RlkitError, match="has 2 labels .* set reward.label"):
        Run(config, out=tmp_path)
