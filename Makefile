# Two entry points on a fresh Debian/Ubuntu machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup system-deps venv test lint typecheck pytest demo clean bundle msi bundle-test \
	windows-deps

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

# Benchmarks (bench/README.md): one target each, `make bench` runs them all in turn. They report
# figures and are never part of `make test`. platform_search generates 1M people (~12 min).
BENCHES := bench-agent bench-search bench-e2e bench-passports bench-export bench-load
.PHONY: bench $(BENCHES)
bench: $(BENCHES)

bench-agent: setup
	$(PY) bench/agent_throughput.py

bench-search: setup
	$(PY) bench/platform_search.py

bench-e2e: setup
	$(PY) bench/e2e_sign.py

bench-passports: setup
	$(PY) bench/issue_passports.py

bench-export: setup
	$(PY) bench/export_invalid.py

bench-load: setup
	$(PY) bench/load_national.py

# The agent's one-folder PyInstaller build (dist/kyso-agent/), its size and what was trimmed. It is
# built from a virtual environment holding the agent's half alone (kyso[bundle]): nothing of the
# platform's libraries is there for the analysis to pull in.
AGENT_VENV := build/agent-venv
$(AGENT_VENV)/.installed: pyproject.toml
	@test -x $(AGENT_VENV)/bin/python || $(PYTHON) -m venv $(AGENT_VENV)
	$(AGENT_VENV)/bin/python -m pip install -q --upgrade pip
	$(AGENT_VENV)/bin/python -m pip install -q '.[bundle]'
	@touch $@

bundle: setup $(AGENT_VENV)/.installed
	@bash installer/build-deps.sh
	$(AGENT_VENV)/bin/pyinstaller --noconfirm --clean --log-level WARN --distpath dist \
		--workpath build/pyinstaller installer/kyso-agent.spec
	@cat build/pyinstaller/kyso-agent/trimmed.txt
	@du -sh dist/kyso-agent

# The MSI from a staged Windows-layout placeholder tree, for inspecting its tables (the real MSI
# is built by the WiX toolset on the Windows runner: .github/workflows/windows.yml).
msi: setup
	@bash installer/build-deps.sh
	$(PY) installer/build_msi.py --placeholder --out dist/kyso-agent-placeholder.msi

# CI, after `make test`: the frozen agent's --self-test against SoftHSM, its libraries, its
# desktop window, and the MSI's tables.
bundle-test: bundle msi
	KYSO_REQUIRE_BUNDLE=1 KYSO_BUNDLE=dist/kyso-agent $(VENV)/bin/pytest tests/installer -q

# The agent's whole dependency set resolved for Windows (win_amd64, wheels only) for every
# supported Python version: a dependency without a Windows wheel fails here, not on Windows.
windows-deps: setup
	$(PY) installer/windows_deps.py

clean:
	rm -rf build .mypy_cache .pytest_cache .ruff_cache
