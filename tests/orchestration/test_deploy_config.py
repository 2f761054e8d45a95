"""The configuration docs/scaling.md tells people to use for runs across machines is valid for
Dagster: the instance (queued runs, launcher, pools) loaded with Dagster's own schema, and the
multiprocess run config validated against the batch's assets under the multiprocess executor."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "orchestration" / "deploy"


def test_the_multi_machine_instance_loads(tmp_path):
    overrides = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    with dg.instance_for_test(overrides=overrides, temp_dir=str(tmp_path)) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"


def test_the_multiprocess_run_config_is_valid_for_the_batch():
    from orchestration.definitions import PIPELINE, defs

    parallel = dg.define_asset_job("batch_in_processes", selection=PIPELINE, executor_def=dg.multiprocess_executor)
    job = dg.Definitions.merge(defs, dg.Definitions(jobs=[parallel])).resolve_job_def("batch_in_processes")
    validated = dg.validate_run_config(job, yaml.safe_load((DEPLOY / "run_config.multiprocess.yaml").read_text()))
    assert validated["execution"] == {"multiprocess": {"max_concurrent": 2, "start_method": {"forkserver": {}},
                                                       "retries": {"enabled": {}}}}
