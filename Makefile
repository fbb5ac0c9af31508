# wsapp: the two commands are `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev
SYSTEM_PACKAGES := redis-server nginx chromium

.PHONY: run test lint soak bench bench-quick system-deps venv speedups clean

$(PY):
	$(PYTHON) -m venv $(VENV) || { apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PIP) install -q --upgrade pip

$(STAMP): requirements.txt | $(PY)
	$(PIP) install -q -r requirements.txt
	touch $@

$(DEVSTAMP): requirements.txt requirements-dev.txt requirements-uwsgi.txt | $(PY)
	$(PIP) install -q -r requirements-dev.txt
	touch $(STAMP) $@

venv: $(STAMP)

## The C modules (wsapp/speedups/_framing.c, _fanout.c): built when gcc and the Python
## headers are there, else wsapp runs the same code in pure Python (slower; see README).
speedups: | $(PY)
	$(PY) -m wsapp.speedups.build

## Start the embedded server (memory broker, no external service) on WSAPP_HOST:WSAPP_PORT.
run: $(STAMP) speedups
	$(PY) -m wsapp serve

## Install whatever the tests need (system packages via apt when missing), then run them.
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v gcc >/dev/null || missing="$$missing gcc"; \
	$(PYTHON) -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
	  || missing="$$missing python3-dev"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

test: system-deps $(DEVSTAMP)
	$(PY) -m wsapp.speedups.build --require
	$(VENV)/bin/ruff check wsapp tests bench deploy examples wsgi.py gunicorn.conf.py setup.py
	$(PY) -m pytest -q -n 3 --dist loadfile -m "not timing"
	$(PY) -m pytest -q -m timing

lint: $(DEVSTAMP)
	$(VENV)/bin/ruff check wsapp tests bench deploy examples wsgi.py gunicorn.conf.py setup.py

soak: system-deps $(DEVSTAMP) speedups
	$(PY) -m bench.soak

bench: system-deps $(DEVSTAMP) speedups
	$(PY) -m bench.run

bench-quick: system-deps $(DEVSTAMP) speedups
	$(PY) -m bench.run --quick

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
