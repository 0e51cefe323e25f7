"""Every supported encoder family (train/families.py): exact students, LoRA targets and heads, the whole compare.

Tiny random models of each family are built here from their config classes, each with a tiny tokenizer of the kind
the family ships (WordPiece, byte-level BPE, SentencePiece-style Unigram), never downloaded.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest
import torch
from conftest import FILLER, WORDS_CLEAN, WORDS_TOXIC, tiny_config, tiny_texts
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerFast

from distill_lora.config import DistillConfig, LoraConfig
from distill_lora.errors import UserError
from distill_lora.train import distributed, families, trainer
from distill_lora.train.data import Encoded, Split, make_collate
from distill_lora.train.families import FAMILIES, family_of
from distill_lora.train.layer_specs import resolve_layers
from distill_lora.train.models import add_lora, load_classifier, load_model_config, make_student, pooler_decision
from distill_lora.train.steps import distill_step

DEPTH = 4
SIZE = dict(hidden_size=32, num_hidden_layers=DEPTH, num_attention_heads=2, intermediate_size=48)
WORDS = sorted(set(WORDS_TOXIC + WORDS_CLEAN + FILLER))
CORPUS = [r["text"] for r in tiny_texts(200, 5)] + WORDS


# ---------------------------------------------------------------- tiny tokenizers of each kind


def wordpiece(folder: Path):
    """BERT's kind: WordPiece over a word list, [CLS] text [SEP]."""
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # transformers 5 reads the word list from `vocab` (given as vocab_file it is ignored: every word is [UNK])
    return BertTokenizerFast(vocab=str(folder / "vocab.txt"), do_lower_case=True)


def _fast(tok, specials: dict, cls: str, sep: str):
    """A transformers tokenizer over a `tokenizers` one, adding cls … sep around each text (the first token is what
    every family's head reads)."""
    from tokenizers.processors import TemplateProcessing

    tok.post_processor = TemplateProcessing(
        single=f"{cls} $A {sep}", special_tokens=[(t, tok.token_to_id(t)) for t in (cls, sep)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, **specials)


def byte_bpe(folder: Path, style: str):
    """RoBERTa's kind (<s> text </s>) or ModernBERT's ([CLS] text [SEP]): byte-level BPE trained on the tiny texts."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    names = {
        "roberta": dict(bos_token="<s>", cls_token="<s>", pad_token="<pad>", eos_token="</s>", sep_token="</s>")
        | dict(unk_token="<unk>", mask_token="<mask>"),
        "bert": dict(cls_token="[CLS]", pad_token="[PAD]", sep_token="[SEP]", unk_token="[UNK]", mask_token="[MASK]"),
    }[style]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = list(dict.fromkeys(names.values()))
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False))
    return _fast(tok, names, names["cls_token"], names["sep_token"])


def unigram(folder: Path, style: str):
    """DeBERTa-v2/v3's and XLM-R's kind: a SentencePiece-style Unigram model (▁ marks a word start)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    names = {
        "deberta": dict(cls_token="[CLS]", pad_token="[PAD]", sep_token="[SEP]", unk_token="[UNK]")
        | dict(mask_token="[MASK]", bos_token="[CLS]", eos_token="[SEP]"),
        "xlmr": dict(bos_token="<s>", cls_token="<s>", pad_token="<pad>", eos_token="</s>", sep_token="</s>")
        | dict(unk_token="<unk>", mask_token="<mask>"),
    }[style]
    specials = list(dict.fromkeys(names.values()))
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=150, special_tokens=specials, unk_token=names["unk_token"], show_progress=False
    )
    tok.train_from_iterator(CORPUS, trainer)
    return _fast(tok, names, names["cls_token"], names["sep_token"])


# ---------------------------------------------------------------- tiny models of each family


def _ids(tokenizer) -> dict:
    return dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)


def _configs(tokenizer):
    """config builders by family key, each the family's defaults at the tiny size (dropout as given)."""
    from transformers import (
        BertConfig,
        DebertaV2Config,
        DistilBertConfig,
        ElectraConfig,
        ModernBertConfig,
        RobertaConfig,
        XLMRobertaConfig,
    )

    ids, pos = _ids(tokenizer), dict(max_position_embeddings=64)
    return {
        "bert": lambda: BertConfig(**SIZE, **ids, **pos),
        "roberta": lambda: RobertaConfig(**SIZE, **ids, **pos, bos_token_id=0, eos_token_id=2),
        "xlm-roberta": lambda: XLMRobertaConfig(**SIZE, **ids, **pos, bos_token_id=0, eos_token_id=2),
        "deberta-v2": lambda: DebertaV2Config(  # v3's settings: relative positions in buckets, no absolute ones
            **SIZE,
            **ids,
            **pos,
            relative_attention=True,
            position_buckets=16,
            max_relative_positions=-1,
            pos_att_type=["p2c", "c2p"],
            norm_rel_ebd="layer_norm",
            share_att_key=True,
            position_biased_input=False,
            type_vocab_size=0,
            pooler_hidden_size=32,
        ),
        "electra": lambda: ElectraConfig(**SIZE, **ids, **pos, embedding_size=24),  # ELECTRA projects 24 → 32
        "modernbert": lambda: ModernBertConfig(  # global attention at layers 1 and 4, local (±2 tokens) at 2 and 3
            **SIZE,
            **ids,
            **pos,
            global_attn_every_n_layers=3,
            local_attention=4,
            cls_token_id=tokenizer.cls_token_id,
            sep_token_id=tokenizer.sep_token_id,
            bos_token_id=tokenizer.cls_token_id,
            eos_token_id=tokenizer.sep_token_id,
            classifier_bias=True,
        ),
        "distilbert": lambda: DistilBertConfig(
            dim=32, n_layers=DEPTH, n_heads=2, hidden_dim=48, vocab_size=len(tokenizer), pad_token_id=0, **pos
        ),
    }


TOKENIZERS = {
    "bert": wordpiece,
    "roberta": lambda f: byte_bpe(f, "roberta"),
    "xlm-roberta": lambda f: unigram(f, "xlmr"),
    "deberta-v2": lambda f: unigram(f, "deberta"),
    "electra": wordpiece,
    "modernbert": lambda f: byte_bpe(f, "bert"),
    "distilbert": wordpiece,
}
KINDS = list(TOKENIZERS)


def build_family(folder: Path, kind: str, seed: int = 0) -> Path:
    """A random classifier of `kind` (a model_type) with its tokenizer, saved as a Hugging Face folder."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = TOKENIZERS[kind](folder)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    AutoModelForSequenceClassification.from_config(_configs(tokenizer)[kind]()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def family_folders(tmp_path_factory):
    return {kind: build_family(tmp_path_factory.mktemp(kind), kind) for kind in KINDS}


def teacher_of(folder: Path):
    """Loaded as the pipeline loads a teacher, with trained-looking (non-initial) values in every tensor."""
    model = load_classifier(str(folder), ["not toxic", "toxic"], log=lambda line: None).eval()
    torch.manual_seed(1)
    with torch.no_grad():  # random heads have zero biases and unit norms: make every part distinguishable
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def batch(folder: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    texts = ["you are a stupid idiot", "lovely sunny music festival in the park with all friends so very lovely"]
    enc = tok(texts, padding=True, return_tensors="pt")
    assert (enc["attention_mask"] == 0).any()  # padding in the batch: masks must agree too
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}  # what the pipeline feeds


def layer_params(model, family, i: int) -> dict:
    return dict(model.get_submodule(family.layers)[i].named_parameters())


def part(model, prefix: str) -> dict:
    return {k: v for k, v in model.state_dict().items() if k == prefix or k.startswith(prefix + ".")}


# ---------------------------------------------------------------- the table


def test_each_model_type_has_one_family_and_its_parts_exist(family_folders):
    types = [t for f in FAMILIES for t in f.model_types]
    assert len(types) == len(set(types)) and set(KINDS) == set(types)
    for kind, folder in family_folders.items():
        model = AutoModelForSequenceClassification.from_pretrained(folder)
        family = family_of(model.config)
        assert kind in family.model_types
        names = {n for n, _ in model.named_modules()}
        optional = {"deberta.encoder.conv"}  # DeBERTa-v2 xlarge/xxlarge only (tested below)
        assert {family.embeddings, family.layers, *family.shared} - optional <= names, kind
        assert len(model.get_submodule(family.layers)) == DEPTH == model.config.num_hidden_layers
        assert model.config.to_dict()[family.depth_key] == DEPTH
        assert set(family.lora_targets) <= {n.split(".")[-1] for n in names}, kind
        assert family.pooler is None or family.pooler in names


def test_an_unsupported_family_is_refused_naming_the_supported_ones(tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_layer=2, n_embd=32, n_head=2).save_pretrained(tmp_path)
    with pytest.raises(UserError) as e:
        load_model_config(str(tmp_path))
    said = str(e.value)
    assert "model type 'gpt2' is not a supported encoder family" in said
    for name in ("BERT", "RoBERTa / XLM-R", "DeBERTa-v2/v3", "ELECTRA", "ModernBERT", "DistilBERT", "deberta-v2"):
        assert name in said
    assert families.supported() in said


def test_compare_refuses_an_unsupported_teacher_in_one_line_before_training(tiny_data, tmp_path):
    from conftest import one_error_line
    from transformers import GPT2Config
    from typer.testing import CliRunner

    from distill_lora.cli import app

    GPT2Config(n_layer=2, n_embd=32, n_head=2).save_pretrained(tmp_path / "gpt2")
    cfg = tiny_config(tmp_path, tmp_path / "gpt2", tiny_data)
    result = CliRunner().invoke(app, ["compare", "--config", str(cfg)])
    one_error_line(result, 2, "model type 'gpt2' is not a supported encoder family; supported: BERT (bert)")
    assert not (tmp_path / "run" / "seed-0").exists()


# ---------------------------------------------------------------- students: exact cuts


SPECS = ["odd", "even", "2,3"]  # 2,3: an explicit list; for ModernBERT two local-attention layers


@pytest.mark.parametrize("kind", KINDS)
def test_student_layers_and_shared_parts_are_exact_copies(family_folders, kind):
    teacher = teacher_of(family_folders[kind])
    family = family_of(teacher.config)
    for spec in SPECS:
        layers = resolve_layers(spec, DEPTH)
        student = make_student(teacher, layers)
        assert student.config.num_hidden_layers == len(layers) == len(student.get_submodule(family.layers))
        for i, src in enumerate(layers):
            s, t = layer_params(student, family, i), layer_params(teacher, family, src - 1)
            if i == 0 and kind == "modernbert" and src > 1:
                # ModernBERT's first layer has no pre-attention norm: the teacher layer's attn_norm is left out
                assert {k for k in t if k not in s} == {"attn_norm.weight"}
                t = {k: v for k, v in t.items() if k in s}
            assert s.keys() == t.keys()
            for name in s:
                assert torch.equal(s[name], t[name]), (kind, spec, i, name)
        assert_shared_parts_equal(teacher, student, family)
        # a copy, not shared storage: training the student must not move the teacher
        assert all(
            a.data_ptr() != b.data_ptr() for a, b in zip(student.parameters(), teacher.parameters(), strict=False)
        )


def assert_shared_parts_equal(teacher, student, family):
    """Embeddings, relative positions, head: once, unchanged; and nothing outside the layers is left unlisted."""
    outside = {k for k in teacher.state_dict() if not k.startswith(family.layers + ".")}
    assert outside == {k for prefix in family.shared for k in part(teacher, prefix)}, family.name
    for prefix in family.shared:
        ts, ss = part(teacher, prefix), part(student, prefix)
        assert ts.keys() == ss.keys(), (family.name, prefix)
        assert all(torch.equal(ts[k], ss[k]) for k in ts), (family.name, prefix)


@pytest.mark.parametrize("kind", KINDS)
def test_the_hidden_state_loss_of_an_exact_prefix_student_is_zero(family_folders, kind):
    """A student made of the teacher's first two layers computes exactly what they compute, so the hidden-state term
    is 0 when both sides read the same layers' outputs on the same footing.

    Mutations caught: the student side reading hidden_states[i] for [i + 1] (its embeddings against teacher layer
    1); and, for ModernBERT, the student's last layer read after the final norm while the teacher's layer 2 is
    read before it (no norm in family.final_norm)."""
    teacher = teacher_of(family_folders[kind])
    tokenizer = AutoTokenizer.from_pretrained(family_folders[kind])
    split = Split(texts=["you are a stupid idiot", "lovely sunny music festival in the park"], labels=[1, 0])
    encoded = Encoded(split, tokenizer, max_length=32)
    layers = [1, 2]
    targets = trainer.evaluate(
        teacher, encoded, 2, distributed.make_accelerator("fp32"), tokenizer.pad_token_id, layers
    )
    targets = {"logits": torch.from_numpy(targets["logits"]), "cls": targets["cls"]}
    step = distill_step(targets, DistillConfig(w_hidden=1.0), n_layers=len(layers))
    student = make_student(teacher, layers).eval()
    with torch.no_grad():
        _, parts = step(student, make_collate(tokenizer.pad_token_id)([encoded[0], encoded[1]]))
    assert float(parts["hidden"]) < 1e-5, kind


def test_a_deberta_v2_conv_follows_the_students_first_layer(family_folders):
    """DeBERTa-v2 xlarge/xxlarge convolve after the first layer: a student does so after its own first layer."""
    config = AutoModelForSequenceClassification.from_pretrained(family_folders["deberta-v2"]).config
    config.conv_kernel_size = 3
    torch.manual_seed(0)
    teacher = AutoModelForSequenceClassification.from_config(config).eval()
    assert part(teacher, "deberta.encoder.conv")
    inputs = batch(family_folders["deberta-v2"])
    for spec in SPECS:
        layers = resolve_layers(spec, DEPTH)
        student = make_student(teacher, layers).eval()
        assert_shared_parts_equal(teacher, student, family_of(config))
        with torch.no_grad():
            got = student(**inputs).logits
        torch.testing.assert_close(got, hand_built_forward(teacher, layers, inputs), atol=1e-5, rtol=0)


def test_a_modernbert_student_keeps_each_layers_attention_kind(family_folders):
    teacher = teacher_of(family_folders["modernbert"])
    assert teacher.config.layer_types == ["full_attention", "sliding_attention", "sliding_attention", "full_attention"]
    for spec, kinds in [("odd", ["full", "sliding"]), ("even", ["sliding", "full"]), ("2,3", ["sliding", "sliding"])]:
        student = make_student(teacher, resolve_layers(spec, DEPTH))
        assert student.config.layer_types == [f"{k}_attention" for k in kinds]
        for layer, src in zip(student.model.layers, resolve_layers(spec, DEPTH), strict=True):
            assert layer.attention_type == teacher.model.layers[src - 1].attention_type
            assert layer.attn.sliding_window == teacher.model.layers[src - 1].attn.sliding_window


def hand_built_forward(teacher, layers: list[int], inputs: dict):
    """The teacher's own forward with its layer list swapped for the chosen layers (and nothing else changed, but
    ModernBERT's first layer, which has no pre-attention norm)."""
    model = copy.deepcopy(teacher)
    family = family_of(model.config)
    parent, _, attr = family.layers.rpartition(".")
    chosen = torch.nn.ModuleList(copy.deepcopy(model.get_submodule(family.layers)[j - 1]) for j in layers)
    if family.first_layer_drops:
        chosen[0].attn_norm = torch.nn.Identity()
    setattr(model.get_submodule(parent), attr, chosen)
    with torch.no_grad():
        return model(**inputs).logits


@pytest.mark.parametrize("kind", KINDS)
def test_student_logits_equal_a_forward_through_the_chosen_teacher_layers(family_folders, kind):
    teacher = teacher_of(family_folders[kind])
    inputs = batch(family_folders[kind])
    outputs = []
    for spec in SPECS:
        layers = resolve_layers(spec, DEPTH)
        with torch.no_grad():
            got = make_student(teacher, layers).eval()(**inputs).logits
        torch.testing.assert_close(got, hand_built_forward(teacher, layers, inputs), atol=1e-5, rtol=0)
        outputs.append(got)
    assert not torch.allclose(outputs[0], outputs[1])  # odd and even are different models


def test_a_six_layer_distilbert_gives_three_layer_students_and_the_distilbert_preset_keeps_its_layout(
    family_folders,
):
    from transformers import DistilBertConfig

    config = DistilBertConfig(dim=32, n_layers=6, n_heads=2, hidden_dim=48, vocab_size=len(WORDS) + 5, num_labels=2)
    torch.manual_seed(0)
    teacher = AutoModelForSequenceClassification.from_config(config).eval()
    inputs = batch(family_folders["distilbert"])
    assert resolve_layers("distilbert", 6) == [1, 3, 6]  # a layout: every other layer from the bottom and the top
    for spec in ("odd", "even", "distilbert"):
        layers = resolve_layers(spec, 6)
        student = make_student(teacher, layers).eval()
        assert student.config.n_layers == 3 == len(student.distilbert.transformer.layer)
        with torch.no_grad():
            got = student(**inputs).logits
        torch.testing.assert_close(got, hand_built_forward(teacher, layers, inputs), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- LoRA: targets, the head, the merge

# what LoRA trains in full beside the adapters, for a model fresh from its config (heads never trained)
HEAD_TRAINED = {
    "bert": {"classifier", "bert.pooler"},
    "roberta": {"classifier"},
    "xlm-roberta": {"classifier"},
    "deberta-v2": {"classifier", "pooler"},
    "electra": {"classifier"},
    "modernbert": {"classifier", "head"},
    "distilbert": {"classifier", "pre_classifier"},
}


@pytest.mark.parametrize("kind", KINDS)
def test_lora_adapts_the_familys_attention_and_trains_the_untrained_head(family_folders, kind):
    model = load_classifier(str(family_folders[kind]), ["no", "yes"], log=lambda line: None)
    family = family_of(model.config)
    assert pooler_decision(model, "auto")[0] is (family.pooler is not None)
    peft_model = add_lora(model, LoraConfig())
    adapted = {n.rsplit(".lora_A", 1)[0] for n, _ in peft_model.named_parameters() if ".lora_A." in n}
    assert len(adapted) == DEPTH * len(family.lora_targets)
    assert {n.split(".")[-1] for n in adapted} == set(family.lora_targets)
    full = {
        n.split(".modules_to_save.")[0].removeprefix("base_model.model.")
        for n, p in peft_model.named_parameters()
        if p.requires_grad and "lora_" not in n
    }
    assert full == HEAD_TRAINED[kind]
    wide = add_lora(
        load_classifier(str(family_folders[kind]), ["no", "yes"], log=lambda line: None),
        LoraConfig(target_modules=["all-linear"]),
    )
    wrapped = {n.rsplit(".lora_A", 1)[0] for n, _ in wide.named_parameters() if ".lora_A." in n}
    assert len(wrapped) > len(adapted)
    assert not [n for n in wrapped if any(h in n for h in HEAD_TRAINED[kind])]


@pytest.mark.parametrize("kind", KINDS)
def test_merged_lora_gives_the_adapters_logits(family_folders, kind):
    model = teacher_of(family_folders[kind])
    peft_model = add_lora(model, LoraConfig()).eval()
    with torch.no_grad():  # stand-in for training: the adapters move away from zero
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.add_(0.1 * torch.randn_like(p))
    inputs = batch(family_folders[kind])
    with torch.no_grad():
        want = peft_model(**inputs).logits
        got = peft_model.merge_and_unload()(**inputs).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_a_target_missing_from_the_family_names_its_own(family_folders):
    model = load_classifier(str(family_folders["deberta-v2"]), ["no", "yes"], log=lambda line: None)
    with pytest.raises(UserError, match=r"\['query', 'value'\] not found .* DeBERTa-v2/v3 .* query_proj, value_proj"):
        add_lora(model, LoraConfig(target_modules=["query", "value"]))


def test_a_head_with_one_tell_tale_tensor_moved_counts_as_trained(family_folders):
    """lora.train_pooler auto: a pooler is 'never trained' only when every tell-tale tensor holds its initial value.
    ModernBERT's head has three (dense.bias, norm.weight, norm.bias): one moved means the head was trained, so it
    stays as pretrained (near-equivalent on real checkpoints, where all three move; kept because it costs 0.1 s).

    Mutation caught: all(...) → any(...) in pooler_decision."""
    model = load_classifier(str(family_folders["modernbert"]), ["not toxic", "toxic"], log=lambda line: None)
    assert pooler_decision(model, "auto")[0] is True  # fresh: all three at their initial values
    with torch.no_grad():
        model.head.dense.bias.add_(0.01)
    train, why = pooler_decision(model, "auto")
    assert train is False and "head was trained (its bias moved" in why


# ---------------------------------------------------------------- the whole compare, then export, predict, serve


@pytest.mark.parametrize("kind", KINDS)
def test_compare_runs_end_to_end_for_each_family(family_folders, tiny_data, tmp_path, kind):
    """Teacher, odd and even students (logits and [CLS] states distilled), both LoRA rows, int8, the report; then the
    LoRA student exported merged (its merge check passes), predicted and served."""
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from distill_lora.cli import app
    from distill_lora.use.export import export_model
    from distill_lora.use.predict import load_predictor
    from distill_lora.use.serve import create_app

    cfg = tiny_config(
        tmp_path,
        family_folders[kind],
        tiny_data,
        train={"epochs": 1, "batch_size": 32, "eval_batch_size": 64, "log_every": 2},
        distill={"w_hidden": 0.25},
        report={"bootstrap_resamples": 100},
    )
    start = time.perf_counter()
    result = CliRunner().invoke(app, ["compare", "--config", str(cfg)])
    elapsed = time.perf_counter() - start
    assert result.exit_code == 0, result.output
    seed = tmp_path / "run" / "seed-0"
    for stage in ("teacher", "student-odd", "student-even", "lora-student", "lora-teacher", "teacher-int8"):
        assert (seed / stage / "DONE").exists(), (kind, stage)
    assert json.loads((seed / "student-odd" / "metrics.json").read_text())["depth"] == DEPTH // 2
    pooler = json.loads((seed / "lora-student" / "metrics.json").read_text())["pooler_trained"]
    assert pooler is (kind in ("bert", "deberta-v2", "modernbert"))  # never trained in these fresh models
    assert (tmp_path / "run" / "report.md").exists()

    out = tmp_path / "merged"
    check = export_model(seed / "lora-student", out, merge=True, log=lambda line: None)["merge_check"]
    assert check["checked"] and check["same_labels"], check
    texts = ["you are a stupid idiot", "lovely park"]
    predicted = load_predictor(out).predict(texts)
    assert [p["label"] for p in predicted] == [p["label"] for p in load_predictor(seed / "lora-student").predict(texts)]
    served = TestClient(create_app(seed / "student-even")).post("/api/predict", json={"texts": texts})
    assert served.status_code == 200, served.text
    print(f"\n{kind}: compare on the tiny data in {elapsed:.1f} s")


def test_auto_targets_hash_as_the_names_they_stand_for(tiny_bert12, tiny_data, tmp_path):
    """A run made when the default was [query, value] keeps its finished LoRA stages under the default [auto]."""
    from distill_lora.config import load_config
    from distill_lora.experiment import pipeline

    path = str(tiny_config(tmp_path, tiny_bert12, tiny_data))
    auto = pipeline.prepare(load_config(path))
    named = pipeline.prepare(load_config(path, ['lora.target_modules=["query", "value"]']))
    other = pipeline.prepare(load_config(path, ['lora.target_modules=["query"]']))
    assert auto.cfg.lora.target_modules == ["auto"]
    assert pipeline.lora_hash(auto, "lora-student", True) == pipeline.lora_hash(named, "lora-student", True)
    assert pipeline.lora_hash(auto, "lora-student", True) != pipeline.lora_hash(other, "lora-student", True)


def test_a_lora_sweep_runs_on_another_family(family_folders, tiny_data, tmp_path):
    """sweep builds its models through the same table: ModernBERT's [auto] (Wqkv) against Wqkv and Wo."""
    from typer.testing import CliRunner

    from distill_lora.cli import app

    space = {"lora.target_modules": {"choices": [["auto"], ["Wqkv", "Wo"]]}}
    cfg = tiny_config(
        tmp_path,
        family_folders["modernbert"],
        tiny_data,
        train={"epochs": 1, "batch_size": 32, "eval_batch_size": 64, "log_every": 2},
        sweep={"stage": "lora-student", "sampler": "grid", "trials": 2, "pruning": False, "space": space},
    )
    result = CliRunner().invoke(app, ["sweep", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "sweep" / "best" / "seed-0" / "lora-student" / "DONE").exists()
