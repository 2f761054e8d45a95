"""The dbt project keeps the architecture's promises, read from the parsed manifest: every model
described with a tested primary key, marts fully described and typed under enforced contracts."""

from __future__ import annotations

from tests.conftest import REPO_ROOT


def models(manifest: dict) -> list[dict]:
    return [n for n in manifest["nodes"].values() if n["resource_type"] == "model"]


def columns_tested_by(manifest: dict, model_id: str, test_name: str) -> set[str]:
    return {n.get("column_name") for n in manifest["nodes"].values()
            if n["resource_type"] == "test" and n.get("attached_node") == model_id
            and n.get("test_metadata", {}).get("name") == test_name}


def test_every_model_has_a_description(manifest):
    missing = [m["name"] for m in models(manifest) if not m["description"].strip()]
    assert not missing


def test_every_model_has_a_primary_key_tested_unique_and_not_null(manifest):
    for model in models(manifest):
        uid = model["unique_id"]
        keys = columns_tested_by(manifest, uid, "unique") & columns_tested_by(manifest, uid, "not_null")
        composite = [n for n in manifest["nodes"].values() if n["resource_type"] == "test"
                     and n.get("attached_node") == uid
                     and n.get("test_metadata", {}).get("name") == "unique_combination_of_columns"]
        assert keys or composite, f"{model['name']} has no primary key tested unique + not_null"


def test_marts_have_enforced_contracts_and_described_typed_columns(manifest):
    marts = [m for m in models(manifest) if m["fqn"][1] == "marts"]
    assert {"fct_events", "fct_sessions", "fct_orders", "dim_users", "dim_tenants", "metrics_daily",
            "retention_cohorts", "funnel_daily"} <= {m["name"] for m in marts}
    for mart in marts:
        assert mart["config"]["contract"]["enforced"], mart["name"]
        for name, column in mart["columns"].items():
            assert column["description"].strip(), f"{mart['name']}.{name} has no description"
            assert column["data_type"], f"{mart['name']}.{name} has no data_type"


def test_sources_declare_freshness(manifest):
    fresh = [s["name"] for s in manifest["sources"].values()
             if (s.get("freshness") or {}).get("error_after", {}).get("count")]
    assert {"events", "orders", "users", "spend"} <= set(fresh)


# Marts without logic of their own to unit-test (dbt_project/README.md): selections and casts of one
# model, declarations read from YAML, a generated calendar, and marts whose SQL depends on whether the
# forecasting and insights assets' tables exist (tests/dbt/test_dbt_build.py builds the forecasts both
# ways; tests/ml/test_drivers.py reads the insights marts of the main run, which has them).
MARTS_WITHOUT_LOGIC = {"fct_events", "fct_marketing_spend", "fct_experiment_decisions", "fct_experiment_results_daily",
                       "dim_experiments", "dim_experiment_variants", "time_spine_daily", "fct_forecasts",
                       "fct_insights", "fct_insight_drivers", "fct_insight_correlations"}


def test_unit_tests_cover_the_tricky_logic(manifest):
    tested = {u["model"] for u in manifest["unit_tests"].values()}
    assert {"int_events__sessionized", "int_subscriptions__mrr_daily", "stg_events__events"} <= tested


def test_every_mart_with_logic_has_unit_tests(manifest):
    tested = {u["model"] for u in manifest["unit_tests"].values()}
    marts = {m["name"] for m in models(manifest) if m["fqn"][1] == "marts"}
    assert marts >= MARTS_WITHOUT_LOGIC, "a mart listed as without logic no longer exists"
    assert not marts - MARTS_WITHOUT_LOGIC - tested


def test_a_postgres_target_is_declared():
    profiles = (REPO_ROOT / "dbt_project" / "profiles.yml").read_text()
    assert "    postgres:\n      type: postgres" in profiles
