# Every target creates what it needs: a fresh clone needs only Python 3.11 and make.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test serve migrate bench clean

$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed (set PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -r requirements-dev.txt
	@touch $(STAMP)

## make demo: start the local host, run hello_world n=5 with live progress, print the result
demo: $(STAMP)
	$(PY) -m local_host demo

## make test: the whole suite (embedded PostgreSQL; TEST_DATABASE_URL runs it on another server too)
test: $(STAMP)
	$(PY) -m pytest
	@if [ -n "$$TEST_DATABASE_URL" ]; then echo "== again on TEST_DATABASE_URL"; $(PY) -m pytest -m "not unit"; fi

## make serve: the long-running local Functions host on http://127.0.0.1:7071, like func start
serve: $(STAMP)
	$(PY) -m local_host serve

## make migrate: apply pending database migrations
migrate: $(STAMP)
	$(PY) -m local_host migrate

clean:
	rm -rf $(VENV) .local .pytest_cache
