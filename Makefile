# The verbs of the project. `make run` and `make test` are the two commands of the README: each
# installs what is missing first (uv, the locked environment, the dbt manifest).

SHELL := /bin/bash
ROOT := $(dir $(abspath $(lastword $(MAKEFILE_LIST))))
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
# The scripts, styles and fonts of Great Expectations' Data Docs, from npm, so the docs work offline
DATA_DOCS_JS := expectations/data_docs_assets/node_modules/.installed
# Debian's PostgreSQL server: the tests run the platform on a throwaway cluster of it
POSTGRES := /usr/lib/postgresql
# Debian's Java and PostgreSQL JDBC driver (pgjdbc): the tests run a Java program against the SQL endpoint
JDBC := /usr/share/java/postgresql.jar
# Debian's Java runtime, which the spark target's local PySpark runs on
JAVA := /usr/bin/java
# The metrics server's live page: Cube's client (locked npm packages) bundled by esbuild
LIVE_PAGE := semantic/live/dist/live.js
# Dagster's instance home, as `make run` and `make dev` use it (data/dagster)
DAGSTER_INSTANCE := data/dagster/dagster.yaml
# Debian's eatmydata: the tests run with fsync a no-op (see TEST_RUN)
EATMYDATA := /usr/bin/eatmydata
# Apache Superset in its own locked environment (bi/pyproject.toml, bi/uv.lock): `make bi` serves it, the tests drive it
SUPERSET := bi/.venv/.synced

.PHONY: dagster-env bi bi-install report serve-reports live-page run run-spark test test-durations test-postgres test-spark bench-scale serve serve-sql collect dev microbatch bench-freshness bench-live mlflow-ui bench bench-quality bench-semantic bench-ml bench-collector bench-reports bench-experiments bench-questions bench-insights bench-bi lint manifest install clean retention backup restore erase serve-quality-docs

## run: the main job end to end on the embedded default, then a summary
run: install manifest $(REPORTS_JS) $(DATA_DOCS_JS)
	$(RUN) python -m orchestration.main

## test: the test suite, on every core (pytest-xdist: TEST_WORKERS=1 runs it in one process)
TEST_WORKERS ?= 2
# The suite runs under eatmydata, which makes fsync return at once, as its PostgreSQL clusters run with
# fsync=off: a write is still written and read back, only not forced to the disk, which no test can tell
# apart (none cuts the power). Dagster's SQLite event log commits each of a run's ~900 events with an
# fsync, and with two workers writing each took ~100 ms (a tiny main run: 268 s without it, 195 s with it).
TEST_RUN := eatmydata $(RUN)
test: install manifest $(CUBE_JS) $(SEGMENT_NODE) $(REPORTS_JS) $(LIVE_PAGE) $(DATA_DOCS_JS) $(CHROMIUM) $(POSTGRES) $(JDBC) $(JAVA) $(SUPERSET) $(EATMYDATA)
	$(TEST_RUN) pytest -n $(TEST_WORKERS) --dist loadscope

## test-durations: the test suite as `make test` runs it, then where its time went (per folder, the slowest 25)
test-durations: install manifest $(CUBE_JS) $(SEGMENT_NODE) $(REPORTS_JS) $(LIVE_PAGE) $(DATA_DOCS_JS) $(CHROMIUM) $(POSTGRES) $(JDBC) $(JAVA) $(SUPERSET) $(EATMYDATA)
	@mkdir -p data
	$(TEST_RUN) pytest -n $(TEST_WORKERS) --dist loadscope --junitxml=data/test-durations.xml; status=$$?; \
		$(RUN) python -m tests.durations data/test-durations.xml; exit $$status

## test-postgres: only the tests on a throwaway PostgreSQL cluster (the main job with DBT_TARGET=postgres)
test-postgres: install manifest $(DATA_DOCS_JS) $(POSTGRES) $(EATMYDATA)
	$(TEST_RUN) pytest -m postgres

## test-spark: only the tests on local Apache Spark (the main job with DBT_TARGET=spark)
test-spark: install manifest $(JAVA) $(EATMYDATA)
	$(TEST_RUN) pytest -m spark

## run-spark: the main job end to end on local Apache Spark (DBT_TARGET=spark; docs/scaling.md)
run-spark: install manifest $(JAVA)
	DBT_TARGET=spark $(RUN) python -m orchestration.main

## serve: the metrics server (Cube's REST API and WebSockets, the live page at /live) on http://127.0.0.1:4000
##   over the published data
serve: install manifest $(LIVE_PAGE)
	@test -n "$$SEMANTIC_API_SECRET" || { echo "set SEMANTIC_API_SECRET (signs the API's JWTs)"; exit 1; }
	$(RUN) python -m semantic.server --port 4000

## serve-sql: the SQL endpoint (PostgreSQL wire protocol) on 127.0.0.1:15432; the password is a token
serve-sql: install manifest
	@test -n "$$SEMANTIC_API_SECRET" || { echo "set SEMANTIC_API_SECRET (signs the API's JWTs)"; exit 1; }
	$(RUN) python -m semantic.pgwire --port 15432

## bi: Apache Superset on http://127.0.0.1:8088 over the SQL endpoint (`make serve-sql` first), provisioned from the
##   dbt semantic definitions (datasets, roles, demo users per tenant, the Executive KPIs dashboard); prints the logins
bi: install manifest $(SUPERSET)
	@test -n "$$SEMANTIC_API_SECRET" || { echo "set SEMANTIC_API_SECRET (the SQL endpoint's: signs each user's token)"; exit 1; }
	$(RUN) python -m semantic.superset.run

## bi-install: only Superset's environment (bi/.venv, about 800 MB), from its lock
bi-install: $(SUPERSET)

## collect: the event collector on http://127.0.0.1:8100 (Segment's tracking API and /v1/events), landing in data/landing/
collect: install
	@test -n "$$COLLECTOR_WRITE_KEYS$$COLLECTOR_WRITE_KEYS_FILE" || { echo "set COLLECTOR_WRITE_KEYS=key=tenant[,...]"; exit 1; }
	$(RUN) python -m ingestion.collector --port 8100

## dev: the Dagster UI on http://127.0.0.1:3000 and the event collector on :8100, together (Ctrl-C stops both)
dev: install manifest $(DATA_DOCS_JS)
	$(RUN) python -m orchestration.dev

## microbatch: one micro-batch now (load closed landing files, refresh the real-time marts, publish)
microbatch: install manifest $(DATA_DOCS_JS)
	$(RUN) python -m orchestration.main --job events_microbatch_job

## retention: apply the retention policy now (orchestration/retention.yml; Dagster schedule `daily_retention`)
retention: install manifest
	$(RUN) python -m orchestration.lifecycle retention

## backup: back up the warehouse and the MLflow store into data/backups/ (Dagster schedule `daily_backup`)
backup: install manifest
	$(RUN) python -m orchestration.lifecycle backup

## restore: the warehouse as of AT=<ISO time, or now>, from the last backup before it and the landing files
##   after it (MLFLOW=1 restores the MLflow store from the same backup too)
restore: install manifest
	@test -n "$(AT)" || { echo "name the time: make restore AT=2026-11-20T08:00:00Z (or AT=now)"; exit 1; }
	$(RUN) python -m orchestration.lifecycle restore --at "$(AT)" $(if $(MLFLOW),--mlflow)

## erase: erase a person's data everywhere, with an audit record: make erase TENANT=t001 USER=u0000042
erase: install manifest
	@test "$(origin USER)" = "command line" && test -n "$(TENANT)" \
		|| { echo "name them on the command line: make erase TENANT=<tenant> USER=<user id>"; exit 1; }
	$(RUN) python -m orchestration.lifecycle erase --tenant "$(TENANT)" --user "$(USER)"

## mlflow-ui: browse the forecasting experiments and registered models on http://127.0.0.1:5000
mlflow-ui: install
	MLFLOW_TRACKING_URI=sqlite:///$(CURDIR)/data/mlflow/mlflow.db \
		$(RUN) mlflow ui --backend-store-uri sqlite:///$(CURDIR)/data/mlflow/mlflow.db --host 127.0.0.1 --port 5000

## bench: load + build figures for the default sample and ten times it (slow)
bench: install manifest $(REPORTS_JS) $(CHROMIUM)
	$(RUN) python -m bench.pipeline
	$(RUN) python -m bench.quality
	$(RUN) python -m bench.semantic --data-dir data
	$(RUN) python -m bench.ml --data-dir data
	$(RUN) python -m bench.anomaly_ceiling --data-dir data
	$(RUN) python -m bench.experiments --data-dir data
	$(RUN) python -m bench.questions --data-dir data
	$(RUN) python -m bench.collector
	$(RUN) python -m bench.freshness
	$(RUN) python -m bench.reports

## bench-collector: the collector against a baseline server: events per minute, acknowledgement p99, small batches'
##   p99 while 20,000-event batches arrive, zero loss
bench-collector: install
	$(RUN) python -m bench.collector

## bench-freshness: acknowledgement to visible in the published mart, the metrics API and the live page; publish time at 1x and 30x
bench-freshness: install manifest $(LIVE_PAGE) $(CHROMIUM)
	$(RUN) python -m bench.freshness

## bench-live: publish of the real-time mart to the live page (pushed) against a REST poller (after `make run`)
bench-live: install manifest $(LIVE_PAGE) $(CHROMIUM)
	$(RUN) python -m bench.live --data-dir data

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

## bench-insights: insight drivers on the sample (after `make run`): attribution accuracy of the detected injected
## anomalies against attributing to the largest segment, time to explain one anomaly, drivers on ordinary days
bench-insights: install manifest
	$(RUN) python -m bench.insights --data-dir data

## bench-semantic: the metrics server under 100 concurrent clients (after `make run`)
bench-semantic: install manifest
	$(RUN) python -m bench.semantic --data-dir data

## bench-questions: the question translator on its gold set: exact-match accuracy of the query, refusals, wrong
##   answers given with confidence, latency per question with execution, beside the gold queries run directly
##   (after `make run`: the default sample)
bench-questions: install manifest
	$(RUN) python -m bench.questions --data-dir data

## bench-bi: `make bi` from installed to serving, fresh and restarted, and each starter chart's first query through
##   Superset against the same query sent to the SQL endpoint directly (after `make run`)
bench-bi: install manifest $(SUPERSET)
	$(RUN) python -m bench.superset --data-dir data

## bench-scale: the main job's wall time and peak memory (and each step's) on DuckDB at 1x, 10x, 30x the default
##   sample and on local Spark at 1x, 10x (hours on a laptop; docs/scaling.md has the figures); pick points with
##   BENCH_SCALE_ARGS, e.g. make bench-scale BENCH_SCALE_ARGS="--duckdb 30 --spark"
bench-scale: install manifest $(JAVA)
	$(RUN) python -m bench.scale $(BENCH_SCALE_ARGS)

## bench-quality: the wall time the quality gates add to the main job (default sample)
bench-quality: install manifest
	$(RUN) python -m bench.quality

## lint: ruff on the Python, sqlfluff on the dbt models as dbt compiles them (.sqlfluff; an in-memory
##   warehouse, so linting never opens or locks data/warehouse.duckdb)
lint: install manifest
	$(RUN) ruff check .
	PLATFORM_WAREHOUSE=:memory: $(RUN) sqlfluff lint dbt_project/models

install: .venv/.synced $(DAGSTER_INSTANCE) dagster-env

# Dagster's instance (the warehouse pool, retries, run history) under data/dagster, and `.env` naming it:
# `dagster dev` loads `.env` from the folder it starts in, so plain `dagster dev -w workspace.yaml` uses this
# instance too, not a temporary one. A DAGSTER_HOME already set (`make dev` sets its data directory's) wins;
# a `.env` that already names DAGSTER_HOME is left as it is.
$(DAGSTER_INSTANCE):
	@mkdir -p $(@D) && cp -n $(ROOT)orchestration/dagster.yaml $@

dagster-env:
	@grep -qs '^DAGSTER_HOME=' .env || echo 'DAGSTER_HOME=$${DAGSTER_HOME:-$(CURDIR)/data/dagster}' >> .env

manifest: $(MANIFEST)

.venv/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --user --quiet uv \
		|| python3 -m pip install --user --quiet --break-system-packages uv
	$(UV) sync --frozen
	touch $@

$(SUPERSET): bi/pyproject.toml bi/uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --user --quiet uv \
		|| python3 -m pip install --user --quiet --break-system-packages uv
	$(UV) sync --frozen --project bi --quiet
	touch $@

$(CUBE_JS): tests/semantic/cube_js/package.json tests/semantic/cube_js/package-lock.json
	npm ci --prefix tests/semantic/cube_js --no-audit --no-fund --loglevel=error
	touch $@

## live-page: build the live page's script (semantic/live/dist/, never committed)
live-page: $(LIVE_PAGE)

$(LIVE_PAGE): semantic/live/package.json semantic/live/package-lock.json semantic/live/src/live.js
	npm ci --prefix semantic/live --no-audit --no-fund --loglevel=error
	npm run --prefix semantic/live --silent build

$(SEGMENT_NODE): tests/ingestion/segment_node/package.json tests/ingestion/segment_node/package-lock.json
	npm ci --prefix tests/ingestion/segment_node --no-audit --no-fund --loglevel=error
	touch $@

# `npm install --no-save` installs the locked versions: npm 11 writes locks without other platforms'
# optional packages (rollup's, DuckDB's bindings), and then refuses `npm ci` on them.
$(REPORTS_JS): reports/package.json reports/package-lock.json
	npm install --prefix reports --no-save --no-audit --no-fund --loglevel=error
	touch $@

$(DATA_DOCS_JS): expectations/data_docs_assets/package.json expectations/data_docs_assets/package-lock.json
	npm ci --prefix expectations/data_docs_assets --no-audit --no-fund --loglevel=error
	touch $@

$(CHROMIUM):
	command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }

$(POSTGRES):
	apt-get update -qq && apt-get install -y -qq postgresql

$(JAVA):
	apt-get update -qq && apt-get install -y -qq default-jre-headless

$(EATMYDATA):
	apt-get update -qq && apt-get install -y -qq eatmydata

# the JDK (not only the runtime): the test program runs in source mode, which compiles it
$(JDBC):
	apt-get update -qq && apt-get install -y -qq default-jdk-headless libpostgresql-jdbc-java

## report: render the chosen pages to PDF, export every page's datasets, email and post them (REPORTS_* settings)
report: install $(REPORTS_JS) $(CHROMIUM)
	$(RUN) python -m orchestration.main --job report_distribution_job

## serve-quality-docs: Great Expectations' Data Docs on http://127.0.0.1:3200 (after `make run`; they work offline)
serve-quality-docs: install $(DATA_DOCS_JS)
	$(RUN) python -m expectations.data_docs --port 3200

## serve-reports: the built Evidence reports on http://127.0.0.1:3100 (after `make run`)
serve-reports: install
	$(RUN) python -m reports.serve --port 3100

$(MANIFEST): .venv/.synced $(DBT_FILES)
	$(RUN) dbt parse --project-dir dbt_project --profiles-dir dbt_project --quiet
	touch $@

clean:
	rm -rf dbt_project/target .venv bi/.venv tests/semantic/cube_js/node_modules tests/ingestion/segment_node/node_modules \
		semantic/live/node_modules semantic/live/dist
