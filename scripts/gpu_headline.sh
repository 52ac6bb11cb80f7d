#!/usr/bin/env bash
# The headline regime on one lent GPU, in device calls; scripts/README.md ("Running the GPU
# headline") has the calls, their carries and timeouts. Prepare here first: python scripts/prepare_gpu_weights.py mpnet
#
#   bash scripts/gpu_headline.sh carry N   # part N of the bundle (carried as .weights/mpnet_part_N) -> $CARRY_DIR
#   bash scripts/gpu_headline.sh run       # unpack, one CMCS run alone + profile, the grid until STOP_AFTER, pack
#   bash scripts/gpu_headline.sh resume    # the same grid again on the same (still warm) machine: no perf, no unpack
#   bash scripts/gpu_headline.sh plan      # the planned runs in priority order (no GPU needed)
#
# Everything the device keeps between calls is under /tmp ($CARRY_DIR, $WORK): a machine given back loses it,
# and the next session carries every part again. Finished runs unpacked into results/gpu_headline are copied
# into the grid first, so a later session continues where the last one stopped.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$REPO/artifacts/gpu_headline}
WORK=${WORK:-/tmp/cmcs_gpu}
CARRY_DIR=${CARRY_DIR:-/tmp/cmcs_carry}
DEVICE=${DEVICE:-cuda}
EXTRA=${EXTRA:-}                  # e.g. "--max-train-samples 64 --max-eval-samples 32" for a dry run on a CPU
GPUS_PER_RUN=${GPUS_PER_RUN:-0.0714}  # 14 runs share the GPU (16 CPUs: 1 each, 2 left for Ray and the driver)
CPUS_PER_RUN=${CPUS_PER_RUN:-1}
CALL_LIMIT=${CALL_LIMIT:-570}     # the device call's timeout_s: everything below ends inside it
RESERVE=${RESERVE:-60}            # seconds kept for the tables, the pack and the reply
RUN_S=${RUN_S:-420}               # one run with 14 sharing the GPU: 279 s for CMCS without stress (reference
                                  # runs), a target-aware epoch 1.67x CMCS's, plus stress (docs/benchmarks.md)
STOP_AFTER=${STOP_AFTER:-}        # grid seconds before running runs are stopped (default: what the call has left)
DEADLINE=${DEADLINE:-}            # grid seconds after which no run starts (default: STOP_AFTER - RUN_S)
LIMIT=${LIMIT:-}                  # only the first N runs of the plan
PERF=${PERF:-1}                   # run: one run alone + the profile first (about a minute)
PERF_ARGS=${PERF_ARGS:-}          # e.g. "--alone-samples 64 --profile-samples 32 --epochs 1" for a dry run
RESULTS=${RESULTS:-$REPO/results/gpu_headline}
WEIGHTS=${WEIGHTS:-$REPO/.weights}   # where the carried parts land in the tree
PY=${PY:-python3}
export CMCS_DATA_DIR=$WORK/data CMCS_CACHE_DIR=$WORK/cache HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
# cmcs_core from this checkout and Ray from the bundle, for the driver and every Ray worker
export PYTHONPATH=$WORK/site:$REPO${PYTHONPATH:+:$PYTHONPATH}
H="$PY $REPO/scripts/gpu_headline.py"

case "${1:-}" in
  carry) $H carry "${2:?which part}" --weights "$WEIGHTS" --carry-dir "$CARRY_DIR" ;;
  plan) $H plan --extra "--device $DEVICE $EXTRA" ;;
  run|resume)
    mkdir -p "$OUT"
    t0=$(date +%s)
    if [ "$1" = run ]; then
      $H unpack --weights "$WEIGHTS" --carry-dir "$CARRY_DIR" --work "$WORK"
      $PY -c "import torch, transformers, ray; print('torch', torch.__version__, 'transformers', transformers.__version__, 'ray', ray.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')" | tee "$OUT/env.txt"
      nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$OUT/env.txt" 2>/dev/null || true
      if [ "$PERF" = 1 ]; then  # the GPU alone: before the grid shares it
        (cd "$WORK" && $PY "$REPO/bench/gpu_perf.py" measure --out "$OUT/perf.json" --work "$WORK/perf" \
          --device "$DEVICE" --extra "$EXTRA" $PERF_ARGS) || echo "perf failed (the grid still runs)"
      fi
    fi
    left=$(( CALL_LIMIT - RESERVE - $(date +%s) + t0 ))
    STOP_AFTER=${STOP_AFTER:-$left}
    DEADLINE=${DEADLINE:-$(( STOP_AFTER > RUN_S ? STOP_AFTER - RUN_S : 0 ))}
    echo "grid: no new run after ${DEADLINE}s, running runs stopped at ${STOP_AFTER}s"
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 15 > "$OUT/smi.csv" 2>/dev/null &
    smi=$!
    # the grid runs in $WORK, where mpnet_fp16/ (the --text-model folder) is; its clock starts after the perf
    rc=0
    (cd "$WORK" && $H grid --out "$OUT" --work "$WORK" --device "$DEVICE" --extra "$EXTRA" \
      --gpus-per-run "$GPUS_PER_RUN" --cpus-per-run "$CPUS_PER_RUN" --deadline "$DEADLINE" \
      --stop-after "$STOP_AFTER" ${LIMIT:+--limit "$LIMIT"} ${RESULTS:+--results "$RESULTS"}) 2>&1 | tee "$OUT/grid.log" || rc=$?
    kill $smi 2>/dev/null || true
    echo "$1: rc=$rc in $(( $(date +%s) - t0 ))s; \$OUT holds: $(ls "$OUT" | tr '\n' ' ')"
    exit "$rc" ;;
  *) sed -n '2,13p' "$0"; exit 2 ;;
esac
