#!/usr/bin/env bash
# Run ON the GPU machine (device tool, carry device-carry): does the fast preset (batch x4, lr x2) keep OLID's
# validation and test metrics within seed noise of the defaults? Teacher and odd student, 3 seeds, each way.
# Extra arguments go to both compares (e.g. --set data.limit.train=2000 for a CPU dry run). Writes into $OUT.
set -uo pipefail
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
for fast in false true; do
    python3 -m distill_lora compare --config olid -o "/tmp/fast-$fast" --seeds 0,1,2 \
        --set data.source=device-carry/olid --set teacher.model=device-carry/minilm-bf16 --set fast=$fast \
        --set 'distill.layers=[odd]' --set 'lora.models=[]' --set report.quantize_int8=false "$@" \
        > "$OUT/compare-fast-$fast.log" 2>&1
    echo "fast=$fast: exit $?"; tail -n 30 "$OUT/compare-fast-$fast.log"
    cp "/tmp/fast-$fast/report.md" "$OUT/report-fast-$fast.md" 2>/dev/null
    cp "/tmp/fast-$fast/results.json" "$OUT/results-fast-$fast.json" 2>/dev/null
done
