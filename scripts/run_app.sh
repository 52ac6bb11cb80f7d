#!/usr/bin/env bash
# Start the CMCS app; with no run under the runs folder, first make the playground runs
# (synthetic dataset, a CMCS run and a text-only run on captions, a CMCS run on the images' pixels
# with EfficientNet-Lite0, the captions runs stress-tested with the planted-truth edits; then the
# target-cue preset's text-only, CMCS and target-aware runs for the Tour's section 5; see
# bench/results/first_run.json for its CPU time; progress shown).
#   scripts/run_app.sh [extra streamlit args]      env: CMCS_RUNS_DIR (default runs), PYTHON, HOST
# HOST (default 127.0.0.1) is the address the server listens on. Any other address (HOST=0.0.0.0 to
# serve a class) starts the read-only demo mode (CMCS_DEMO=1): the runs folder is fixed, no path can be
# typed, links only open runs under it, and nothing trains from the page.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}"
RUNS_DIR="${CMCS_RUNS_DIR:-runs}"
export CMCS_RUNS_DIR="$RUNS_DIR" HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
if ! find "$RUNS_DIR" -maxdepth 3 -name metrics.json 2>/dev/null | grep -q .; then
  echo "No finished run under $RUNS_DIR: making the playground runs first (python -m cmcs_core playground" \
       "--first-run: a captions run, a pixel run, then the target-cue preset's runs)..."
  "$PYTHON" -m cmcs_core playground --first-run --runs-dir "$RUNS_DIR"
fi
# The committed benchmark runs (docs/results.md; no checkpoints, so not in the inspector).
if [ -d results ] && [ ! -e "$RUNS_DIR/results" ]; then
  mkdir -p "$RUNS_DIR" && ln -s "$(pwd)/results" "$RUNS_DIR/results"
fi
HOST="${HOST:-127.0.0.1}"
case "$HOST" in
  127.0.0.1|localhost|::1) ;;
  *) export CMCS_DEMO=1
     echo "Serving on $HOST: read-only demo mode (runs folder fixed to $RUNS_DIR)." ;;
esac
exec "$PYTHON" -m streamlit run app/main.py --server.address "$HOST" "$@"
