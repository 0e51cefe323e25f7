"""The data-driven layer choice (layers `angular[:k]`): keep the k teacher layers that change the representation most.

For each encoder layer l (1-based), its angular distance is arccos(cos(h_in, h_out)) / π between the hidden state
that enters the layer and the one it puts out, averaged over every real (non-padding) token of the texts given
(the validation split: never test). A layer whose output points where its input did does little and is dropped
first (the measure behind "Block Influence" in ShortGPT and the angular distance of Gromov et al., here per layer).
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from distill_lora.train.data import make_collate


@torch.inference_mode()
def angular_distances(model, dataset, batch_size: int, pad_id: int) -> list[float]:
    """Per encoder layer, in order: its mean angular distance over the real tokens of `dataset` (fp32, as given).

    The states are the model's own `hidden_states` (embeddings' output, then each layer's)."""
    model.eval()
    device = next(model.parameters()).device
    sums, tokens = None, 0
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=make_collate(pad_id)):
        mask = batch["attention_mask"].to(device).bool()
        out = model(
            input_ids=batch["input_ids"].to(device),
            attention_mask=batch["attention_mask"].to(device),
            output_hidden_states=True,
        )
        # float64: the angles are small, and arccos near cos = 1 loses most digits in float32
        states = [h.double()[mask] for h in out.hidden_states]  # each (real tokens, H): embeddings, layer 1, …
        cos = torch.stack([torch.nn.functional.cosine_similarity(a, b, dim=-1) for a, b in zip(states, states[1:])])
        angle = torch.arccos(cos.clamp(-1.0, 1.0)) / torch.pi  # (layers, real tokens)
        sums = angle.sum(dim=1) if sums is None else sums + angle.sum(dim=1)
        tokens += angle.shape[1]
    return (sums / tokens).tolist()


def most_changing_layers(distances: list[float], k: int) -> list[int]:
    """The k layers (1-based, increasing) with the largest distances; a tie keeps the lower layer."""
    ranked = sorted(range(len(distances)), key=lambda i: (-distances[i], i))
    return sorted(i + 1 for i in ranked[:k])
