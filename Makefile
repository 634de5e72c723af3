# humanref: `make setup` once, then `make demo` (offline CPU pipeline) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HUMANREF := $(VENV)/bin/humanref
DEMO_WS ?= ws-demo

.PHONY: setup test test-slow test-gpu demo bench lint format clean

setup: $(VENV)/.installed

# Re-runs only when pyproject.toml changes; the second `make setup` is instant.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

test-gpu: setup
	$(PY) -m pytest -q -m gpu

demo: setup
	$(HUMANREF) synth $(DEMO_WS)/subject --seed 0
	$(HUMANREF) run $(DEMO_WS)/subject/image.png $(DEMO_WS) --preset cpu
	$(HUMANREF) status $(DEMO_WS)

bench: setup
	$(PY) bench/hashgrid.py
	$(PY) bench/render_step.py
	$(PY) bench/prep.py
	$(PY) bench/synthetic.py

lint: setup
	$(VENV)/bin/ruff check humanref_cli tests bench
	$(VENV)/bin/ruff format --check humanref_cli tests bench

format: setup
	$(VENV)/bin/ruff format humanref_cli tests bench
	$(VENV)/bin/ruff check --fix humanref_cli tests bench

clean:
	rm -rf $(DEMO_WS) .pytest_cache build *.egg-info
