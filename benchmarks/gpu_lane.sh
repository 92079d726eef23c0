#!/usr/bin/env bash
# The GPU lane and the paper's-scale step in one call, under 9 minutes on one GPU (docs/gpu.md):
#   1. pytest -m gpu tests/test_gpu_lane.py   every command on tiny settings on the GPU (290 s at most)
#   2. benchmarks/gpu_step.py                  L=14, F=64: dcnas at 512x1024 and 256x512, darts at 256x512
#   3. benchmarks/train_compile.py             eager vs torch.compile training steps of a derived L=8 network
# Results go to $OUT when it is set (else ./gpu-lane-results): lane.xml/lane.log, gpu_step.json/.log,
# train_compile.json/.log and nvidia-smi.txt. Exit status: 0 when all three passed, else the first failure's.
# Run from the repository root with the environment that has archgraph installed:
#   bash benchmarks/gpu_lane.sh
set -u
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-gpu-lane-results}"
mkdir -p "$OUT_DIR"
status=0
started=$(date +%s)
nvidia-smi > "$OUT_DIR/nvidia-smi.txt" 2>&1 || true
python -c "import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" \
    | tee "$OUT_DIR/torch.txt"

# 1. the lane: one process (-n 0), each test under the same 5-minute ceiling as the lane itself
timeout 290 python -m pytest -m gpu -n 0 -q -p no:cacheprovider --junitxml="$OUT_DIR/lane.xml" tests/test_gpu_lane.py \
    > "$OUT_DIR/lane.log" 2>&1
rc=$?; [ $status -eq 0 ] && status=$rc
tail -n 5 "$OUT_DIR/lane.log"
echo "lane: exit $rc after $(( $(date +%s) - started )) s"

# 2. the paper's-scale search step (its own time budget keeps it within 160 s)
timeout 160 python benchmarks/gpu_step.py --time-budget 130 --json "$OUT_DIR/gpu_step.json" > "$OUT_DIR/gpu_step.log" 2>&1
rc=$?; [ $status -eq 0 ] && status=$rc
tail -n 12 "$OUT_DIR/gpu_step.log"

# 3. compiled training of a derived network on the GPU (what benchmarks/README.md measured on the CPU)
timeout 70 python benchmarks/train_compile.py --device cuda --layers 8 --channels 32 --crop 512 512 --batch 8 --steps 5 --warmup 2 \
    --json "$OUT_DIR/train_compile.json" > "$OUT_DIR/train_compile.log" 2>&1
rc=$?; [ $status -eq 0 ] && status=$rc
tail -n 2 "$OUT_DIR/train_compile.log"
echo "gpu_lane.sh: exit $status after $(( $(date +%s) - started )) s; results in $OUT_DIR"
exit $status
