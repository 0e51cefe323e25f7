"""The training-speed benchmark: the CLI end to end on a tiny shape, the cached-teacher loss, each baseline.

No timed assertions: this machine's timings are noise; only the plumbing and the loss are checked.
"""

import json
import math
import random

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification
from typer.testing import CliRunner

from distill_lora.cli import app
from distill_lora.config import DistillConfig
from distill_lora.train import bench, distributed
from distill_lora.train.data import make_collate
from distill_lora.train.losses import distillation_loss

TINY_SHAPE = dict(num_hidden_layers=4, hidden_size=32, num_attention_heads=2, intermediate_size=48)
runner = CliRunner()


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine two threads wait on each other and steps run ~20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_teacher(vocab_size: int = 100):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=vocab_size, num_labels=2, max_position_embeddings=64, **TINY_SHAPE)
    return BertForSequenceClassification(config).eval()


def tiny_pool(n: int = 64, vocab_size: int = 100) -> bench.Pretokenized:
    rng = random.Random(0)
    ids = [[2] + [rng.randrange(5, vocab_size) for _ in range(rng.randint(1, 20))] + [3] for _ in range(n)]
    return bench.Pretokenized(ids, [rng.randrange(2) for _ in range(n)])


def test_bench_quick_cli_writes_every_step_type_and_baseline(tmp_path, monkeypatch):
    # the real --quick shape takes about a minute; a tiny shape checks the same code paths in seconds
    monkeypatch.setitem(bench.SHAPES, "quick", TINY_SHAPE)
    out = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", "--quick", "--steps", "1", "--batch-sizes", "4,8", "--output", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["device"] and report["device"] in result.output
    rows = {(r["step_type"], r["runner"], r["batch_size"]): r for r in report["results"]}
    for step_type in bench.STEP_TYPES:
        assert rows[(step_type, "notebook", bench.NOTEBOOK_BATCH)]["samples_per_s"] > 0
        for bs in (4, 8):
            grouped = rows[(step_type, "hf_grouped", bs)]["samples_per_s"]
            for runner_name in ("ours", "hf_trainer", "hf_grouped"):
                r = rows[(step_type, runner_name, bs)]
                assert r["samples_per_s"] > 0 and r["tokens_per_s"] > r["samples_per_s"], r
                assert r["peak_memory_bytes"] > 0 and r["vs_notebook"] > 0
                assert r["vs_hf_grouped"] == pytest.approx(r["samples_per_s"] / grouped)  # the careful baseline
                assert r["mfu"] is None  # CPU: no peak-FLOPs figure
    assert rows[("lora-student", "ours", 4)]["samples_per_s"] > 0  # measured for the projection
    ckpt = rows[("teacher", "ours+ckpt", 4)]  # train.gradient_checkpointing beside the plain teacher row
    assert ckpt["samples_per_s"] > 0 and ckpt["peak_memory_bytes"] > 0 and "ours+ckpt" in result.output
    projection = report["projection"]
    assert projection["batch_size"] == 4 and set(projection["stages"]) >= {
        "teacher",
        "student-odd",
        "student-even",
        "lora-student",
        "lora-teacher",
    }
    assert projection["compile_warmup_s"] == 0 and 0 < projection["total_s"] < math.inf
    assert "MFU n/a: CPU" in report["mfu_note"] and "Projected wall time" in result.output
    assert "hf_grouped" in result.output and "× HF grouped" in result.output
    assert report["shape"]["student_layers"] == [1, 3]


def test_bench_bad_options_are_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    for args, message in (
        (["--batch-sizes", "32,x"], "--batch-sizes"),
        (["--steps", "0"], "--steps"),
        (["--output", str(tmp_path / "missing" / "b.json")], "--output"),
        (["--texts", str(tmp_path / "none.jsonl")], "--texts"),
        (["--tokenizer", str(tmp_path / "empty")], "--tokenizer"),
    ):
        result = runner.invoke(app, ["bench", "--quick", *args])
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
        assert result.output.lstrip().startswith("error:")


def test_cached_teacher_logits_give_the_live_teacher_loss():
    teacher, pool = tiny_teacher(), tiny_pool(40)
    torch.nn.init.normal_(teacher.classifier.weight, std=1.0)  # logits far enough from 0 for KL and cosine to matter
    student = bench.make_student(teacher, bench.student_layers(teacher)).eval()  # dropout off: same forward twice
    accelerator = distributed.make_accelerator("fp32")
    cached_loss_fn = bench.cached_distill_loss(teacher, pool, accelerator, pad_id=0)  # one pass, batch 64
    batch = make_collate(0)([pool[i] for i in (3, 8, 11, 17, 30, 39)])  # padded to this batch's own width
    with torch.no_grad():
        cached, cached_parts = cached_loss_fn(student, batch)
        teacher_logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        student_logits = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    k = DistillConfig()
    live, live_parts = distillation_loss(
        student_logits,
        teacher_logits,
        batch["labels"],
        temperature=k.temperature,
        w_ce=k.w_ce,
        w_kl=k.w_kl,
        w_cos=k.w_cos,
    )
    assert float(cached) == pytest.approx(float(live), abs=1e-6)
    for key in ("ce", "kl", "cos"):
        assert float(cached_parts[key]) == pytest.approx(float(live_parts[key]), abs=1e-6)
    assert float(live_parts["kl"]) > 1e-6  # the student differs from the teacher: the comparison means something


@pytest.mark.parametrize("step_type", bench.STEP_TYPES)
def test_notebook_and_hf_trainer_baselines_report_sane_numbers(step_type):
    teacher, pool = tiny_teacher(), tiny_pool()
    notebook = bench.run_notebook(step_type, teacher, pool, steps=2, warmup=1, batch_size=4)
    hf = bench.run_hf_trainer(
        step_type, teacher, pool, batch_size=4, steps=2, warmup=1, tokenizer=bench.padding_tokenizer()
    )
    grouped = bench.run_hf_trainer(
        step_type,
        teacher,
        pool,
        batch_size=4,
        steps=2,
        warmup=1,
        tokenizer=bench.padding_tokenizer(),
        group_by_length=True,
    )
    lengths = [len(x) for x in pool.input_ids]
    for m, runner_name in ((notebook, "notebook"), (hf, "hf_trainer"), (grouped, "hf_grouped")):
        assert m["runner"] == runner_name and m["step_type"] == step_type and m["batch_size"] == 4
        assert 0 < m["samples_per_s"] < 1e6 and math.isfinite(m["samples_per_s"])
        real_per_text = m["tokens_per_s"] / m["samples_per_s"]  # counted over the timed batches
        assert min(lengths) <= real_per_text <= m["fed_tokens_per_text"] <= max(lengths)
        assert m["peak_memory_bytes"] > 0 and m["precision"] == "fp32"  # CPU: no bf16
        assert m["flops_per_token"] > 0
    assert next(teacher.parameters()).device.type == "cpu"  # the shared teacher goes back where it was
    if step_type == "distill":  # a live teacher forward counts 2N on top of the student's 6N
        assert notebook["flops_per_token"] > bench.flops_per_token(bench.model_to_train("distill", teacher), False)


def test_bench_times_your_own_texts_with_your_tokenizer(tiny_bert6, tmp_path):
    from conftest import tiny_texts, write_jsonl
    from transformers import AutoTokenizer

    rows = tiny_texts(30, 5)
    path = write_jsonl(tmp_path / "mine.jsonl", [{"text": r["text"]} for r in rows])  # labels are optional
    pool, tokenizer, source = bench.bench_data(texts=str(path), tokenizer=str(tiny_bert6))
    assert source.startswith("texts (30 texts") and "SYNTHETIC" not in source
    expected = AutoTokenizer.from_pretrained(tiny_bert6)([r["text"] for r in rows], truncation=True, max_length=128)
    assert pool.input_ids == expected["input_ids"] and pool.labels == [0] * 30
    (tmp_path / "bad.jsonl").write_text('{"txt": "no text field"}\n')
    with pytest.raises(bench.UserError, match="text"):
        bench.bench_data(texts=str(tmp_path / "bad.jsonl"), tokenizer=str(tiny_bert6))


def test_ours_counts_the_tokens_of_exactly_its_timed_examples():
    teacher, pool = tiny_teacher(), tiny_pool()
    ours = bench.run_ours("teacher", teacher, pool, batch_size=4, steps=3, warmup=0)
    timed = pool.subset(12, seed=3)  # the timed epoch: every example once
    assert ours["tokens_per_s"] / ours["samples_per_s"] == pytest.approx(timed.mean_tokens)
    # bucketed: one chunk of 12 sorted by length, cut into 3 batches of 4, each padded to its longest
    width = sorted(timed.full_lengths)
    assert ours["fed_tokens_per_text"] == pytest.approx((width[3] + width[7] + width[11]) * 4 / 12)


def test_hf_grouped_row_is_length_grouped_and_pads_less_than_the_defaults():
    """The careful baseline really uses the Trainer's length grouping: on the same data (and seed) it feeds the
    model far fewer padding tokens per text than the Trainer's defaults (random order)."""
    teacher, pool = tiny_teacher(), tiny_pool(200)
    kw = dict(batch_size=4, steps=8, warmup=0, tokenizer=bench.padding_tokenizer())
    defaults = bench.run_hf_trainer("lora", teacher, pool, **kw)
    grouped = bench.run_hf_trainer("lora", teacher, pool, group_by_length=True, **kw)

    def padding(m):  # fed - real tokens per text in the timed steps
        return m["fed_tokens_per_text"] - m["tokens_per_s"] / m["samples_per_s"]

    # measured: 20.25 - 13.75 = 6.5 (defaults) vs 13.0 - 12.31 = 0.69 (32 texts sorted into 8 batches)
    assert padding(grouped) < 1.5 and padding(defaults) > 4


def test_ratios_are_against_the_length_grouped_trainer():
    rows = [
        {
            "step_type": "teacher",
            "runner": r,
            "batch_size": b,
            "samples_per_s": v,
            "tokens_per_s": 1.0,
            "flops_per_token": 1.0,
        }
        for r, b, v in (
            ("notebook", 32, 40.0),
            ("ours", 32, 100.0),
            ("hf_trainer", 32, 50.0),
            ("hf_grouped", 32, 80.0),
            ("ours", 64, 150.0),
            ("hf_grouped", 64, 120.0),
        )
    ]
    bench.add_ratios_and_mfu(rows, "cpu")
    by = {(r["runner"], r["batch_size"]): r for r in rows}
    assert by[("ours", 32)]["vs_hf_grouped"] == 100 / 80 and by[("hf_trainer", 32)]["vs_hf_grouped"] == 50 / 80
    assert by[("ours", 64)]["vs_hf_grouped"] == 150 / 120  # the same batch size
    assert by[("ours", 64)]["vs_notebook"] == 150 / 40 and "vs_hf_trainer" not in by[("ours", 32)]
