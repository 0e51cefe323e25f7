"""data.slice_column: read per split, blank values in their own slice, kept through limits, clear errors."""

from __future__ import annotations

import pytest
from conftest import write_jsonl

from distill_lora.config import DataConfig, SplitLimits, load_config
from distill_lora.errors import UserError
from distill_lora.train.data import MISSING_SLICE, load_split, load_splits


def _rows(n: int, offset: int = 0) -> list[dict]:
    kinds = ["negation", 3, "3", None, "  ", "counter-speech"]
    rows = [{"text": f"text {offset + i}", "label": i % 2, "kind": kinds[i % len(kinds)]} for i in range(n)]
    del rows[-1]["kind"]  # a row without the key at all
    return rows


def test_slices_read_per_split_missing_values_are_their_own_slice(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"text": f"t {i}", "label": i % 2} for i in range(20)])  # no column
    write_jsonl(tmp_path / "validation.jsonl", _rows(12, 100))
    write_jsonl(tmp_path / "test.jsonl", _rows(12, 200))
    assert load_splits(DataConfig(source=str(tmp_path))).test.slices is None  # unset: no slices
    s = load_splits(DataConfig(source=str(tmp_path), slice_column="kind"))
    assert s.train.slices is None  # a split may lack the column; only the test split needs it
    # 3 and "3" are one slice; null, blank and absent values are "(missing)"
    expected = ["negation", "3", "3", MISSING_SLICE, MISSING_SLICE, "counter-speech"] * 2
    expected[-1] = MISSING_SLICE
    assert s.test.slices == expected and s.validation.slices == expected
    limited = load_splits(DataConfig(source=str(tmp_path), slice_column="kind", limit=SplitLimits(test=6))).test
    # a limited split keeps each text's own slice
    assert [expected[int(t.split()[-1]) - 200] for t in limited.texts] == limited.slices


def test_a_missing_slice_column_names_the_columns_that_exist(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", _rows(12))
    write_jsonl(tmp_path / "test.jsonl", [{"text": f"t {i}", "label": i % 2, "template": "x"} for i in range(12)])
    with pytest.raises(UserError, match=r"split 'test' .* has no column 'kind' \(columns: text, label, template\)"):
        load_splits(DataConfig(source=str(tmp_path), slice_column="kind"))
    with pytest.raises(UserError, match=r"has no column 'kind' \(columns: text, label, template\); set data"):
        load_split(DataConfig(source=str(tmp_path), slice_column="kind"), "test")


def test_a_slice_column_that_is_the_text_or_label_column_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  slice_column: label\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"'data.slice_column' is 'label', the text or label column"):
        load_config(str(path))
