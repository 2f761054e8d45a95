"""The embedded default's source systems: the sample product, generated once if absent."""


from dataclasses import replace

import dagster as dg

from ingestion.sample_data import SIZES, generate
from ingestion.sample_data.generator import is_generated
from orchestration.environment import current_environment

SAMPLE_DATA_KEY = dg.AssetKey("sample_data")


@dg.asset(
    key=SAMPLE_DATA_KEY,
    group_name="sources",
    kinds={"python", "sqlite"},
    description="The sample SaaS commerce product (app database, event and spend files); generated if absent.",
)
def sample_data(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    env = current_environment()
    layout = env.layout
    if is_generated(layout):
        context.log.info(f"sample data present under {layout.root}; not regenerating")
        return dg.MaterializeResult(metadata={"generated": False, "path": str(layout.root)})
    size = replace(SIZES[env.sample_size], end_date=env.sample_end_date)
    context.log.info(f"generating the {env.sample_size} sample (seed {env.sample_seed}, last day {size.end_date}"
                     f"{', faults ' + ', '.join(env.sample_faults) if env.sample_faults else ''}) under {layout.root}")
    truth = generate(layout, size, env.sample_seed, env.sample_faults)
    return dg.MaterializeResult(metadata={
        "generated": True,
        "path": str(layout.root),
        "size": env.sample_size,
        "events": truth["events"]["valid_events"],
        "orders": truth["app_db"]["orders"],
        "seconds": truth["seconds"],
    })
