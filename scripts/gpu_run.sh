#!/usr/bin/env bash
# The paper's setting on a lent GPU, in one command (under 8 minutes on one H100):
#   1. throughput: CMCS and joint training (w/o CMS), MiniLM fine-tuned in all layers,
#      Twitter2015, 2 epochs each, alone on the GPU -> samples/s and seconds per epoch;
#   2. the results grid with `cmcs grid` on an embedded Ray (2 datasets x 6 methods x seeds 1..3,
#      8 epochs, each run 1/8 of the GPU and 2 CPUs, so 8 at a time; no new run after
#      GRID_DEADLINE seconds, and rerunning the script continues the grid);
#   3. packs run folders (no checkpoints) into $OUT.
# Needs .weights/minilm (MiniLM in fp16, loaded as fp32) and .weights/data carried along:
#   python scripts/prepare_gpu_weights.py
# and Ray, which the GPU machine lacks: on the same (warm) machine, after the headline bundle's parts were
# carried, `python3 scripts/gpu_headline.py unpack` puts it in $WORK/site (scripts/README.md, "Running the GPU headline").
set -u
OUT=${OUT:-artifacts/gpu}
WORK=${WORK:-/tmp/cmcs_gpu}
GRID_DEADLINE=${GRID_DEADLINE:-300}
EPOCHS=${EPOCHS:-8}
DEVICE=${DEVICE:-cuda}
EXTRA=${EXTRA:-}  # e.g. "--max-train-samples 64 --max-eval-samples 32" for a dry run on a CPU
GPUS_PER_RUN=${GPUS_PER_RUN:-0.125}  # on a CPU-only machine: GPUS_PER_RUN=0 DEVICE=cpu
CPUS_PER_RUN=${CPUS_PER_RUN:-2}
mkdir -p "$OUT" "$WORK"
export CMCS_MINILM_DIR=.weights/minilm CMCS_DATA_DIR=.weights/data CMCS_CACHE_DIR=$WORK/cache
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=2
export PYTHONPATH=$WORK/site:$PWD${PYTHONPATH:+:$PYTHONPATH}  # Ray from the bundle, for the grid's workers too
PY=${PY:-python3}
$PY -c "import ray" 2>/dev/null || { echo "no Ray here: unpack the headline bundle into $WORK first (see above)"; exit 1; }
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')" | tee "$OUT/env.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$OUT/env.txt" 2>/dev/null
t0=$(date +%s)
for m in cmcs wo_cms; do
  $PY -m cmcs_core train --quiet --dataset twitter2015 --method $m --finetune-layers -1 --epochs 2 \
    --seed 1 --device $DEVICE --no-eval-test-each-epoch --output-dir "$WORK/throughput/$m" $EXTRA > "$WORK/throughput_$m.txt" 2>&1
  echo "throughput $m rc=$? at $(( $(date +%s) - t0 ))s"
done
$PY - "$WORK/throughput" <<'PY' | tee "$OUT/throughput.json"
import json, sys, pandas as pd
from pathlib import Path
res = {}
for run in sorted(Path(sys.argv[1]).iterdir()):
    ep = pd.read_csv(run / "epochs.csv")
    res[run.name] = {"seconds_per_epoch": ep.seconds.tolist(), "samples_per_s": ep.samples_per_s.tolist()}
print(json.dumps(res, indent=2))
PY
$PY -m cmcs_core grid --out "$WORK/grid" --finetune-layers -1 --epochs "$EPOCHS" \
  --gpus-per-run "$GPUS_PER_RUN" --cpus-per-run "$CPUS_PER_RUN" --deadline "$GRID_DEADLINE" \
  --device $DEVICE ${GRID_ARGS:-} $EXTRA 2>&1 | tee "$OUT/grid.txt"
for d in twitter2015 twitter2017; do
  $PY scripts/pack_runs.py "$WORK/grid" "$OUT/runs_$d.tar.gz" --dataset $d
done
echo "total $(( $(date +%s) - t0 ))s"
