#!/usr/bin/env bash
# Start the CMCS app; with no run under the runs folder, first make the playground runs
# (synthetic dataset + a CMCS run on captions + a CMCS run on the images' pixels with
# EfficientNet-Lite0; about 90 s of CPU on two cores, bench/bench_first_run.py; progress shown).
#   scripts/run_app.sh [extra streamlit args]      env: CMCS_RUNS_DIR (default runs), PYTHON
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}"
RUNS_DIR="${CMCS_RUNS_DIR:-runs}"
export CMCS_RUNS_DIR="$RUNS_DIR" HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
if ! find "$RUNS_DIR" -maxdepth 3 -name metrics.json 2>/dev/null | grep -q .; then
  echo "No finished run under $RUNS_DIR: making the playground runs first (python -m cmcs_core playground:" \
       "a captions run and a pixel run)..."
  "$PYTHON" -m cmcs_core playground --runs-dir "$RUNS_DIR"
fi
# The committed benchmark runs (docs/results.md; no checkpoints, so not in the inspector).
if [ -d results ] && [ ! -e "$RUNS_DIR/results" ]; then
  mkdir -p "$RUNS_DIR" && ln -s "$(pwd)/results" "$RUNS_DIR/results"
fi
exec "$PYTHON" -m streamlit run app/main.py "$@"
