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


def test_the_kubernetes_run_launcher_loads_with_dagster_k8s(tmp_path, monkeypatch):
    """The run launcher docs/scaling.md gives for Kubernetes, loaded by dagster-k8s into an instance:
    its settings reach the launcher. Outside a cluster it reads a kubeconfig (which names a cluster it
    does not call) instead of the pod's service account."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "test", "user": {"token": "unused"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}]}))
    monkeypatch.setenv("DAGSTER_JOB_IMAGE", "registry.example.com/analytics-platform:1.0")
    monkeypatch.setenv("DAGSTER_K8S_NAMESPACE", "analytics")
    launcher = yaml.safe_load((DEPLOY / "run_launcher.k8s.yaml").read_text())["run_launcher"]
    launcher["config"] |= {"load_incluster_config": False, "kubeconfig_file": str(kubeconfig)}
    with dg.instance_for_test(overrides={"run_launcher": launcher}, temp_dir=str(tmp_path)) as instance:
        k8s = instance.run_launcher
        assert type(k8s).__name__ == "K8sRunLauncher"
        assert (k8s.job_image, k8s.job_namespace) == ("registry.example.com/analytics-platform:1.0", "analytics")
        assert k8s.env_config_maps == ["analytics-platform-settings"]
        assert k8s.env_secrets == ["analytics-platform-secrets"]


def test_the_kubernetes_step_config_is_valid_for_the_batch():
    from dagster_k8s import k8s_job_executor

    from orchestration.definitions import PIPELINE, defs

    in_pods = dg.define_asset_job("batch_in_pods", selection=PIPELINE, executor_def=k8s_job_executor)
    job = dg.Definitions.merge(defs, dg.Definitions(jobs=[in_pods])).resolve_job_def("batch_in_pods")
    validated = dg.validate_run_config(job, yaml.safe_load((DEPLOY / "run_config.k8s.yaml").read_text()))
    in_k8s = validated["execution"]["k8s"]
    assert (in_k8s["job_namespace"], in_k8s["max_concurrent"]) == ("analytics", 4)
    assert in_k8s["step_k8s_config"]["container_config"]["resources"] == {
        "requests": {"cpu": "1", "memory": "4Gi"}}
