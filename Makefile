# Two entry points on a fresh Debian/Ubuntu machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup system-deps venv test lint typecheck pytest demo bench clean bundle msi bundle-test

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

# The agent's one-folder PyInstaller build (dist/kyso-agent/), its size and what was trimmed.
bundle: setup
	@bash installer/build-deps.sh
	$(VENV)/bin/pyinstaller --noconfirm --clean --log-level WARN --distpath dist \
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

clean:
	rm -rf build .mypy_cache .pytest_cache .ruff_cache
