"""The meaning of a stage id (stage_ids) and the record every stage writes (records.StageRecord)."""

import pytest

from distill_lora.records import StageRecord
from distill_lora.stage_ids import (
    ensemble_id,
    int8_id,
    int8_sources,
    is_derived,
    is_lora,
    is_student,
    kind_of,
    student_id,
    train_section,
)


@pytest.mark.parametrize(
    "stage, kind, section",
    [
        ("teacher", "teacher", "teacher"),
        ("student-odd", "student", "distill"),
        ("student-1-4-7", "student", "distill"),
        ("lora-student", "lora", "lora"),
        ("lora-teacher", "lora", "lora"),
        ("teacher-int8", "int8", None),
        ("student-even-int8", "int8", None),
        ("ensemble-odd+even", "ensemble", None),
        ("mine", "other", None),
    ],
)
def test_kind_and_section(stage, kind, section):
    assert kind_of(stage).kind == kind
    assert kind_of(stage).section == section


def test_ids_round_trip():
    assert int8_id("student-odd") == "student-odd-int8"
    assert kind_of(int8_id("student-odd")).quantized_from == "student-odd"
    assert train_section("student-odd-int8") == "distill" and train_section("teacher-int8") == "teacher"
    members = ("student-odd", "student-even", "lora-student")
    assert ensemble_id(members) == "ensemble-odd+even+lora-student"  # the name reports have always used
    assert kind_of(ensemble_id(members)).members == members
    assert student_id("first") == "student-first" and is_student("student-first")


def test_predicates():
    assert not is_student("student-odd-int8")  # an int8 copy is not a distilled student
    assert is_lora("lora-student") and not is_lora("student-odd")
    assert is_derived("teacher-int8") and is_derived("ensemble-odd+even") and not is_derived("teacher")
    assert not is_derived("mine")  # a name from a hand-made results.json counts as a trained model


def test_int8_sources_skip_lora_and_int8():
    assert int8_sources(["teacher", "student-odd", "lora-student", "teacher-int8"]) == ["teacher", "student-odd"]


def test_record_leaves_out_what_does_not_apply():
    r = StageRecord(
        stage="teacher",
        model_type="T",
        test={"accuracy": 1.0},
        wall_time_s=1.0,
        peak_memory_bytes=None,
        peak_memory_kind=None,
        depth=2,
        total_params=10,
        trainable_params=10,
        device="cpu",
    )
    d = r.to_dict()
    # the fields every record has are written even when empty; the optional ones only when set
    assert d["selected_epoch"] is None and d["weights_bytes"] is None and d["validation_history"] == []
    assert "threshold" not in d and "quantized_from" not in d
    r.threshold = 0.4
    assert r.to_dict()["threshold"] == 0.4
