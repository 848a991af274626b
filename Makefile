# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
RATE ?= 5
PYTHON ?= python3
# These machines' pip configuration lists local package folders that hold only some packages; pip warns
# once for every package missing from each (86 lines on a first install). setuptools adds a ten-line
# advice box to every editable install (folders named like the package could shadow it: here they are
# the package). Everything else pip says stays.
PIP_NOISE := { grep -v -e 'is ignored: it is neither a file nor a directory' \
  | sed -e '/BuildBackendWarning: Editable installation/,/with strategy, WheelFile/d'; true; }

.PHONY: install demo serve test lint debian-packages bench evaluate evaluate-handbook clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@echo "== setting up $(VENV) (first run: about a minute)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip 2>&1 | $(PIP_NOISE); exit $${PIPESTATUS[0]}
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]' 2>&1 | $(PIP_NOISE); exit $${PIPESTATUS[0]}
	@touch $@

demo: install
	@$(PY) manage.py migrate --noinput -v 0
	@$(PY) manage.py demo --port $(PORT) --rate $(RATE)

serve: install
	@$(PY) manage.py migrate --noinput -v 0
	@$(VENV)/bin/daphne -v 0 -b 127.0.0.1 -p $(PORT) fraudsite.asgi:application

lint: install
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@# Models against migration files needs no database: without DATABASE_URL it cannot wait on a missing one.
	@env -u DATABASE_URL $(PY) manage.py makemigrations --check --dry-run

# Debian's packages the tests use: chromium for the browser tests (Playwright drives it; it never downloads a
# browser) and pgbouncer, which a PostgreSQL test serves through in transaction mode.
debian-packages:
	@missing=; command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	  test -x /usr/sbin/pgbouncer || command -v pgbouncer >/dev/null 2>&1 || missing="$$missing pgbouncer"; \
	  if [ -n "$$missing" ]; then \
	    echo "== installing Debian's$$missing for the tests"; \
	    if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	  fi

test: install debian-packages lint
	@echo "== tests on $${DATABASE_URL:-SQLite (embedded)} / $${REDIS_URL:-in-memory channel layer}"
	@$(VENV)/bin/pytest

bench: install debian-packages
	@bash bench/run.sh

evaluate: install
	@$(PY) manage.py migrate --noinput -v 0
	@$(PY) manage.py evaluate

# The Fraud Detection Handbook's benchmark (docs/model.md), a few minutes a seed. It erases its database before each
# seed, so it gets one of its own: HANDBOOK_DATABASE_URL, by default a SQLite file under var/.
SEEDS ?= 0
HANDBOOK_DATABASE_URL ?= sqlite:///$(CURDIR)/var/handbook.sqlite3
evaluate-handbook: install
	@mkdir -p var
	@env -u REDIS_URL DATABASE_URL=$(HANDBOOK_DATABASE_URL) $(PY) manage.py migrate --noinput -v 0
	@env -u REDIS_URL DATABASE_URL=$(HANDBOOK_DATABASE_URL) $(PY) manage.py evaluate_handbook --flush --seeds $(SEEDS) \
	  $(if $(TRAIN_DAYS),--train-days $(TRAIN_DAYS))

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache .ruff_cache
