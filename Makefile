# The two commands of the README: `make demo` (set up, then run the main job) and `make test`.
# Set-up installs torch==2.13.0 FIRST: that exact version lies on this machine's disk and takes
# seconds; a looser requirement resolved first would pull a multi-GB CUDA build.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.tailor-installed

.PHONY: setup demo test lint bench clean

$(PY):
	python3 -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,lm,ray,highway,video]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/tailor demo

test: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff format --check src tests bench

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
