# The two commands of the README: `make demo` (set up, then run the main job) and `make test`.
# Set-up installs torch==2.13.0 FIRST: that exact version lies on this machine's disk and takes
# seconds; a looser requirement resolved first would pull a multi-GB CUDA build. Then every other
# package at the exact version of requirements.lock (the versions this commit was tested with),
# so a fresh clone gets the same numbers; pyproject.toml keeps ranges for library users.
VENV   ?= .venv
PY     := $(VENV)/bin/python
LOCK   := requirements.lock
STAMP  := $(VENV)/.tailor-installed
PIP_VERSION := 26.3
EXTRAS := dev lm ray highway video
# Where the CPU torch wheel lies (pip finds it through the machine's pip.conf; uv needs it named).
WHEELS ?= /opt/wheels

.PHONY: setup demo test lint lock bench clean

$(PY):
	python3 -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml $(LOCK)
	$(PY) -m pip install --quiet pip==$(PIP_VERSION)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet --no-deps -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check
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

# Refresh the lock on purpose (newest versions inside pyproject's ranges), then `make test` and,
# if a pinned number moved, refresh tests/data/pinned_metrics.json in the same commit
# (docs/DEVELOPING.md, "Refreshing the lock").
lock: setup
	$(VENV)/bin/uv pip compile pyproject.toml $(addprefix --extra ,$(EXTRAS)) \
	    --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	    --find-links $(WHEELS) -c constraints-lock.txt --upgrade --quiet -o $(LOCK)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
