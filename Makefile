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

.PHONY: install migrate run test bench screenshot clean

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

test: install
	$(BIN)/python -m pytest

# The benchmark seeds and migrates a database of its own (instance/bench.db unless
# BENCH_DATABASE_URL or --database-url names another), never the one `make run` serves.
bench: install
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

# docs/dashboard.png, from the shipped sample in a throwaway database (needs Debian's
# chromium and chromium-driver).
screenshot: install
	$(BIN)/python docs/screenshot.py

clean:
	rm -rf $(VENV) *.egg-info
