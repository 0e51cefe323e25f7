"""Data: read the splits (local folder or Hub), check them, limit them, tokenise them once.

Text rule: strings are kept as they are; numbers are cast to text (123 and 123.0 → "123", the
default Hub data set has a few numeric "texts"); null, NaN or blank texts are an error naming
the row, or are dropped (and counted) with `data.null_text: drop`. Anything else is an error.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import itertools
import json
import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from distill_lora.config import DataConfig, label_key
from distill_lora.errors import UserError
from distill_lora.train.sources import hub_reachable, hub_unreachable_message, is_offline, resolve

SPLITS = ("train", "validation", "test")
MISSING_SLICE = "(missing)"  # the slice of a row whose slice value is absent, null or blank
SPLIT_FILE_NAMES = {"train": ("train",), "validation": ("validation", "valid", "val", "dev"), "test": ("test",)}
EXTENSIONS = ("jsonl", "json", "csv", "parquet")


@dataclass
class Split:
    texts: list[str]
    labels: list[int]
    groups: list[str] | None = None  # data.group_column of each text (near-duplicates share one); None when unset
    slices: list[str] | None = None  # data.slice_column of each text; None when unset or the split lacks the column

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Splits:
    train: Split
    validation: Split
    test: Split
    notes: list[str] = field(default_factory=list)  # what was done to the data, said to the user
    fingerprint: dict = field(default_factory=dict)  # file → sha256, for provenance and stage hashes

    def __getitem__(self, name: str) -> Split:
        return getattr(self, name)


# ---------------------------------------------------------------- reading rows


def read_rows(path: Path) -> list[dict]:
    """Every row of a split file (jsonl, json, csv, parquet), each a dict."""
    return list(iter_rows(path))


def iter_rows(path: Path) -> Iterator[dict]:
    """The rows of a split file, one at a time: a caller that stops early (validate, which needs only a file's first
    rows) reads no further into a jsonl, csv or parquet file than that. A .json array is read whole."""
    suffix = path.suffix.lower().lstrip(".")
    try:
        if suffix == "jsonl" or suffix == "json":
            with path.open(encoding="utf-8") as fh:
                lines = fh
                if suffix == "json":
                    text = fh.read()
                    if text.lstrip().startswith("["):
                        yield from _objects(json.loads(text), path)
                        return
                    lines = io.StringIO(text)  # a .json file that is not an array is read as JSON lines
                for lineno, line in enumerate(lines, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise UserError(
                            f"data: {path} line {lineno} is not valid JSON ({e.msg}); fix or remove that line"
                        ) from None
                    yield from _objects([row], path)
        elif suffix == "csv":
            with path.open(newline="", encoding="utf-8") as fh:
                yield from csv.DictReader(fh)
        elif suffix == "parquet":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches():
                yield from batch.to_pylist()
        else:
            raise UserError(f"data: {path} has an unsupported format; use one of {', '.join(EXTENSIONS)}")
    except UnicodeDecodeError:
        raise UserError(f"data: {path} is not UTF-8 text; re-save it as UTF-8") from None
    except (OSError, ValueError) as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"data: cannot read {path}: {str(e).splitlines()[0]}") from None


def _objects(rows: list, path: Path) -> list[dict]:
    if not all(isinstance(r, dict) for r in rows):
        raise UserError(f"data: {path} must hold one object per row, with text and label fields")
    return rows


def _find_split_file(folder: Path, split: str) -> Path | None:
    for name in SPLIT_FILE_NAMES[split]:
        for ext in EXTENSIONS:
            path = folder / f"{name}.{ext}"
            if path.exists():
                return path
    return None


def as_text(value):
    """Apply the text rule; None means 'no text'."""
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, bool) or value is None:
        return None if value is None else False
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else str(value)
    return False  # a list, a dict…: not a text


def _as_label(value, cfg: DataConfig):
    """The class index of a raw label: through data.label_map first (any spelling of a key: 1, "1", true,
    "hate"), else an integer 0..C-1 given as a number or a numeric string; None when neither."""
    if cfg.label_map and value is not None and not (isinstance(value, float) and math.isnan(value)):
        key = label_key(value) if isinstance(value, (str, int, float)) else None
        if key in cfg.label_map:
            return cfg.label_map[key]
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(cfg.label_names):
        return value
    return None


def _map_example(raw) -> str:
    try:
        return json.dumps(label_key(raw))
    except UserError:
        return '"hate"'


COLUMN_ROWS = 100  # the text, label and group columns must show up within a split's first this many rows


def column_problems(rows: Iterable[dict], cfg: DataConfig, where: str, scored: bool) -> list[tuple[str, str]]:
    """(config key, message) for each data.*_column that the split `where` lacks, [] when it has them all: the
    one check of the columns, made by the loader and by `validate`. The text, label and group columns must
    appear within the first COLUMN_ROWS rows; the slice column, asked only of the split the report scores
    (`scored`), in any row (rows without it are the slice "(missing)"). `rows` may be read lazily (iter_rows):
    past the first rows, only a slice column not found in them makes this read on."""
    rows = iter(rows)
    head = list(itertools.islice(rows, COLUMN_ROWS))
    if not head:
        return [("data.source", f"data: split {where} is empty; every split needs examples")]
    columns = list(dict.fromkeys(str(k) for r in head for k in r))
    wanted = {"text_column": cfg.text_column, "label_column": cfg.label_column, "group_column": cfg.group_column}
    problems = []
    for key, col in wanted.items():
        if col is not None and not any(col in r for r in head):
            problems.append((f"data.{key}", _no_column(where, col, columns, f"set data.{key} to one of them")))
    slice_col = cfg.slice_column
    if scored and slice_col is not None and not any(slice_col in r for r in itertools.chain(head, rows)):
        fix = "set data.slice_column (--slice-column) to one of them, or leave it unset"
        problems.append(("data.slice_column", _no_column(where, slice_col, columns, fix)))
    return problems


def _no_column(where: str, col: str, columns: list[str], fix: str) -> str:
    close = difflib.get_close_matches(col, columns, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"data: split {where} has no column '{col}' (columns: {', '.join(columns)}); {fix}{hint}"


def _check_rows(rows: list[dict], cfg: DataConfig, where: str, notes: list[str], scored: bool) -> Split:
    """Validate columns, texts and labels; `where` names the split and file in messages; `scored`: the split the
    report scores, which must have data.slice_column when it is set."""
    problems = column_problems(rows, cfg, where, scored)
    if problems:
        raise UserError(problems[0][1])
    texts, labels, groups, slices, dropped = [], [], [], [], 0
    n_classes = len(cfg.label_names)
    # a split may lack the slice column (only the scored split needs it: column_problems)
    has_slices = cfg.slice_column is not None and any(cfg.slice_column in r for r in rows)
    for i, row in enumerate(rows, 1):
        text = as_text(row.get(cfg.text_column))
        if text is False:
            raise UserError(
                f"data: split {where} row {i} has a {type(row.get(cfg.text_column)).__name__} "
                f"as text; texts must be strings or numbers"
            )
        if text is None:
            if cfg.null_text == "drop":
                dropped += 1
                continue
            raise UserError(
                f"data: split {where} row {i} has no text (null or blank); remove it or set data.null_text: drop"
            )
        raw_label = row.get(cfg.label_column)
        label = _as_label(raw_label, cfg)
        if label is None:
            raise UserError(
                f"data: split {where} row {i} has label {raw_label!r}, outside the label set "
                f"0..{n_classes - 1} ({', '.join(cfg.label_names)}); fix the data or map it with "
                f"data.label_map, e.g. {{{_map_example(raw_label)}: 1}}"
            )
        texts.append(text)
        labels.append(label)
        if cfg.group_column is not None:
            groups.append(_as_group(row.get(cfg.group_column), cfg.group_column, where, i))
        if has_slices:
            slices.append(_as_slice(row.get(cfg.slice_column)))
    if dropped:
        notes.append(f"{where}: dropped {dropped} rows with null or blank text (data.null_text: drop)")
    if not labels:
        raise UserError(f"data: split {where} is empty after dropping rows without text")
    return Split(texts, labels, groups if cfg.group_column is not None else None, slices if has_slices else None)


def _as_group(value, column: str, where: str, row: int) -> str:
    """A group id as text: 3 and "3" are one group; a row without one would silently be a group of its own."""
    group = as_text(value)
    if not group:
        raise UserError(
            f"data: split {where} row {row} has no group id in column '{column}' (data.group_column); "
            "give every row one, or set data.group_column: null"
        )
    return group


def _as_slice(value) -> str:
    """A slice name as text (3 and "3" are one slice); absent, null, NaN or blank values are the slice
    "(missing)", counted like any other rather than dropped."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = as_text(value)
    if text is None:
        return MISSING_SLICE
    return text.strip() if text is not False else json.dumps(value, sort_keys=True)


# ---------------------------------------------------------------- splitting and limiting


def _stratified_pick(labels: list[int], n: int, seed: int) -> list[int]:
    """Indices (sorted) of a stratified sample of size n."""
    from sklearn.model_selection import train_test_split

    idx = list(range(len(labels)))
    try:
        picked, _ = train_test_split(idx, train_size=n, stratify=labels, random_state=seed)
    except ValueError:  # a class too small to stratify: fall back to a plain seeded sample
        picked, _ = train_test_split(idx, train_size=n, random_state=seed)
    return sorted(picked)


def _subset(split: Split, idx: list[int]) -> Split:
    groups = None if split.groups is None else [split.groups[i] for i in idx]
    slices = None if split.slices is None else [split.slices[i] for i in idx]
    return Split([split.texts[i] for i in idx], [split.labels[i] for i in idx], groups, slices)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def split_files(cfg: DataConfig, folder: str, wanted=SPLITS, required=("train", "test")) -> dict[str, Path | None]:
    """The file of each wanted split in the local data folder (None when absent); an error when a required one is
    missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(
            f"data.source '{cfg.source}' must be a folder holding train/validation/test files ({', '.join(EXTENSIONS)})"
        )
    files = {s: _find_split_file(folder, s) for s in wanted}
    for s in required:
        if files[s] is None:
            raise UserError(
                f"data: no {s} file in {folder} (looked for {'/'.join(SPLIT_FILE_NAMES[s])}.jsonl/.json/.csv/.parquet)"
            )
    return files


def split_where(split: str, source) -> str:
    """How messages name a split: its name and its file (or Hub id)."""
    return f"'{split}' ({source})"


def _load_raw(cfg: DataConfig, wanted=SPLITS, required=("train", "test")) -> tuple[dict, dict, dict]:
    """rows of each wanted split (None when absent), a fingerprint, and where each split came from."""
    ref, local = resolve(cfg.source, "data.source")
    if local:
        files = split_files(cfg, ref, wanted, required)
        rows = {s: read_rows(p) if p else None for s, p in files.items()}
        fingerprint = {str(p): _file_sha256(p) for p in files.values() if p}
        return rows, fingerprint, {s: split_where(s, p) for s, p in files.items()}
    ds = _load_hub_dataset(ref)
    names = {s: next((n for n in SPLIT_FILE_NAMES[s] if n in ds), None) for s in wanted}
    rows = {s: ds[n].to_list() if n else None for s, n in names.items()}
    if any(rows[s] is None for s in required):
        raise UserError(f"data.source '{ref}' has splits {list(ds)}; it needs {' and '.join(required)}")
    fingerprint = {ref: {n: ds[n]._fingerprint for n in ds}}
    return rows, fingerprint, {s: split_where(s, ref) for s in wanted}


def _load_hub_dataset(ref: str):
    """A Hub data set; offline (HF_HUB_OFFLINE=1), the copy in datasets' local cache, as models try theirs."""
    if not is_offline() and not hub_reachable():
        raise UserError(
            hub_unreachable_message(ref, "data.source") + "; if it was loaded on this machine before, "
            "set HF_HUB_OFFLINE=1 to use the cached copy"
        )
    import datasets

    try:
        return datasets.load_dataset(ref)
    except Exception as e:  # noqa: BLE001 - any Hub or cache failure becomes one clear line
        if is_offline():
            raise UserError(hub_unreachable_message(ref, "data.source")) from None
        raise UserError(
            f"data.source '{ref}': could not load it from the Hub ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from None


def load_split(cfg: DataConfig, split: str) -> tuple[Split, list[str]]:
    """One split of a data set, checked and limited, and notes on it: scoring another data set (evaluate) reads
    only the split it scores, so a test-only set (a functional test suite) needs no train file."""
    rows, _, where = _load_raw(cfg, wanted=(split,), required=(split,))
    notes: list[str] = []
    data = _check_rows(rows[split], cfg, where[split], notes, scored=True)
    n = getattr(cfg.limit, split)
    if n is not None and n < len(data):
        data = _subset(data, _stratified_pick(data.labels, n, cfg.split_seed))
        notes.append(f"{split}: limited to {n} examples (stratified, seed {cfg.split_seed})")
    return data, notes


def load_splits(cfg: DataConfig) -> Splits:
    """Read, validate, carve a validation split if missing, apply limits (seeded by cfg.split_seed)."""
    seed = cfg.split_seed
    rows, fingerprint, where = _load_raw(cfg)
    notes: list[str] = []
    checked = {s: _check_rows(r, cfg, where[s], notes, scored=s == "test") for s, r in rows.items() if r is not None}
    if "validation" not in checked:
        train = checked["train"]
        if train.groups is None:
            from sklearn.model_selection import train_test_split

            idx = list(range(len(train)))
            try:
                tr, va = train_test_split(
                    idx, test_size=cfg.validation_fraction, stratify=train.labels, random_state=seed
                )
            except ValueError:
                raise UserError(
                    f"data: no validation split, and train ({len(train)} rows) is too small to carve "
                    f"{cfg.validation_fraction:.0%} from it; add a validation file"
                ) from None
            grouped = ""
        else:
            tr, va = _grouped_carve(train, cfg)
            grouped = (
                f", grouped by data.group_column '{cfg.group_column}': "
                f"{len({train.groups[i] for i in va})} whole groups ({len(va) / len(train):.0%} of train) "
                "→ validation, none of them in train"
            )
        checked["train"], checked["validation"] = _subset(train, sorted(tr)), _subset(train, sorted(va))
        notes.append(
            f"no validation split: carved {cfg.validation_fraction:.0%} of train "
            f"(stratified, seed {seed}) → {len(va)} examples{grouped}"
        )
    if cfg.drop_duplicates:
        _drop_duplicates(checked, notes)
    for s in SPLITS:
        n = getattr(cfg.limit, s)
        if n is not None and n < len(checked[s]):
            checked[s] = _subset(checked[s], _stratified_pick(checked[s].labels, n, seed))
            notes.append(f"{s}: limited to {n} examples (stratified, seed {seed})")
    for s in SPLITS:  # a class missing from a split leaves training blind to it or its test metrics undefined
        missing = [c for c in range(len(cfg.label_names)) if c not in set(checked[s].labels)]
        if missing:
            raise UserError(
                f"data: split {s} has no example of class {missing[0]} ({cfg.label_names[missing[0]]!r}); "
                "every class needs examples in every split: check data.label_names, data.label_map "
                "and data.limit"
            )
    return Splits(checked["train"], checked["validation"], checked["test"], notes, fingerprint)


def _grouped_carve(train: Split, cfg: DataConfig) -> tuple[list[int], list[int]]:
    """Train and validation indices with every group on one side only: near-duplicates of one group on both
    sides would let validation reward memorising them. One fold of a stratified group k-fold with
    k = round(1 / validation_fraction), so validation gets about that share; the first fold (in seeded order)
    that leaves every class on both sides."""
    from sklearn.model_selection import StratifiedGroupKFold

    k = max(2, round(1 / cfg.validation_fraction))
    n_groups = len(set(train.groups))
    n_classes = len(set(train.labels))
    if n_groups >= k:
        folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=cfg.split_seed)
        with warnings.catch_warnings():  # "a class has fewer members than n_splits": checked below, per fold
            warnings.simplefilter("ignore", UserWarning)
            for tr, va in folds.split(train.texts, train.labels, groups=train.groups):
                if all(len({train.labels[i] for i in part}) == n_classes for part in (tr, va)):
                    return tr.tolist(), va.tolist()
    raise UserError(
        f"data: no validation split, and train ({len(train)} rows in {n_groups} groups of data.group_column) "
        f"is too small to carve {cfg.validation_fraction:.0%} from it with whole groups and every class on "
        "both sides; add a validation file"
    )


def _drop_duplicates(splits: dict[str, Split], notes: list[str]) -> None:
    """Keep the first copy of a text within a split; drop train/validation texts found in a later split."""
    later: set[str] = set()
    for s in reversed(SPLITS):  # test first: it keeps all its distinct texts
        seen, keep = set(), []
        for i, text in enumerate(splits[s].texts):
            if text not in seen and text not in later:
                keep.append(i)
            seen.add(text)
        dropped = len(splits[s]) - len(keep)
        if dropped:
            splits[s] = _subset(splits[s], keep)
            notes.append(
                f"{s}: dropped {dropped} duplicate texts or texts also in a later split (data.drop_duplicates)"
            )
        later |= seen


def overlap_summary(splits: Splits) -> dict:
    """Duplicate texts within each split and texts shared across splits (counted, never silently fixed); with
    data.group_column, also the groups found in two splits and up to 3 of their ids per pair."""
    out = {f"duplicates_in_{s}": len(splits[s].texts) - len(set(splits[s].texts)) for s in SPLITS}
    sets = {s: set(splits[s].texts) for s in SPLITS}
    out["shared_train_validation"] = len(sets["train"] & sets["validation"])
    out["shared_train_test"] = len(sets["train"] & sets["test"])
    out["shared_validation_test"] = len(sets["validation"] & sets["test"])
    conflicting = 0
    for s in SPLITS:
        labels_of: dict[str, set] = {}
        for text, y in zip(splits[s].texts, splits[s].labels):
            labels_of.setdefault(text, set()).add(y)
        conflicting += sum(len(v) > 1 for v in labels_of.values())
    out["duplicates_with_clashing_labels"] = conflicting
    if all(splits[s].groups is not None for s in SPLITS):
        # a group (data.group_column) holds near-duplicates: one in two splits leaks them across, even when
        # no text is shared exactly
        groups = {s: set(splits[s].groups) for s in SPLITS}
        out["shared_group_examples"] = {}
        for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
            shared = sorted(groups[a] & groups[b])
            out[f"shared_groups_{a}_{b}"] = len(shared)
            out["shared_group_examples"][f"{a}_{b}"] = shared[:3]
    return out


# ---------------------------------------------------------------- tokenised tensors


class Encoded(torch.utils.data.Dataset):
    """One split, tokenised once: token ids (unpadded), labels, and each example's index."""

    def __init__(self, split: Split, tokenizer, max_length: int):
        ids = tokenizer(split.texts, truncation=False)["input_ids"]
        self.full_lengths = [len(x) for x in ids]  # before truncation, to report what max_length cuts off
        long = [i for i, n in enumerate(self.full_lengths) if n > max_length]
        if long:  # only the long ones are tokenised again, with the tokenizer's own truncation
            cut = tokenizer([split.texts[i] for i in long], truncation=True, max_length=max_length)["input_ids"]
            for i, x in zip(long, cut):
                ids[i] = x
        self.input_ids = ids
        self.labels = split.labels
        self.n_truncated = sum(n > max_length for n in self.full_lengths)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.input_ids[i], "label": self.labels[i], "idx": i}


def make_collate(pad_id: int):
    """Pad each batch to its own longest example (dynamic padding)."""

    def collate(items: list[dict]) -> dict:
        width = max(len(it["input_ids"]) for it in items)
        ids = torch.full((len(items), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, it in enumerate(items):
            n = len(it["input_ids"])
            ids[row, :n] = torch.tensor(it["input_ids"])
            mask[row, :n] = 1
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "labels": torch.tensor([it["label"] for it in items]),
            "idx": torch.tensor([it["idx"] for it in items]),
        }

    return collate
