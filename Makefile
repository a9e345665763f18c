# The two set-up commands: `make run` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
# gunicorn's address, as gunicorn.conf.py reads it: BIND, else HOST:PORT.
HOST ?= 127.0.0.1
PORT ?= 8000
BIND ?= $(HOST):$(PORT)
# Empty: gunicorn.conf.py decides (workers from the CPU count, timeout from the database limits).
WORKERS ?=
TIMEOUT ?=
BENCH_ARGS ?=
# Arguments for pytest in `make test` and `make test-pg`, e.g. PYTEST_ARGS="-x tests/test_cli.py".
PYTEST_ARGS ?=
# The PostgreSQL server on which `make test-pg` creates its own database (no database name here).
PG_URL ?= postgresql://postgres@127.0.0.1:5432

.PHONY: install migrate run test test-pg bench screenshot clean

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

install: $(BIN)/.installed

migrate: install
	$(BIN)/flask --app wsgi db upgrade

# The webhook delivery worker runs in the background beside gunicorn; when
# gunicorn stops (Ctrl-C), the trap stops the worker, which finishes its attempt.
run: migrate
	$(BIN)/flask --app wsgi webhooks deliver & worker=$$!; \
	trap 'kill $$worker 2>/dev/null; wait $$worker' EXIT INT TERM; \
	$(BIN)/gunicorn -c gunicorn.conf.py --bind $(BIND) \
		$(if $(WORKERS),--workers $(WORKERS)) $(if $(TIMEOUT),--timeout $(TIMEOUT)) wsgi:app

# Without TEST_DATABASE_URL the PostgreSQL half of the tests is skipped (the
# run's last lines say how many); `make test-pg` runs them too.
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The whole suite on SQLite and on PostgreSQL, in a database created for the run
# on PG_URL's server (createdb and dropdb: Debian's postgresql-client) and
# dropped afterwards, whether the tests pass, fail or are interrupted.
test-pg: install
	@db=usage_test_$$(date +%Y%m%d_%H%M%S)_$$$$; \
	createdb --maintenance-db="$(PG_URL)/postgres" "$$db" || exit 1; \
	echo "Created database $$db on $(PG_URL)"; \
	trap 'dropdb --if-exists --force --maintenance-db="$(PG_URL)/postgres" "$$db" && echo "Dropped database $$db"' EXIT; \
	trap 'exit 130' INT TERM; \
	TEST_DATABASE_URL="$(PG_URL)/$$db" REQUIRE_POSTGRES=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

# The benchmark seeds and migrates a database of its own (instance/bench.db unless
# BENCH_DATABASE_URL or --database-url names another), never the one `make run` serves.
bench: install
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

# docs/dashboard.png, from the shipped sample in a throwaway database (needs Debian's
# chromium and chromium-driver).
screenshot: install
	$(BIN)/python docs/screenshot.py

# The virtualenv, and the benchmark's database (never the one `make run` serves).
clean:
	rm -rf $(VENV) *.egg-info instance/bench.db instance/bench.db-wal instance/bench.db-shm
