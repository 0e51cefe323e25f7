#!/usr/bin/env bash
# Run ON the GPU machine (device tool, carry device-carry; about 4-5 minutes): the training-step benchmark on
# OLID's text lengths, bert-base shape, batch 32 and 128. Writes bench.json and bench.txt into $OUT.
set -uo pipefail
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -m distill_lora bench --texts device-carry/olid/train.jsonl --tokenizer device-carry/minilm-bf16 \
    --output "$OUT/bench.json" "$@" 2>&1 | tee "$OUT/bench.txt"
