# archive.py developer tasks.
#   make test   - create .venv if needed, make sure MariaDB binaries exist, run the test suite
#   make demo   - same setup, then run demo/demo.py
# Tests start their own throwaway mariadbd; set ARCHIVE_TEST_DSN=mysql://user:pw@host:port
# to use an existing server instead (then the MariaDB binaries are not needed).

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.requirements-installed
PYTEST_ARGS ?=

.PHONY: venv deps test demo clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q -r requirements-dev.txt
	touch $@

deps:
	@if [ -n "$${ARCHIVE_TEST_DSN:-}" ]; then \
	  echo "deps: ARCHIVE_TEST_DSN is set, not checking for local MariaDB binaries"; \
	elif { command -v mariadbd || test -x /usr/sbin/mariadbd; } >/dev/null 2>&1 \
	     && { command -v mariadb-install-db || test -x /usr/bin/mariadb-install-db; } >/dev/null 2>&1; then \
	  :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "deps: installing mariadb-server with apt-get"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y mariadb-server; \
	else \
	  echo "deps: MariaDB server binaries (mariadbd, mariadb-install-db) not found." >&2; \
	  echo "      Install them, e.g.: sudo apt-get install mariadb-server" >&2; \
	  echo "      or run against an existing server: ARCHIVE_TEST_DSN=mysql://user:pw@127.0.0.1:3306 make test" >&2; \
	  exit 1; \
	fi

test: venv deps
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

demo: venv deps
	$(VENV)/bin/python demo/demo.py

clean:
	rm -rf $(VENV) .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
