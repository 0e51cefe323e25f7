"""Data loading: formats, the text rule, label checks, carving, limits, fast Hub failure."""

import csv
import dataclasses
import socket
import time

import pytest
from conftest import write_jsonl

from distill_lora.config import DataConfig, SplitLimits
from distill_lora.errors import UserError
from distill_lora.train.data import Encoded, load_splits, make_collate

ROWS = [{"text": f"text number {i}", "label": i % 2} for i in range(20)]


def folder_with(tmp_path, train=ROWS, validation=ROWS[:6], test=ROWS[:6], ext="jsonl"):
    for name, rows in (("train", train), ("validation", validation), ("test", test)):
        if rows is None:
            continue
        path = tmp_path / f"{name}.{ext}"
        if ext == "jsonl":
            write_jsonl(path, rows)
        elif ext == "csv":
            with path.open("w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
        elif ext == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), path)
    return tmp_path


@pytest.mark.parametrize("ext", ["jsonl", "csv", "parquet"])
def test_formats_give_the_same_splits(tmp_path, ext):
    s = load_splits(DataConfig(source=str(folder_with(tmp_path, ext=ext))))
    assert s.train.texts == [r["text"] for r in ROWS]
    assert s.train.labels == [r["label"] for r in ROWS]
    assert len(s.validation) == 6 and len(s.test) == 6
    assert all(len(h) == 64 for h in s.fingerprint.values())


def test_mimic_of_default_hub_schema_numbers_become_text(tmp_path):
    # the Hub data set has non-string texts (numbers) and a few null ones
    train = ROWS + [{"text": 12345, "label": 0}, {"text": 7.0, "label": 1}, {"text": 2.5, "label": 0}]
    s = load_splits(DataConfig(source=str(folder_with(tmp_path, train=train))))
    assert s.train.texts[-3:] == ["12345", "7", "2.5"]


def test_null_text_is_an_error_naming_the_row(tmp_path):
    train = ROWS[:3] + [{"text": None, "label": 1}] + ROWS[3:]
    with pytest.raises(UserError, match=r"row 4 has no text .*data.null_text: drop"):
        load_splits(DataConfig(source=str(folder_with(tmp_path, train=train))))


def test_null_text_dropped_and_counted(tmp_path):
    train = ROWS + [{"text": None, "label": 1}, {"text": "   ", "label": 0}]
    s = load_splits(DataConfig(source=str(folder_with(tmp_path, train=train)), null_text="drop"))
    assert len(s.train) == len(ROWS)
    assert any("dropped 2 rows" in n for n in s.notes)


def test_non_text_value_rejected(tmp_path):
    train = ROWS + [{"text": ["a", "list"], "label": 1}]
    with pytest.raises(UserError, match="row 21 has a list as text"):
        load_splits(DataConfig(source=str(folder_with(tmp_path, train=train))))


def test_label_outside_label_set(tmp_path):
    train = ROWS + [{"text": "x", "label": 2}]
    with pytest.raises(UserError, match=r"row 21 has label 2, outside the label set 0..1"):
        load_splits(DataConfig(source=str(folder_with(tmp_path, train=train))))


def test_string_labels_through_label_map(tmp_path):
    train = [{"text": r["text"], "label": "hate" if r["label"] else "ok"} for r in ROWS]
    cfg = DataConfig(source=str(folder_with(tmp_path, train=train)), label_map={"ok": 0, "hate": 1})
    assert load_splits(cfg).train.labels == [r["label"] for r in ROWS]
    with pytest.raises(UserError, match="row 1 has label 'ok'.*data.label_map"):
        load_splits(DataConfig(source=str(tmp_path)))


def test_missing_column_names_columns_and_key(tmp_path):
    with pytest.raises(UserError, match=r"no column 'tweet' \(columns: text, label\); set data.text_column"):
        load_splits(DataConfig(source=str(folder_with(tmp_path)), text_column="tweet"))


def test_empty_split(tmp_path):
    folder = folder_with(tmp_path)
    (folder / "test.jsonl").write_text("")
    with pytest.raises(UserError, match="split 'test' .* is empty"):
        load_splits(DataConfig(source=str(folder)))


def test_missing_folder_and_missing_test(tmp_path):
    with pytest.raises(UserError, match="no such file or folder"):
        load_splits(DataConfig(source=str(tmp_path / "nowhere")))
    with pytest.raises(UserError, match="no test file"):
        load_splits(DataConfig(source=str(folder_with(tmp_path, test=None))))


def test_bad_json_line(tmp_path):
    folder = folder_with(tmp_path)
    (folder / "train.jsonl").write_text('{"text": "a", "label": 0}\n{"text": oops}\n')
    with pytest.raises(UserError, match="line 2 is not valid JSON"):
        load_splits(DataConfig(source=str(folder)))


def test_validation_carved_from_train_when_missing(tmp_path):
    rows = [{"text": f"t{i}", "label": int(i % 4 == 0)} for i in range(100)]
    cfg = DataConfig(source=str(folder_with(tmp_path, train=rows, validation=None)), validation_fraction=0.2)
    s = load_splits(cfg)
    assert len(s.validation) == 20 and len(s.train) == 80
    assert sum(s.validation.labels) == 5  # stratified: 25% positive, like train
    assert not set(s.validation.texts) & set(s.train.texts)
    assert any("carved 20% of train" in n for n in s.notes)
    assert load_splits(cfg).validation.texts == s.validation.texts  # seeded
    assert load_splits(dataclasses.replace(cfg, split_seed=1)).validation.texts != s.validation.texts


def test_limits_are_stratified_and_seeded(tmp_path):
    rows = [{"text": f"t{i}", "label": int(i % 4 == 0)} for i in range(200)]
    cfg = DataConfig(source=str(folder_with(tmp_path, train=rows)), limit=SplitLimits(train=40))
    s = load_splits(cfg)
    assert len(s.train) == 40 and sum(s.train.labels) == 10
    assert len(s.test) == 6


def test_hub_id_fails_fast_when_hub_unreachable(tmp_path, monkeypatch):
    with socket.socket() as sock:  # a local port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    start = time.perf_counter()
    with pytest.raises(UserError, match="Hub id, but the Hub .* cannot be reached.*--config demo"):
        load_splits(DataConfig(source="someone/some_dataset"))
    # a plain load_dataset waits 25-50 s for retries here; ours answers without retrying
    assert time.perf_counter() - start < 15


def test_hub_id_with_offline_flag(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="HF_HUB_OFFLINE is set"):
        load_splits(DataConfig(source="someone/some_dataset"))


def test_encoding_and_dynamic_padding(tiny_bert12):
    from transformers import AutoTokenizer

    from distill_lora.train.data import Split

    tok = AutoTokenizer.from_pretrained(tiny_bert12)
    enc = Encoded(Split(["love park", "the music is so very lovely festival coffee"], [0, 1]), tok, max_length=6)
    assert len(enc.input_ids[0]) == 4 and len(enc.input_ids[1]) == 6
    assert enc.n_truncated == 1
    batch = make_collate(tok.pad_token_id)([enc[0], enc[1]])
    assert batch["input_ids"].shape == (2, 6)
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0], [1] * 6]
    assert batch["idx"].tolist() == [0, 1] and batch["labels"].tolist() == [0, 1]


def test_duplicates_counted_and_optionally_dropped(tmp_path):
    from distill_lora.train.data import overlap_summary

    train = ROWS + [
        {"text": "text number 1", "label": 0},
        {"text": "only in train", "label": 1},
        {"text": "only in train", "label": 1},
        {"text": "leaks", "label": 1},
    ]
    test = ROWS[10:14] + [{"text": "leaks", "label": 1}]
    folder = folder_with(tmp_path, train=train, validation=ROWS[14:18], test=test)
    s = load_splits(DataConfig(source=str(folder)))
    o = overlap_summary(s)
    # "text number 1" twice with labels 1 and 0: a clashing duplicate; "only in train" twice
    assert o["duplicates_in_train"] == 2 and o["duplicates_with_clashing_labels"] == 1
    assert o["shared_train_test"] == 5 and o["shared_train_validation"] == 4 and o["shared_validation_test"] == 0
    d = load_splits(DataConfig(source=str(folder), drop_duplicates=True))
    od = overlap_summary(d)
    assert od["duplicates_in_train"] == 0 and od["shared_train_test"] == 0 and od["shared_train_validation"] == 0
    assert len(d.test) == len(test) and "leaks" not in d.train.texts
    assert len(d.train) == len(train) - 2 - 4 - 5 and any("drop_duplicates" in n for n in d.notes)


GROUPED = [{"text": f"text number {i}", "label": i % 2, "template": i // 4} for i in range(20)]


def test_group_column_read_and_kept_through_limits(tmp_path):
    folder = folder_with(tmp_path, train=GROUPED, validation=GROUPED[:8], test=GROUPED)
    assert load_splits(DataConfig(source=str(folder))).test.groups is None  # unset: no groups
    s = load_splits(DataConfig(source=str(folder), group_column="template", limit=SplitLimits(test=10)))
    assert s.train.groups == [str(i // 4) for i in range(20)]  # numbers become text: 3 and "3" are one group
    # a limited split keeps each text's own group id
    assert [int(t.split()[-1]) // 4 for t in s.test.texts] == [int(g) for g in s.test.groups]


def test_group_column_missing_or_blank_is_one_line(tmp_path):
    folder = folder_with(tmp_path, train=GROUPED, validation=GROUPED[:8], test=ROWS)
    with pytest.raises(UserError, match=r"split 'test' .* has no column 'template' .*set data.group_column"):
        load_splits(DataConfig(source=str(folder), group_column="template"))
    blank = [dict(r, template=" ") if i == 3 else r for i, r in enumerate(GROUPED)]
    folder = folder_with(tmp_path, train=blank, validation=GROUPED[:8], test=GROUPED)
    with pytest.raises(UserError, match=r"row 4 has no group id in column 'template'") as e:
        load_splits(DataConfig(source=str(folder), group_column="template"))
    assert "\n" not in str(e.value)
    listed = [dict(r, template=[1, 2]) if i == 5 else r for i, r in enumerate(GROUPED)]  # not a single id
    folder = folder_with(tmp_path, train=listed, validation=GROUPED[:8], test=GROUPED)
    with pytest.raises(UserError, match=r"row 6 has no group id in column 'template'"):
        load_splits(DataConfig(source=str(folder), group_column="template"))


def test_demo_data_names_its_templates():
    from distill_lora.config import load_config

    cfg = load_config("demo")
    s = load_splits(cfg.data)
    assert cfg.data.group_column == "template"
    assert len(s.test) == 140 and len(set(s.test.groups)) == 14  # 14 templates x 10 fills
    assert all(s.test.groups.count(g) == 10 for g in set(s.test.groups))
    # a template belongs to one split only
    assert not set(s.test.groups) & set(s.train.groups) and not set(s.test.groups) & set(s.validation.groups)
