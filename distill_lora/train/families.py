"""Encoder families: where each kind of teacher keeps its layers and head, and what cutting it or LoRA must know.

One entry per family in FAMILIES, found by the checkpoint's config.model_type (family_of). Module paths are those of
the family's *ForSequenceClassification model in transformers 5. What each field means:

    embeddings     the embedding module (copied whole into every student)
    layers         the list of encoder layers: a student's layer i is the teacher's layer layers[i] under this path
    depth_key      the config key that counts them (set to the student's depth)
    head           how the classifier reads the sequence, in words (docs and errors)
    shared         everything outside the layers (the parts a checkpoint has), copied once and unchanged into every
                   student (tested to be equal, and to cover every tensor outside the layers)
    pooler         a head part outside `classifier` that PEFT's SEQ_CLS task would leave frozen: LoRA trains it in
                   full when it was never trained (lora.train_pooler); None when the whole head is inside `classifier`
    untrained      (tensor under `pooler`, its value at initialisation): when every one that exists still holds it,
                   the pooler was never trained (transformers initialises biases to 0 and LayerNorm weights to 1)
    lora_targets   lora.target_modules [auto]: the attention's query and value projections (ModernBERT fuses q, k, v)
    first_layer_drops  tensors of a teacher layer that a student's first layer has no place for (see ModernBERT)
    final_norm     a norm the encoder applies after its last layer only: transformers returns the last layer's
                   output after it and every other layer's before it (None: no such norm)
    per_layer_config   config lists with one entry per layer, cut with the layers

Families whose layers and head transformers names like BERT's (RoBERTa, ELECTRA) used to run by accident; here each
is listed, and anything else is refused with the list (family_of).
"""

from __future__ import annotations

from dataclasses import dataclass

from distill_lora.errors import UserError


@dataclass(frozen=True)
class Family:
    """One encoder family: where its parts live and what a student cut or LoRA must adjust (module docstring)."""

    name: str
    model_types: tuple[str, ...]
    embeddings: str
    layers: str
    head: str
    shared: tuple[str, ...]
    lora_targets: tuple[str, ...]
    pooler: str | None = None
    untrained: tuple[tuple[str, float], ...] = ()
    depth_key: str = "num_hidden_layers"
    first_layer_drops: tuple[str, ...] = ()
    per_layer_config: tuple[str, ...] = ()
    final_norm: str | None = None


FAMILIES = (
    Family(
        name="BERT",
        model_types=("bert",),
        embeddings="bert.embeddings",
        layers="bert.encoder.layer",
        head="pooler (dense + tanh on [CLS]), then dropout and classifier",
        shared=("bert.embeddings", "bert.pooler", "classifier"),
        lora_targets=("query", "value"),
        pooler="bert.pooler",
        untrained=(("dense.bias", 0.0),),
    ),
    Family(
        name="RoBERTa / XLM-R",
        model_types=("roberta", "xlm-roberta"),
        embeddings="roberta.embeddings",
        layers="roberta.encoder.layer",
        head="classifier: dense + tanh + out_proj on the first token <s> (no pooler; all inside classifier)",
        shared=("roberta.embeddings", "classifier"),
        lora_targets=("query", "value"),
    ),
    Family(
        name="DeBERTa-v2/v3",
        model_types=("deberta-v2",),
        embeddings="deberta.embeddings",
        layers="deberta.encoder.layer",
        head="context pooler (dense + GELU on [CLS]), then dropout and classifier",
        # the relative-position table (and its LayerNorm) belong to the encoder, not to a layer: every layer reads
        # the one table, so a student gets it once, unchanged. The conv of v2-xlarge/xxlarge (conv_kernel_size)
        # follows the encoder's first layer: in a student it follows the student's first layer
        shared=(
            "deberta.embeddings",
            "deberta.encoder.rel_embeddings",
            "deberta.encoder.LayerNorm",
            "deberta.encoder.conv",
            "pooler",
            "classifier",
        ),
        lora_targets=("query_proj", "value_proj"),
        pooler="pooler",
        untrained=(("dense.bias", 0.0),),
    ),
    Family(
        name="ELECTRA",
        model_types=("electra",),
        embeddings="electra.embeddings",
        layers="electra.encoder.layer",
        head="classifier: dense + GELU + out_proj on [CLS] (no pooler; all inside classifier)",
        shared=("electra.embeddings", "electra.embeddings_project", "classifier"),  # project: embedding_size < hidden
        lora_targets=("query", "value"),
    ),
    Family(
        name="ModernBERT",
        model_types=("modernbert",),
        embeddings="model.embeddings",
        layers="model.layers",
        head="head (dense + GELU + LayerNorm on [CLS], or on the mean with classifier_pooling: mean), then classifier",
        shared=("model.embeddings", "model.final_norm", "head", "classifier"),
        lora_targets=("Wqkv",),
        pooler="head",
        untrained=(("dense.bias", 0.0), ("norm.weight", 1.0), ("norm.bias", 0.0)),
        # layer 0 of ModernBERT has no pre-attention norm (the embeddings' norm is its input); a student's first
        # layer is built that way too, so a deeper teacher layer placed there loses its attn_norm
        first_layer_drops=("attn_norm.",),
        # global and local (sliding-window) attention alternate; each student layer keeps its teacher layer's kind
        per_layer_config=("layer_types",),
        final_norm="model.final_norm",
    ),
    Family(
        name="DistilBERT",
        model_types=("distilbert",),
        embeddings="distilbert.embeddings",
        layers="distilbert.transformer.layer",
        # PEFT's SEQ_CLS task trains in full every module whose name ends in "classifier": pre_classifier too,
        # always, so it is part of the head trained in full, not a pooler that lora.train_pooler could freeze
        head="pre_classifier (dense + ReLU on [CLS]), then dropout and classifier (LoRA trains both in full)",
        shared=("distilbert.embeddings", "pre_classifier", "classifier"),
        lora_targets=("q_lin", "v_lin"),
        depth_key="n_layers",
    ),
)

_BY_TYPE = {t: f for f in FAMILIES for t in f.model_types}


def supported() -> str:
    """The supported families as one line, for errors and docs."""
    return ", ".join(f"{f.name} ({', '.join(f.model_types)})" for f in FAMILIES)


def family_of(config, what: str = "teacher.model") -> Family:
    """The family of a model config (its model_type), or a UserError naming the supported ones."""
    model_type = getattr(config, "model_type", None)
    if model_type not in _BY_TYPE:
        raise UserError(
            f"{what}: model type '{model_type}' is not a supported encoder family; supported: {supported()}"
        )
    return _BY_TYPE[model_type]
