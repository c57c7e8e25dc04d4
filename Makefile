# Frugal: `make demo` runs the whole loop on the embedded default; `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: demo test install serve bench lint clean system-deps

SDK    := $(wildcard sdk/pyproject.toml)

$(STAMP): pyproject.toml setup.py $(SDK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev,demo,pdf]' $(if $(SDK),-e './sdk[openfeature]')
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/frugal demo

# The report tests need a browser (headless Chromium, driven by Playwright), pdftoppm (poppler-utils) and
# WeasyPrint's pango; the operations tests need promtool (prometheus) and docker-compose (to validate
# ops/ and docker/).  From Debian, never downloaded at test time; installed only when missing.
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system-deps:
	@if [ ! -x /usr/bin/chromium ] || ! command -v pdftoppm >/dev/null 2>&1 || ! ldconfig -p | grep -q libpangoft2-1.0 || ! ldconfig -p | grep -q libharfbuzz-subset \
	    || ! command -v promtool >/dev/null 2>&1 || ! command -v docker-compose >/dev/null 2>&1; then \
		$(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends \
			chromium poppler-utils libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core prometheus docker-compose; \
	fi

test: system-deps $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

serve: $(STAMP)
	$(VENV)/bin/frugal db upgrade
	$(VENV)/bin/frugal serve

BENCHMARKS = inference statistics analysis ingest sdk shadow_scoring serving   # loadgen.py and bare_app.py are serving.py's parts

bench: $(STAMP)
	for b in $(BENCHMARKS); do echo "== benchmarks/$$b.py"; $(PY) benchmarks/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) .frugal .pytest_cache
