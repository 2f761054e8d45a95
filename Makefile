# The verbs of the project. `make run` and `make test` are the two commands of the README: each
# installs what is missing first (uv, the locked environment, the dbt manifest).

SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
# uv from PATH, else the one pip installs (`python3 -m uv` works wherever pip put it)
UV := $(or $(shell command -v uv 2>/dev/null),python3 -m uv)
RUN := $(UV) run --frozen
DBT_FILES := $(shell find dbt_project/models dbt_project/macros dbt_project/tests dbt_project/seeds -type f 2>/dev/null) \
             dbt_project/dbt_project.yml dbt_project/profiles.yml
MANIFEST := dbt_project/target/manifest.json
# Cube's official JavaScript client, which the tests run against the metrics server
CUBE_JS := tests/semantic/cube_js/node_modules/.installed
# Segment's official Node.js SDK, which the tests send events to the collector with
SEGMENT_NODE := tests/ingestion/segment_node/node_modules/.installed
# The Evidence project's locked packages, and Debian's Chromium (the tests open the reports in it)
REPORTS_JS := reports/node_modules/.package-lock.json
CHROMIUM := /usr/bin/chromium
# Debian's PostgreSQL server: the tests run the platform on a throwaway cluster of it
POSTGRES := /usr/lib/postgresql
# Debian's Java and PostgreSQL JDBC driver (pgjdbc): the tests run a Java program against the SQL endpoint
JDBC := /usr/share/java/postgresql.jar

.PHONY: report serve-reports run test test-durations test-postgres serve serve-sql collect dev microbatch bench-freshness mlflow-ui bench bench-quality bench-semantic bench-ml bench-collector bench-reports bench-experiments lint manifest install clean

## run: the main job end to end on the embedded default, then a summary
run: install manifest $(REPORTS_JS)
	$(RUN) python -m orchestration.main

## test: the test suite, on every core (pytest-xdist: TEST_WORKERS=1 runs it in one process)
TEST_WORKERS ?= 2
test: install manifest $(CUBE_JS) $(SEGMENT_NODE) $(REPORTS_JS) $(CHROMIUM) $(POSTGRES) $(JDBC)
	$(RUN) pytest -n $(TEST_WORKERS) --dist loadscope

## test-durations: the test suite as `make test` runs it, then where its time went (per folder, the slowest 25)
test-durations: install manifest $(CUBE_JS) $(SEGMENT_NODE) $(REPORTS_JS) $(CHROMIUM) $(POSTGRES)
	@mkdir -p data
	$(RUN) pytest -n $(TEST_WORKERS) --dist loadscope --junitxml=data/test-durations.xml; status=$$?; \
		$(RUN) python -m tests.durations data/test-durations.xml; exit $$status

## test-postgres: only the tests on a throwaway PostgreSQL cluster (the main job with DBT_TARGET=postgres)
test-postgres: install manifest $(POSTGRES)
	$(RUN) pytest -m postgres

## serve: the metrics server (Cube's REST API) on http://127.0.0.1:4000 over the published data
serve: install manifest
	@test -n "$$SEMANTIC_API_SECRET" || { echo "set SEMANTIC_API_SECRET (signs the API's JWTs)"; exit 1; }
	$(RUN) python -m semantic.server --port 4000

## serve-sql: the SQL endpoint (PostgreSQL wire protocol) on 127.0.0.1:15432; the password is a token
serve-sql: install manifest
	@test -n "$$SEMANTIC_API_SECRET" || { echo "set SEMANTIC_API_SECRET (signs the API's JWTs)"; exit 1; }
	$(RUN) python -m semantic.pgwire --port 15432

## collect: the event collector on http://127.0.0.1:8100 (Segment's tracking API and /v1/events), landing in data/landing/
collect: install
	@test -n "$$COLLECTOR_WRITE_KEYS$$COLLECTOR_WRITE_KEYS_FILE" || { echo "set COLLECTOR_WRITE_KEYS=key=tenant[,...]"; exit 1; }
	$(RUN) python -m ingestion.collector --port 8100

## dev: the Dagster UI on http://127.0.0.1:3000 and the event collector on :8100, together (Ctrl-C stops both)
dev: install manifest
	$(RUN) python -m orchestration.dev

## microbatch: one micro-batch now (load closed landing files, refresh the real-time marts, publish)
microbatch: install manifest
	$(RUN) python -m orchestration.main --job events_microbatch_job

## mlflow-ui: browse the forecasting experiments and registered models on http://127.0.0.1:5000
mlflow-ui: install
	$(RUN) mlflow ui --backend-store-uri sqlite:///$(CURDIR)/data/mlflow/mlflow.db --host 127.0.0.1 --port 5000

## bench: load + build figures for the default sample and ten times it (slow)
bench: install manifest $(REPORTS_JS) $(CHROMIUM)
	$(RUN) python -m bench.pipeline
	$(RUN) python -m bench.quality
	$(RUN) python -m bench.semantic --data-dir data
	$(RUN) python -m bench.ml --data-dir data
	$(RUN) python -m bench.anomaly_ceiling --data-dir data
	$(RUN) python -m bench.experiments --data-dir data
	$(RUN) python -m bench.collector
	$(RUN) python -m bench.freshness
	$(RUN) python -m bench.reports

## bench-collector: the collector against a baseline server: events per minute, acknowledgement p99, small batches'
##   p99 while 20,000-event batches arrive, zero loss
bench-collector: install
	$(RUN) python -m bench.collector

## bench-freshness: acknowledgement to visible in the published real-time mart, through sensor and micro-batches
bench-freshness: install manifest
	$(RUN) python -m bench.freshness

## bench-reports: Evidence site build time and time until each page's charts are drawn (after `make run`)
bench-reports: install $(REPORTS_JS) $(CHROMIUM)
	$(RUN) python -m bench.reports

## bench-ml: forecasts on 30 real series and the sample against AutoETS, AutoTheta and AutoARIMA; anomaly detection on
##   injected anomalies beside a seasonal robust z-score and the oracle; the sample generator's anomaly ceiling (after `make run`)
bench-ml: install manifest
	$(RUN) python -m bench.ml --data-dir data
	$(RUN) python -m bench.anomaly_ceiling --data-dir data

## bench-experiments: A/A false positives, interval coverage of the generator's true lifts, daily looks with
## always-valid intervals, CUPED's variance reduction, the injected sample-ratio mismatch (5 to 10 minutes;
## with `make run` first, also the pipeline's own decisions on the default sample)
bench-experiments: install manifest
	$(RUN) python -m bench.experiments --data-dir data

## bench-semantic: the metrics server under 100 concurrent clients (after `make run`)
bench-semantic: install manifest
	$(RUN) python -m bench.semantic --data-dir data

## bench-quality: the wall time the quality gates add to the main job (default sample)
bench-quality: install manifest
	$(RUN) python -m bench.quality

lint: install
	$(RUN) ruff check .

install: .venv/.synced

manifest: $(MANIFEST)

.venv/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --user --quiet uv \
		|| python3 -m pip install --user --quiet --break-system-packages uv
	$(UV) sync --frozen
	touch $@

$(CUBE_JS): tests/semantic/cube_js/package.json tests/semantic/cube_js/package-lock.json
	npm ci --prefix tests/semantic/cube_js --no-audit --no-fund --loglevel=error
	touch $@

$(SEGMENT_NODE): tests/ingestion/segment_node/package.json tests/ingestion/segment_node/package-lock.json
	npm ci --prefix tests/ingestion/segment_node --no-audit --no-fund --loglevel=error
	touch $@

# `npm install --no-save` installs the locked versions: npm 11 writes locks without other platforms'
# optional packages (rollup's, DuckDB's bindings), and then refuses `npm ci` on them.
$(REPORTS_JS): reports/package.json reports/package-lock.json
	npm install --prefix reports --no-save --no-audit --no-fund --loglevel=error
	touch $@

$(CHROMIUM):
	command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }

$(POSTGRES):
	apt-get update -qq && apt-get install -y -qq postgresql

# the JDK (not only the runtime): the test program runs in source mode, which compiles it
$(JDBC):
	apt-get update -qq && apt-get install -y -qq default-jdk-headless libpostgresql-jdbc-java

## report: render the chosen pages to PDF, export every page's datasets, email and post them (REPORTS_* settings)
report: install $(REPORTS_JS) $(CHROMIUM)
	$(RUN) python -m orchestration.main --job report_distribution_job

## serve-reports: the built Evidence reports on http://127.0.0.1:3100 (after `make run`)
serve-reports: install
	$(RUN) python -m reports.serve --port 3100

$(MANIFEST): .venv/.synced $(DBT_FILES)
	$(RUN) dbt parse --project-dir dbt_project --profiles-dir dbt_project --quiet
	touch $@

clean:
	rm -rf dbt_project/target .venv tests/semantic/cube_js/node_modules tests/ingestion/segment_node/node_modules
