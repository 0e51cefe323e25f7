"""Group leakage: a carved validation split keeps data.group_column groups whole, and the data summary and the
report's data section count the groups found in two splits."""

import dataclasses

import pytest
from conftest import write_jsonl

from distill_lora.config import DataConfig
from distill_lora.errors import UserError
from distill_lora.report.tables import data_section
from distill_lora.train.data import Split, Splits, load_splits, overlap_summary

# 30 templates x 4 fills; a template's fills share its label, as near-duplicates do (a third are positive)
GROUPED = [
    {"text": f"template {g} fill {j}", "label": int(g % 3 == 0), "template": f"t{g}"}
    for g in range(30)
    for j in range(4)
]
TEST = [{"text": f"test {i}", "label": i % 2, "template": f"test-{i}"} for i in range(6)]


def grouped_folder(tmp_path, train):
    write_jsonl(tmp_path / "train.jsonl", train)  # no validation file: load_splits carves one from train
    write_jsonl(tmp_path / "test.jsonl", TEST)
    return str(tmp_path)


def test_carved_validation_keeps_groups_whole(tmp_path):
    """Mutation tried: carving with the old `train_test_split(idx, test_size=..., stratify=train.labels)` for
    grouped data too (groups ignored) fails here: 24 random texts of 30 groups of 4 share groups with train."""
    cfg = DataConfig(source=grouped_folder(tmp_path, GROUPED), group_column="template", validation_fraction=0.2)
    s = load_splits(cfg)
    assert not set(s.train.groups) & set(s.validation.groups)
    assert len(s.train) + len(s.validation) == len(GROUPED)
    assert 0.1 <= len(s.validation) / len(GROUPED) <= 0.3  # one fold of 5: about validation_fraction
    assert set(s.train.labels) == set(s.validation.labels) == {0, 1}
    # each text keeps its own group id
    assert all(t.split()[1] == g[1:] for t, g in zip(s.validation.texts, s.validation.groups))
    said = (
        f"{len(set(s.validation.groups))} whole groups ({len(s.validation) / len(GROUPED):.0%} of train) → validation"
    )
    assert any("carved 20% of train" in n and said in n for n in s.notes)
    assert load_splits(cfg).validation.texts == s.validation.texts  # seeded
    assert load_splits(dataclasses.replace(cfg, split_seed=1)).validation.texts != s.validation.texts


def test_grouped_carve_too_small_is_one_line(tmp_path):
    # 3 groups cannot give 5 folds; and a class held by one group cannot be on both sides
    few = [r for r in GROUPED if r["template"] in ("t0", "t1", "t2")]
    with pytest.raises(UserError, match=r"too small to carve 20% .* whole groups") as e:
        load_splits(DataConfig(source=grouped_folder(tmp_path, few), group_column="template", validation_fraction=0.2))
    assert "\n" not in str(e.value)
    one_positive_group = [dict(r, label=int(r["template"] == "t0")) for r in GROUPED]
    with pytest.raises(UserError, match="every class on both sides"):
        load_splits(DataConfig(source=grouped_folder(tmp_path, one_positive_group), group_column="template"))


def split_of(groups):
    return Split([f"{g} text {i}" for i, g in enumerate(groups)], [i % 2 for i in range(len(groups))], groups)


def test_overlap_summary_counts_shared_groups():
    splits = Splits(split_of(list("abcde")), split_of(["e", "z"]), split_of(["d", "c", "b", "a", "q"]))
    o = overlap_summary(splits)
    assert o["shared_train_test"] == 0  # no text is shared, yet four groups are
    assert (o["shared_groups_train_validation"], o["shared_groups_train_test"]) == (1, 4)
    assert o["shared_groups_validation_test"] == 0
    assert o["shared_group_examples"] == {
        "train_validation": ["e"],
        "train_test": ["a", "b", "c"],  # at most 3, sorted
        "validation_test": [],
    }
    ungrouped = Splits(*(dataclasses.replace(s, groups=None) for s in (splits.train, splits.validation, splits.test)))
    assert not any("group" in k for k in overlap_summary(ungrouped))


def data_of(overlap):
    split = {
        "n": 10,
        "positive_share": 0.3,
        "truncated_share": 0.0,
        "length_percentiles": {"p50": 5, "p90": 8, "p99": 9, "max": 9},
    }
    text_counts = {
        "duplicates_in_train": 0,
        "duplicates_in_validation": 0,
        "duplicates_in_test": 0,
        "shared_train_validation": 0,
        "shared_train_test": 0,
        "shared_validation_test": 0,
        "duplicates_with_clashing_labels": 0,
    }
    splits = {"train": split, "validation": split, "test": split}
    return {"source": "fixture", "max_length": 16, "splits": splits, "overlap": {**text_counts, **overlap}}


def test_data_section_says_groups_leak():
    leaky = {
        "shared_groups_train_validation": 0,
        "shared_groups_train_test": 4,
        "shared_groups_validation_test": 0,
        "shared_group_examples": {
            "train_validation": [],
            "train_test": ["a", "b|`x`", "c" * 60],
            "validation_test": [],
        },
    }
    text = "\n".join(data_section(data_of(leaky)))
    line = next(x for x in text.splitlines() if x.startswith("Groups (data.group_column)"))
    assert (
        "train and validation: 0; train and test: 4 (e.g. 'a', 'b\\|'x'', '" + "c" * 39 + "…'); validation and test: 0"
        in line
    )
    assert "test scores are optimistic" in line and "model selection" not in line
    clean = {
        **leaky,
        "shared_groups_train_test": 0,
        "shared_group_examples": {k: [] for k in leaky["shared_group_examples"]},
    }
    line = next(x for x in data_section(data_of(clean)) if x.startswith("Groups"))
    assert (
        line
        == "Groups (data.group_column) shared between train and validation: 0; train and test: 0; validation and test: 0."
    )
    selection = {
        **clean,
        "shared_groups_train_validation": 2,
        "shared_group_examples": {**clean["shared_group_examples"], "train_validation": ["p", "q"]},
    }
    line = next(x for x in data_section(data_of(selection)) if x.startswith("Groups"))
    assert "train and validation: 2 (e.g. 'p', 'q')" in line and "model selection (epoch, threshold) optimistic" in line
    assert not any(x.startswith("Groups") for x in data_section(data_of({})))  # old results.json: no line
