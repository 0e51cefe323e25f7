"""The data-driven layer choice (layers: angular): per-layer angular distances and the layers kept."""

import numpy as np
import pytest
import torch

from distill_lora.errors import UserError
from distill_lora.train.layer_choice import angular_distances, most_changing_layers
from distill_lora.train.layer_specs import data_driven_depth

TEXTS = ["you people are vermin", "lovely sunny park", "the festival is very lovely and all the people are so"]


def test_angular_distances_equal_a_hand_computation_over_real_tokens(tiny_bert6):
    """Batched (so padded) and masked, the distances equal arccos(cos)/π computed text by text in numpy: padding
    never counts, every real token counts once."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert6)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert6).eval()
    ids = [tok(t)["input_ids"] for t in TEXTS]
    dataset = [{"input_ids": x, "label": 0, "idx": i} for i, x in enumerate(ids)]

    sums, tokens = np.zeros(6), 0
    for x in ids:  # one text at a time: no padding at all
        with torch.no_grad():
            h = model(input_ids=torch.tensor([x]), output_hidden_states=True).hidden_states
        h = [s[0].double().numpy() for s in h]
        for layer in range(6):
            a, b = h[layer], h[layer + 1]
            cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
            sums[layer] += (np.arccos(np.clip(cos, -1, 1)) / np.pi).sum()
        tokens += len(x)
    want = sums / tokens

    got = angular_distances(model, dataset, batch_size=2, pad_id=tok.pad_token_id)
    assert len(got) == 6
    np.testing.assert_allclose(got, want, rtol=1e-3)  # float32 forward passes, padded or not
    assert len(set(np.round(got, 6))) == 6  # a random model: the layers differ, so the choice below means something


def test_the_layers_kept_are_the_k_that_move_the_states_most():
    assert most_changing_layers([0.1, 0.5, 0.2, 0.4, 0.05, 0.3], 3) == [2, 4, 6]
    assert most_changing_layers([0.2, 0.2, 0.1, 0.2], 2) == [1, 2]  # a tie keeps the lower layer


def test_angular_spec():
    assert data_driven_depth("angular", 12) == 6
    assert data_driven_depth("angular:4", 12) == 4
    assert data_driven_depth("odd", 12) is None and data_driven_depth([1, 3], 12) is None
    with pytest.raises(UserError, match="1..11"):
        data_driven_depth("angular:12", 12)
