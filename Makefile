# Two entry points on a fresh Debian/Ubuntu machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup system-deps venv test lint typecheck pytest demo bench clean

setup: system-deps venv

system-deps:
	@bash scripts/system-deps.sh

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy cannot follow setuptools' editable-install finder, so it reads the packages through a
# small tree of symlinks that mirrors their import names (kyso.agent -> agent/).
typecheck: venv
	@mkdir -p build/typecheck/kyso
	@ln -sfn ../../../agent build/typecheck/kyso/agent
	@ln -sfn ../../../platform build/typecheck/kyso/platform
	$(VENV)/bin/mypy -p kyso.agent -p kyso.platform

pytest: setup
	$(VENV)/bin/pytest

test: setup lint typecheck pytest

demo: setup
	$(PY) scripts/demo.py

bench: setup
	$(PY) bench/agent_throughput.py

clean:
	rm -rf build .mypy_cache .pytest_cache .ruff_cache
