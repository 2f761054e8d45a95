"""The A/B test analysis as Dagster assets: after the experiment marts, before the results marts
(the second dbt step) and the published snapshot.

It reads the experiment marts only (registry, exposures, outcomes) and the experiment metrics'
definitions from the semantic manifest, and writes two tables to schema `experiment_analysis`,
replaced whole: each experiment's results on every day it ran, and each experiment's decision.
The statistics libraries are imported inside the asset, so that runs that never analyse (the
micro-batches) do not load them.
"""

import dagster as dg

from orchestration.assets.ingestion import WAREHOUSE_POOL
from orchestration.environment import SEMANTIC_MANIFEST, current_environment

SCHEMA = "experiment_analysis"
RESULTS_KEY = dg.AssetKey([SCHEMA, "results"])
DECISIONS_KEY = dg.AssetKey([SCHEMA, "decisions"])
MARTS = [dg.AssetKey(["marts", name]) for name in (
    "dim_experiments", "dim_experiment_variants", "fct_experiment_exposures", "fct_experiment_outcomes",
    "fct_experiment_outcomes_daily")]
# what a decision that needs a person's attention looks like
ALERTING = ("invalid_design", "sample_ratio_mismatch", "one_variant_exposed")


@dg.multi_asset(
    specs=[
        dg.AssetSpec(RESULTS_KEY, deps=MARTS, group_name="experiments", kinds={"scipy", "statsmodels"},
                     description="Each experiment's variants and metrics on every day it ran: lift with Welch and "
                     "Fieller intervals (ratio metrics by the delta method), CUPED, always-valid confidence "
                     "sequences, chance to win, Holm-adjusted secondary metrics (experiment_analysis.results)."),
        dg.AssetSpec(DECISIONS_KEY, deps=MARTS, group_name="experiments", kinds={"scipy", "statsmodels"},
                     description="Each declared experiment's status and decision sentence, with its sample-ratio "
                     "check and the users left out (experiment_analysis.decisions)."),
    ],
    pool=WAREHOUSE_POOL,
)
def experiment_analysis(context: dg.AssetExecutionContext):
    from ml.experiments import analysis, metrics
    from ml.outputs import replace_table

    env = current_environment()
    with env.warehouse() as warehouse:
        inputs = analysis.read(warehouse.connection)
    try:
        definitions = metrics.load(SEMANTIC_MANIFEST, set(inputs.outcomes.columns))
    except metrics.MetricDefinitionError as err:
        raise dg.Failure(description=str(err)) from err
    result = analysis.analyze(inputs, definitions)
    for decision in result.decisions.to_dict("records"):
        line = f"{decision['experiment_id']} ({decision['status']}): {decision['decision']}"
        (context.log.warning if decision["status"] in ALERTING else context.log.info)(line)
        if decision["notes"]:
            context.log.info(f"{decision['experiment_id']}: {decision['notes']}")
    rows = replace_table(env, "results", result.results, schema=SCHEMA)
    yield dg.MaterializeResult(asset_key=RESULTS_KEY, metadata={
        "rows": rows, "experiments": int(result.results["experiment_id"].nunique())})
    replace_table(env, "decisions", result.decisions, schema=SCHEMA)
    table = result.decisions[["experiment_id", "status", "srm_p_value", "users", "decision"]]
    yield dg.MaterializeResult(asset_key=DECISIONS_KEY, metadata={
        "experiments": len(table),
        **{f"status_{status}": int(n) for status, n in table["status"].value_counts().items()},
        "decisions": dg.MetadataValue.md(table.to_markdown(index=False))})
