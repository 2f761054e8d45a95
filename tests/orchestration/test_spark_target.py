"""The same project on Apache Spark: DBT_TARGET=spark runs the main job with dbt-spark's session
method on local PySpark (Java from Debian). dlt writes the sources as Parquet, dbt builds and tests
every model on Spark, and the steps that need a connection to the warehouse between builds name
themselves as not run. Bad input: no Java, a model that uses a DuckDB-only function, a Spark session
that cannot start, and the metrics server asked to serve from Spark."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ingestion.paths import DataLayout
from orchestration.assets.dbt import failures
from orchestration.environment import DBT_PROJECT_DIR, tool
from semantic.settings import SPARK_NOT_SERVED, ServingSettings, SettingsError
from semantic.warehouse import UnsupportedTarget, WarehouseTarget, spark_tables_reader
from tests.orchestration.helpers import run_main_job

pytestmark = pytest.mark.spark
SPARK = {"DBT_TARGET": "spark"}
NOT_RUN = ("quality gates (Great Expectations)", "forecasts and insights (ml/)", "experiment analysis",
           "published read snapshot (metrics server)", "reports (Evidence)")


@pytest.fixture(scope="module")
def spark_run(tmp_path_factory):
    """The main job as users run it, with DBT_TARGET=spark, on the tiny sample."""
    data_dir = tmp_path_factory.mktemp("spark") / "data"
    return data_dir, run_main_job(data_dir, SPARK)


def test_main_job_builds_and_tests_every_model_on_spark(spark_run):
    data_dir, out = spark_run
    assert "SUCCESS" in out and "FAILED step" not in out, out[-3000:]
    assert f"warehouse (spark): {data_dir / 'spark' / 'warehouse'}" in out
    for step in NOT_RUN:
        assert f"not run on spark: {step}: not supported on the spark target" in out
    built = json.loads((data_dir / "dbt_results" / "dbt_models.json").read_text())
    after = json.loads((data_dir / "dbt_results" / "dbt_forecast_marts.json").read_text())
    manifest = json.loads((DBT_PROJECT_DIR / "target" / "manifest.json").read_text())
    models = sum(node["resource_type"] == "model" for node in manifest["nodes"].values())
    tests = sum(node["resource_type"] == "test" for node in manifest["nodes"].values())
    assert built["model_success"] + after["model_success"] == models  # incremental ones included
    assert built["test_pass"] + after.get("test_pass", 0) == tests
    assert set(built) | set(after) == {"model_success", "seed_success", "test_pass", "unit_test_pass"}
    # what Spark wrote, read back from its Parquet files: every accepted event once
    truth = json.loads(DataLayout(data_dir).ground_truth.read_text())
    with WarehouseTarget.from_environment(SPARK, data_dir).connect() as warehouse:
        assert warehouse.rows("select count(*), count(distinct event_id) from marts.fct_events") == [
            (truth["events"]["valid_events"],) * 2]
        assert warehouse.rows("select count(*) from marts.metrics_daily") == [
            (truth["size"]["tenants"] * truth["size"]["days"],)]
    # dlt's Parquet files, one folder per source table
    assert sorted(p.name for p in (data_dir / "spark" / "sources" / "raw_app").glob("*/*.parquet"))


def test_a_duckdb_only_function_is_named_with_its_model(spark_run, tmp_path):
    """A copy of the project with one model that calls DuckDB's json_extract_string, built on
    the run's Spark warehouse: dbt names the model, Spark the function, and the job's failure
    message (`failures`) carries both."""
    data_dir, _ = spark_run
    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    (project / "models" / "intermediate" / "uses_duckdb.sql").write_text(
        "select json_extract_string('{\"a\": 1}', '$.a') as a\n")
    env = {**os.environ, **SPARK, "PLATFORM_SPARK_DIR": str(data_dir / "spark"),
           "PLATFORM_WAREHOUSE": str(tmp_path / "unused.duckdb")}
    done = subprocess.run([tool("dbt"), "build", "--select", "uses_duckdb", "--project-dir", str(project),
                           "--profiles-dir", str(project), "--target-path", str(tmp_path / "target")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "Failure in model uses_duckdb" in done.stdout
    why = failures(json.loads((tmp_path / "target" / "run_results.json").read_text()))
    assert len(why) == 1 and why[0].startswith("model.analytics_platform.uses_duckdb: ")
    assert "json_extract_string" in why[0] and "UNRESOLVED_ROUTINE" in why[0]


def test_a_spark_session_that_cannot_start_says_why_and_does_not_hang(tmp_path):
    """A master Spark refuses: the job's dbt step stops before dbt in one line (`check_engine`);
    dbt started by hand with it ends at once, the reason from Spark, not a hang."""
    target = WarehouseTarget.from_environment(SPARK, tmp_path)
    with pytest.raises(UnsupportedTarget) as error:
        target.check_engine({**os.environ, "PLATFORM_SPARK_MASTER": "nowhere"})
    assert str(error.value) == ("PLATFORM_SPARK_MASTER='nowhere': Spark's master is local[N], spark://host:port, "
                                "k8s://host:port or yarn")
    env = {**os.environ, **SPARK, "PLATFORM_SPARK_DIR": str(tmp_path / "spark"), "PLATFORM_SPARK_MASTER": "nowhere"}
    done = subprocess.run([tool("dbt"), "build", "--select", "time_spine_daily", "--project-dir", str(DBT_PROJECT_DIR),
                           "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(tmp_path / "target")],
                          env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode != 0
    assert "Master must either be yarn or start with spark, k8s, or local" in done.stderr
    assert "JAVA_GATEWAY_EXITED" in done.stdout


def test_missing_java_is_named_in_one_line(tmp_path):
    target = WarehouseTarget.from_environment(SPARK, tmp_path)
    with pytest.raises(UnsupportedTarget) as no_java:
        target.check_engine({"PATH": str(tmp_path)})
    with pytest.raises(UnsupportedTarget) as wrong_home:
        target.check_engine({"PATH": os.environ["PATH"], "JAVA_HOME": str(tmp_path)})
    for error, where in ((no_java, "no java on PATH"), (wrong_home, f"JAVA_HOME={tmp_path} has no bin/java")):
        assert str(error.value) == (f"the spark target needs Java 17 or later ({where}): install Debian's "
                                    "default-jre-headless (apt-get install default-jre-headless) or set JAVA_HOME")
    target.check_engine(dict(os.environ))  # Java is installed here


def test_the_metrics_server_refuses_spark_in_one_line(tmp_path):
    with pytest.raises(SettingsError) as error:
        ServingSettings.from_environment({**SPARK, "PLATFORM_DATA_DIR": str(tmp_path)}, require_secret=False)
    assert str(error.value) == SPARK_NOT_SERVED and "\n" not in SPARK_NOT_SERVED


def test_spark_tables_are_read_without_a_session(tmp_path):
    """What the summary reads: Spark's Parquet table folders as views, and no writing."""
    import duckdb

    folder = tmp_path / "marts.db" / "orders"
    folder.mkdir(parents=True)
    duckdb.sql(f"copy (select 1 as id union all select 2) to '{folder / 'part-0.parquet'}' (format parquet)")
    (tmp_path / "marts.db" / "empty").mkdir()
    with spark_tables_reader(tmp_path) as warehouse:
        assert warehouse.rows("select table_name from information_schema.tables where table_schema = 'marts'") == [
            ("orders",)]
        assert warehouse.rows("select sum(id) from marts.orders") == [(3,)]
    with pytest.raises(UnsupportedTarget):
        WarehouseTarget.from_environment(SPARK, Path(tmp_path)).connect(read_only=False)
