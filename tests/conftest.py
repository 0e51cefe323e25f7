"""Shared fixtures: tiny random BERTs and a tiny data set, built locally (never downloaded)."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
SHARED_OLID = REPO.parent / "shared" / "data" / "olid"

WORDS_TOXIC = ["hate", "vermin", "idiot", "garbage", "stupid", "disgusting", "trash", "moron"]
WORDS_CLEAN = ["love", "park", "music", "friends", "sunny", "lovely", "festival", "coffee"]
FILLER = ["the", "a", "is", "are", "you", "they", "people", "this", "so", "very", "not", "all"]


def tiny_texts(n: int, seed: int) -> list[dict]:
    """Short texts whose label is carried by which word list they draw from (learnable)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = int(rng.random() < 0.4)
        words = WORDS_TOXIC if label else WORDS_CLEAN
        text = " ".join(
            rng.choice(FILLER) if rng.random() < 0.5 else rng.choice(words) for _ in range(rng.randint(3, 9))
        )
        rows.append({"text": text, "label": label})
    return rows


CLASSES3 = ["hate speech", "offensive language", "neither"]


def tiny_texts3(n: int, seed: int) -> list[dict]:
    """Three classes with STRING labels (as davidson3): each class draws from its own word list."""
    rng = random.Random(seed)
    words = [WORDS_TOXIC[:4], WORDS_TOXIC[4:], WORDS_CLEAN]
    rows = []
    for i in range(n):
        label = i % 3 if i < 3 else rng.choice([0, 1, 1, 2, 2])  # every class present, hate the rarest
        text = " ".join(
            rng.choice(FILLER) if rng.random() < 0.4 else rng.choice(words[label]) for _ in range(rng.randint(3, 9))
        )
        rows.append({"text": text, "label": CLASSES3[label]})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def one_error_line(result, code, *needles):
    """The command failed with `code` and said so in exactly one line starting with 'error:'."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def build_tiny_bert(folder: Path, layers: int, seed: int = 0, dropout: float = 0.1) -> Path:
    """A random BERT classifier backbone + WordPiece tokenizer saved as a Hugging Face folder."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(WORDS_TOXIC + WORDS_CLEAN + FILLER))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # vocab= (not vocab_file=): transformers 5's fast tokenizer ignores vocab_file, and every word became [UNK]
    BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True).save_pretrained(folder)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=64,
        type_vocab_size=2,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    model = BertForSequenceClassification(config)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert12(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("bert12"), 12)


@pytest.fixture(scope="session")
def tiny_bert6(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("bert6"), 6, seed=1)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    write_jsonl(folder / "train.jsonl", tiny_texts(96, 0))
    write_jsonl(folder / "validation.jsonl", tiny_texts(40, 1))
    write_jsonl(folder / "test.jsonl", tiny_texts(40, 2))
    return folder


@pytest.fixture(scope="session")
def tiny_data3(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data3")
    write_jsonl(folder / "train.jsonl", tiny_texts3(120, 0))
    write_jsonl(folder / "validation.jsonl", tiny_texts3(45, 1))
    write_jsonl(folder / "test.jsonl", tiny_texts3(45, 2))
    return folder


def tiny_config(tmp_path: Path, model: Path, data: Path, data_settings: dict | None = None, **extra) -> Path:
    """A config file for the tiny model; `data_settings` merge into its data block, `extra` holds top-level
    sections to merge in."""
    import yaml

    cfg = {
        "seed": 0,
        "output_dir": str(tmp_path / "run"),
        "data": {"source": str(data), "max_length": 16, **(data_settings or {})},
        "teacher": {"model": str(model), "train": {"lr": 1e-3}},
        "distill": {"train": {"lr": 1e-3}},
        "lora": {"train": {"lr": 5e-3}},
        "train": {"epochs": 2, "batch_size": 16, "eval_batch_size": 32, "log_every": 2},
    }
    for key, value in extra.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, tiny_bert12, tiny_data):
    """One complete tiny `compare` run, shared by the tests that only read its outputs."""
    from typer.testing import CliRunner

    from distill_lora.cli import app

    tmp = tmp_path_factory.mktemp("finished")
    cfg = tiny_config(tmp, tiny_bert12, tiny_data)
    result = CliRunner().invoke(app, ["compare", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    return {"config": cfg, "output": tmp / "run", "stdout": result.output, "model": tiny_bert12, "data": tiny_data}


@pytest.fixture(scope="session")
def finished_run3(tmp_path_factory, tiny_bert6, tiny_data3):
    """A complete tiny 3-class `compare` (teacher, odd student, LoRA student; string labels through label_map)."""
    from typer.testing import CliRunner

    from distill_lora.cli import app

    tmp = tmp_path_factory.mktemp("finished3")
    cfg = tiny_config(
        tmp,
        tiny_bert6,
        tiny_data3,
        data_settings={"label_names": CLASSES3, "label_map": {c: i for i, c in enumerate(CLASSES3)}},
        distill={"layers": ["odd"]},
        lora={"models": ["lora-student"]},
        train={"epochs": 3},
    )
    result = CliRunner().invoke(app, ["compare", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    return {"config": cfg, "output": tmp / "run", "stdout": result.output, "model": tiny_bert6, "data": tiny_data3}
