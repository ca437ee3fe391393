#!/usr/bin/env bash
# The GPU check of docs/performance.md "On a GPU", in one command on a machine with a CUDA GPU:
#
#   bash benchmarks/gpu_zjets.sh OUTDIR [EPOCHS] [TRAIN_FILE]
#
# 1. tests/test_gpu.py (train.device auto on CUDA, generate --device cuda against the CPU, ONNX
#    Runtime's CUDA provider when onnxruntime-gpu is installed), in the background;
# 2. cards/zjets_paper.yaml (the transformer Bayesian CFM) trained on TRAIN_FILE (default
#    data/zjets_reference.root, the 200 000 events of cards/zjets.yaml) for EPOCHS epochs
#    (default 200), its report's generation on the GPU, validation off (it runs on the CPU);
# 3. `hepgen generate --device cuda`: 100 000 events for generation seeds 1 and 2 (what
#    benchmarks/zjets_floor.py scores, put beside the run as generated.seed<k>.root) and
#    200 000 events timed.
# Everything lands in OUTDIR: logs, timings, run.tar (the run folder) and seeds.tar (its seed files).
# On the CPU machine afterwards: python benchmarks/zjets_floor.py OUTDIR/<run> (it uses the seed files).
set -u
OUT=${1:?usage: gpu_zjets.sh OUTDIR [EPOCHS] [TRAIN_FILE]}
EPOCHS=${2:-200}
DATA=${3:-data/zjets_reference.root}
PY=${PYTHON:-python3}
mkdir -p "$OUT" /tmp/gpu_runs
export PYTHONUNBUFFERED=1
stamp() { echo "[$(date +%T)] $*" | tee -a "$OUT/timeline.txt"; }

stamp start
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $PY -c "import torch, onnxruntime as o; print('torch', torch.__version__, torch.cuda.get_device_name(0)); print('onnxruntime', o.__version__, o.get_available_providers())"
  nproc; } > "$OUT/machine.txt" 2>&1

stamp "tests/test_gpu.py"
( timeout 300 $PY -m pytest -q -p no:cacheprovider tests/test_gpu.py > "$OUT/pytest.txt" 2>&1
  echo "rc=$?" >> "$OUT/pytest.txt" ) &
TESTS=$!

stamp "train cards/zjets_paper.yaml, $EPOCHS epochs on $DATA"
T0=$(date +%s)
timeout 330 $PY -m hepgen train cards/zjets_paper.yaml --set data.path="$DATA" --set train.epochs="$EPOCHS" \
    --set train.validate=false --set generate.events=20000 --set train.runs_dir=/tmp/gpu_runs --no-progress \
    > "$OUT/train.txt" 2>&1
echo "rc=$? seconds=$(( $(date +%s) - T0 ))" >> "$OUT/train.txt"
RUN=$(ls -d /tmp/gpu_runs/zjets_paper-* | tail -1)
stamp "trained: $RUN"

for s in 1 2; do
  T0=$(date +%s)
  timeout 90 $PY -m hepgen generate "$RUN" -n 100000 --seed $s --device cuda -o "$RUN/generated.seed$s.root" \
      --no-progress >> "$OUT/generate.txt" 2>&1
  echo "seed $s: rc=$? seconds=$(( $(date +%s) - T0 ))" >> "$OUT/generate.txt"
done
# two archives under 16 MiB each: the run (no last.pt, no event files) and the seed files
tar -C "$(dirname "$RUN")" -cf "$OUT/run.tar" --exclude='*.root' --exclude=last.pt "$(basename "$RUN")"
tar -C "$(dirname "$RUN")" -cf "$OUT/seeds.tar" "$(basename "$RUN")"/generated.seed1.root \
    "$(basename "$RUN")"/generated.seed2.root
stamp "run.tar, seeds.tar written"
T0=$(date +%s)
timeout 60 $PY -m hepgen generate "$RUN" -n 200000 --seed 3 --device cuda -o /tmp/gpu_runs/timing.root \
    --no-progress >> "$OUT/generate.txt" 2>&1
echo "200k timing: rc=$? seconds=$(( $(date +%s) - T0 ))" >> "$OUT/generate.txt"
wait $TESTS
stamp done
