"""Great Expectations suites as Dagster asset checks: critical expectations block downstream assets.

Each suite in `expectations/suites` becomes one multi-asset check whose specs are its
expectations, each on the asset it guards. A critical expectation is a blocking check: when it
fails, Dagster runs nothing downstream of that asset (no dbt build on bad raw data, no published
snapshot, forecast or report on bad marts), and the failed check's description says what was
observed and what was expected.
"""


import dagster as dg

from expectations.runner import Runner, data_docs_index
from expectations.spec import Suite
from expectations.suites import SUITES
from orchestration.assets.ingestion import WAREHOUSE_POOL
from orchestration.environment import current_environment


def suite_checks(suite: Suite) -> dg.AssetChecksDefinition:
    specs = [
        dg.AssetCheckSpec(
            name=check.name,
            asset=dg.AssetKey(list(check.asset)),
            description=f"[{check.severity}] {check.description}",
            blocking=check.blocking,
            metadata={"suite": suite.name, "severity": str(check.severity), "expectation": check.expectation},
        )
        for check in suite.checks
    ]

    @dg.multi_asset_check(specs=specs, name=f"quality_{suite.name}", description=suite.description,
                          can_subset=True, pool=WAREHOUSE_POOL)
    def _checks(context: dg.AssetCheckExecutionContext):
        env = current_environment()
        selected = {key.name for key in context.selected_asset_check_keys}
        with env.warehouse(read_only=False) as warehouse:
            runner = Runner(warehouse, env.quality_dir, context.run.run_id, now=env.now())
            outcomes = runner.validate(suite, only=selected)
        for outcome in outcomes:
            log = context.log.info if outcome.gate_passed else (
                context.log.error if outcome.check.blocking else context.log.warning)
            log(outcome.message)
            yield dg.AssetCheckResult(
                asset_key=dg.AssetKey(list(outcome.check.asset)),
                check_name=outcome.check.name,
                passed=outcome.gate_passed,
                severity=dg.AssetCheckSeverity.ERROR if outcome.check.blocking else dg.AssetCheckSeverity.WARN,
                description=outcome.message,
                metadata={
                    "suite": suite.name,
                    "observed": outcome.error or outcome.observed,
                    "expected": outcome.expected,
                    "unexpected_rows": outcome.unexpected_count or 0,
                    "newly_quarantined": outcome.newly_held,
                    "still_quarantined": outcome.still_held,
                    "released": outcome.released,
                    "data_docs": dg.MetadataValue.path(str(data_docs_index(env.quality_dir))),
                },
            )

    return _checks


quality_checks = [suite_checks(suite) for suite in SUITES]
