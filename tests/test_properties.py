"""Property-based tests: malformed configs and data files give a UserError (one line, exit 2), never a crash."""

import json
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from distill_lora.cli import app
from distill_lora.config import load_config
from distill_lora.errors import UserError
from distill_lora.train.data import load_splits

KEYS = [
    "seed",
    "seeds",
    "output_dir",
    "data",
    "teacher",
    "distill",
    "lora",
    "train",
    "report",
    "source",
    "lr",
    "epochs",
    "layers",
    "temperature",
    "w_kl",
    "limit",
    "train.lr",
    "trian",
    "precision",
    "label_names",
    "r",
]
leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(-3, 20), max_size=4),
)
tree = st.recursive(leaf, lambda children: st.dictionaries(st.sampled_from(KEYS), children, max_size=4), max_leaves=12)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(
    raw=st.dictionaries(st.sampled_from(KEYS), tree, max_size=5),
    overrides=st.lists(
        st.tuples(
            st.sampled_from(
                ["train.lr", "teacher.train.epochs", "distill.layers", "x.y", "data.limit.train", "lora.r", "seeds"]
            ),
            st.text(max_size=8),
        ),
        max_size=3,
    ),
)
def test_config_loader_never_crashes(raw, overrides):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.yaml"
        path.write_text(yaml.safe_dump(raw))
        try:
            load_config(str(path), [f"{k}={v}" for k, v in overrides])
        except UserError as e:
            assert str(e) and "\n" not in str(e)


@SETTINGS
@given(text=st.binary(max_size=200))
def test_config_file_of_random_bytes(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.yaml"
        path.write_bytes(text)
        try:
            load_config(str(path))
        except UserError:
            pass


value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
row = st.dictionaries(st.sampled_from(["text", "label", "tweet", "y"]), value, max_size=3)


@SETTINGS
@given(
    train=st.lists(row, max_size=8),
    test=st.lists(row, max_size=4),
    junk=st.binary(max_size=60),
    fmt=st.sampled_from(["jsonl", "csv", "junk"]),
)
def test_data_loader_never_crashes(train, test, junk, fmt):
    from distill_lora.config import DataConfig

    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        for name, rows in (("train", train), ("test", test)):
            if fmt == "jsonl":
                (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            elif fmt == "csv":
                lines = ["text,label"] + [f"{r.get('text')},{r.get('label')}" for r in rows]
                (folder / f"{name}.csv").write_text("\n".join(lines))
            else:
                (folder / f"{name}.jsonl").write_bytes(junk)
        try:
            splits = load_splits(DataConfig(source=str(folder)))
            assert len(splits.train) and len(splits.validation) and len(splits.test)
            assert all(isinstance(t, str) and t.strip() for t in splits.train.texts)
            assert all(y in (0, 1) for y in splits.train.labels + splits.test.labels)
        except UserError as e:
            assert str(e) and "\n" not in str(e)


def test_cli_answers_malformed_input_with_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: [1, 2]}\n")
    r = CliRunner().invoke(app, ["compare", "--config", str(bad)])
    assert r.exit_code == 2 and r.output.startswith("error: config: 'train.epochs' must be int")
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


# any text JSON can carry, as the API receives it: surrogates often (json.dumps writes each as a \uXXXX escape; an
# adjacent high+low escape decodes to one valid character, a lone one stays a lone surrogate)
# (st.text never yields surrogates, whatever its alphabet: so characters are joined by hand)
json_text = st.lists(
    st.one_of(st.characters(codec=None, categories=None), st.integers(0xD800, 0xDFFF).map(chr)), max_size=30
).map("".join)
_tokenizers = {}


@SETTINGS
@given(
    value=st.one_of(json_text, st.lists(json_text, max_size=3), st.integers(), st.none()),
    key=st.sampled_from(["text", "texts"]),
)
def test_api_input_is_accepted_whole_or_refused_with_a_4xx_reason(value, key, tiny_bert6):
    from transformers import AutoTokenizer

    from distill_lora.use.serve import BadInput, parse_texts

    body = json.dumps({key: value}).encode()  # ensure_ascii: a lone surrogate travels as \ud800
    try:
        texts, _ = parse_texts(body)
    except BadInput as e:
        assert 400 <= e.status < 500 and str(e) and "\n" not in str(e)
        return
    # what parse_texts lets through, the tokenizer takes (it raises TypeError on a lone surrogate)
    if tiny_bert6 not in _tokenizers:
        _tokenizers[tiny_bert6] = AutoTokenizer.from_pretrained(tiny_bert6)
    tokenizer = _tokenizers[tiny_bert6]
    assert len(tokenizer(texts)["input_ids"]) == len(texts)
