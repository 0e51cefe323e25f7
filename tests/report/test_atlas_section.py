"""The atlas section (report/atlas.py) from given numbers: the front, the validation ranking, the sentences."""

from distill_lora.metrics import metrics_from_predictions
from distill_lora.report import atlas
from distill_lora.report.summary import summarise

NAMES = ["not toxic", "toxic"]
LABELS = [0] * 30 + [1] * 30


def test_the_front_keeps_exactly_the_models_nothing_beats_on_both_axes():
    points = {
        "teacher": (0.95, 10.0),  # best quality
        "a": (0.90, 5.0),  # on the front: only the slower teacher is better
        "b": (0.90, 6.0),  # as good as a, slower: dominated
        "c": (0.80, 2.0),  # fastest
        "d": (0.70, 2.0),  # as fast as c, worse: dominated
        "e": (0.85, 4.0),  # between a and c on both axes: on the front
        "f": (0.85, 4.0),  # a tie with e: neither dominates the other
    }
    assert atlas.pareto_front(points) == ["teacher", "a", "c", "e", "f"]


def _run(name, wrong, val_f1, latency, **extra):
    pred = [1 - y if i < wrong else y for i, y in enumerate(LABELS)]
    return {
        "stage": name,
        "model_type": f"type of {name}",
        "depth": 6 if name == "teacher" else 3,
        "test": metrics_from_predictions(LABELS, pred, [float(p) for p in pred], NAMES),
        "validation_history": [{"val_macro_f1": val_f1 - 0.1}, {"val_macro_f1": val_f1}],
        "selected_epoch": 2,
        "train_loss": 0.1,
        "train_total_loss": 0.1,
        "wall_time_s": 10.0,
        "samples_per_s": 5.0,
        "total_params": 1_000_000,
        "trainable_params": 1_000_000,
        "inference": {"latency_ms_batch1": latency, "throughput_batch64": 100.0},
        "predictions": {"pred": pred, "prob_positive": [float(p) for p in pred]},
        **extra,
    }


def _result(seed_runs: dict) -> dict:
    return {
        "seeds": list(seed_runs),
        "label_names": NAMES,
        "test_labels": LABELS,
        "per_seed": {str(s): {r["stage"]: r for r in runs} for s, runs in seed_runs.items()},
    }


def _grid(seed: int, shift: float = 0.0):
    """Teacher, four students (two layer choices × two recipes) and a LoRA student, with given validation scores."""
    return [
        _run("teacher", 0, 0.95 + shift, 8.0),
        # one architecture, timed with noise: 4.2, 4.0, 3.9, 3.9 ms
        _run("student-odd.ce", 12, 0.80 + shift, 4.2, teacher_layers=[1, 3, 5], recipe="ce"),
        _run("student-odd.kd", 2, 0.90 + shift, 4.0, teacher_layers=[1, 3, 5], recipe="kd"),
        # better on test than odd.kd, worse on validation: the ranking must follow validation
        _run("student-last.kd", 1, 0.85 + shift, 3.9, teacher_layers=[4, 5, 6], recipe="kd"),
        _run("student-last.ce", 20, 0.70 + shift, 3.9, teacher_layers=[4, 5, 6], recipe="ce"),
        _run("lora-student", 25, 0.60 + shift, 4.5, teacher_layers=[1, 3, 5], total_params=1_010_000),
    ]


def test_ranking_uses_validation_and_the_front_uses_the_shown_latency():
    result = _result({0: _grid(0), 1: _grid(1, shift=0.02)})
    summary = summarise(result, 50, 0)
    table = atlas.atlas_table(result, summary)
    ranked = [r["stage"] for r in table["rows"]]
    assert ranked == [
        "teacher",
        "student-odd.kd",
        "student-last.kd",
        "student-odd.ce",
        "student-last.ce",
        "lora-student",
    ]
    assert table["rows"][1]["val_macro_f1"] == (0.90 + 0.92) / 2
    assert abs(table["rows"][1]["val_sd"] - 0.0141421) < 1e-6
    # the students are one architecture: one cost, their mean (not last.kd's lucky 3.9 ms), so only the best of
    # them is on the front, with the (slower, better) teacher
    assert {r["stage"]: r["cost"] for r in table["rows"]}["student-last.kd"] == (4.2 + 4.0 + 3.9 + 3.9) / 4
    assert table["front"] == ["teacher", "student-odd.kd"]
    assert table["timed"] and table["cost"].startswith("CPU latency")


def test_sentences_name_the_validation_winners_and_their_test_verdicts():
    from distill_lora.report.verdicts import compare_pairs

    result = _result({0: _grid(0), 1: _grid(1, shift=0.02)})
    summary = summarise(result, 50, 0)
    pairs = compare_pairs(result, 0.05, 50, 0)
    table = atlas.atlas_table(result, summary)
    text = "\n".join(atlas.atlas_section(result, summary, pairs, table, 3))
    assert "## Atlas: which model to ship" in text
    assert "best of 6 tries" in text
    odd = "type of student-odd.kd [student-odd.kd] is best on validation over"
    assert f"Which layers (recipe kd): {odd} student-last.kd (0.9100 vs 0.8600)" in text
    assert f"Which recipe (same layers): {odd} student-odd.ce (0.9100 vs 0.8100)" in text
    assert f"Distil or adapt (same depth): {odd} lora-student (0.9100 vs 0.6100)" in text
    # every sentence quotes the test verdict of its pair, whatever it is
    for line in text.splitlines():
        if line.startswith("- Which") or line.startswith("- Distil"):
            assert "on test," in line and ("significantly better" in line or "do not read it as a ranking" in line)


def test_a_run_with_the_assignments_two_students_has_no_atlas_section():
    runs = [r for r in _grid(0) if r["stage"] in ("teacher", "student-odd.ce", "student-odd.kd", "lora-student")]
    result = _result({0: runs})
    assert atlas.atlas_table(result, summarise(result, 20, 0)) is None


def test_the_front_plot_is_drawn_for_an_atlas_and_shown_in_its_section(tmp_path):
    from PIL import Image

    from distill_lora.report.plots import FRONT, atlas_front

    result = _result({0: _grid(0), 1: _grid(1, shift=0.02)})
    summary = summarise(result, 50, 0)
    table = atlas.atlas_table(result, summary)
    assert atlas_front(table, tmp_path) == [FRONT]
    with Image.open(tmp_path / FRONT) as image:
        assert image.format == "PNG" and image.width > 600
    assert atlas_front(None, tmp_path / "none") == []  # no atlas, no plot
    text = "\n".join(atlas.atlas_section(result, summary, [], table, 3, plot=True))
    assert f"](plots/{FRONT})" in text
    assert f"](plots/{FRONT})" not in "\n".join(atlas.atlas_section(result, summary, [], table, 3))
