# The README's two commands: `make search` (main job) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PIN := torch==2.13.0

.PHONY: install test lint search clean

# torch is installed first and pinned: a bare torch requirement would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[dev]' $(TORCH_PIN)
	touch $@

install: $(VENV)/.installed

# ruff; the layer contracts of pyproject.toml (docs/architecture.md); no dead code at vulture's 80% confidence
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/vulture cvae search scripts cluster bench --min-confidence 80

test: install lint
	$(PY) -m pytest -q  # the fast tier, on 2 workers (pyproject.toml's addopts)
	$(PY) -m pytest -q -n 0 -m "slow or cluster"  # real searches and the 3-node cluster, one at a time

# The main job: the default laptop search on a local Ray, then finalize, generate and score (runs/demo/).
search: install
	$(PY) scripts/demo.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
