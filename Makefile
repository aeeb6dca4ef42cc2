# Jobtrail — `make run` runs the product, `make test` runs the tests. Nothing else to install.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
PYTEST_ARGS ?=
# make test, test-quick and test-production run their tests in this many processes
# (pytest-xdist; each has its own test database, Redis database, metrics and broker folders);
# TEST_WORKERS=0 runs them in this one process (PYTEST_ARGS="-x --pdb").
TEST_WORKERS ?= 2

.PHONY: run test test-quick test-production contract bench screenshots lint typecheck check migrate clean help runtime-venv

help:
	@echo "make run     - web + Celery workers (worker, wide) + Celery beat on http://127.0.0.1:$(PORT)/"
	@echo "make test    - the whole test suite (DATABASE_URL / CELERY_BROKER_URL when set)"
	@echo "make test-production - the deployed shape under broker, worker and database failures"
	@echo "make check   - ruff, import-linter contracts and mypy"
	@echo "make contract - Schemathesis checks /api/schema/ against a DEBUG-off server (PostgreSQL)"
	@echo "make bench   - benchmarks vs baselines run alongside (BENCH=http,webhooks,latency,noisy; BENCH_QUICK=1)"

$(VENV)/.runtime: requirements.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	@touch $@

$(VENV)/.dev: requirements-dev.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	@touch $@ $(VENV)/.runtime

# The production shape: requirements.lock only, no dev tools (gunicorn, celery in .venv-runtime/bin/).
runtime-venv: .venv-runtime/.installed
.venv-runtime/.installed: requirements.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	@test -x .venv-runtime/bin/python || $(PYTHON) -m venv .venv-runtime
	.venv-runtime/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	.venv-runtime/bin/python -m pip check
	@touch $@

.env:
	@printf 'DJANGO_DEBUG=1\nDJANGO_SECRET_KEY=%s\nJOBTRAIL_WEBHOOK_ALLOW_PRIVATE_TARGETS=1\n' \
		"$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))')" > $@
	@echo "Wrote .env for a local run (DEBUG on, generated secret key)."

migrate: $(VENV)/.runtime .env
	$(PY) manage.py migrate --noinput

run: migrate
	$(PY) manage.py collectstatic --noinput --verbosity 0
	@$(PY) manage.py ensure_admin
	@$(PY) manage.py seed_demo
	@echo ""
	@echo "  Jobtrail is starting (web + worker + beat); Ctrl-C stops everything."
	@echo "  Admin:     http://127.0.0.1:$(PORT)/admin/"
	@echo "  API:       http://127.0.0.1:$(PORT)/api/v1/"
	@echo "  API docs:  http://127.0.0.1:$(PORT)/api/docs/"
	@echo ""
	JOBTRAIL_PORT=$(PORT) PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m config.run_procfile

test: $(VENV)/.dev
	$(VENV)/bin/pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

test-quick: $(VENV)/.dev
	$(VENV)/bin/pytest -n $(TEST_WORKERS) -m "not e2e and not production" $(PYTEST_ARGS)

# gunicorn, worker and beat from .venv-runtime (requirements.lock only) against a private
# PostgreSQL cluster and private Redis / RabbitMQ brokers that the tests start, break and stop.
test-production: $(VENV)/.dev
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --maxschedchunk 1 -m production tests/production $(PYTEST_ARGS)

# The OpenAPI document against the server: a DEBUG-off gunicorn on a fresh PostgreSQL database
# (SCHEMATHESIS_DB_SERVER, SCHEMATHESIS_DB_NAME), fuzzed by Schemathesis with every check.
contract: $(VENV)/.dev
	VENV=$(VENV) tests/contract/run_schemathesis.sh

bench: $(VENV)/.dev
	$(PY) bench/run.py

# Demo data in a throwaway SQLite database, every console page at 1280x900 into docs/screenshots/
screenshots: $(VENV)/.dev
	$(PY) docs/screenshots.py

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: $(VENV)/.dev
	$(VENV)/bin/mypy config jobs webhooks reports ops

check: lint typecheck

clean:
	rm -rf $(VENV) .venv-runtime .venv-runtime.lock var staticfiles build *.egg-info .pytest_cache .mypy_cache .ruff_cache
