# Frugal: `make demo` runs the whole loop on the embedded default; `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: demo test install serve bench lint clean

SDK    := $(wildcard sdk/pyproject.toml)

$(STAMP): pyproject.toml $(SDK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev,demo,pdf]' $(if $(SDK),-e './sdk[openfeature]')
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/frugal demo

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

serve: $(STAMP)
	$(VENV)/bin/frugal db upgrade
	$(VENV)/bin/frugal serve

bench: $(STAMP)
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .frugal .pytest_cache
