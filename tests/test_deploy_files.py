"""deploy/: no Docker engine runs here, so check what can be checked without one: every YAML
and JSON file parses; the compose stack and the Kubernetes manifests are wired as deploy/README.md
says (Temporal on temporalio/server with its schema set up by temporalio/admin-tools, the
workflow's search attributes registered, fairness on, every image pinned, every setting a real
one, the secret key a reference); the alert rules and the dashboard only query metrics that the
code exports."""

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from pydantic import AliasChoices

import whatsapp_campaigns.metrics  # noqa: F401  (registers the business metrics)
from whatsapp_campaigns.processes import (
    BUFFERED_EVENTS_PER_WORKFLOW,
    EVENTS_CACHE_BYTES_PER_SHARD,
    TEMPORAL_DYNAMIC_CONFIG,
)
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.workflows.search_attributes import ALL_SEARCH_ATTRIBUTES

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
YAML_FILES = sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")])
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "campaigns.json"
HELM_VALUES = DEPLOY / "k8s" / "helm" / "temporal-values.yaml"
EXPECTED_ATTRIBUTES = {
    key.name: key.indexed_value_type.name.title() for key in ALL_SEARCH_ATTRIBUTES
}
# "CampaignStatus=Keyword" pairs, as the registration scripts list them.
_ATTRIBUTE_PAIR = re.compile(r"\b([A-Za-z]+)=(Keyword|Datetime|Text|Int|Double|Bool)\b")

# What the Temporal SDK's core exports on CAMPAIGNS_TEMPORAL_METRICS_BIND (temporalio 1.35):
# names scraped from a worker that ran a workflow and an activity. Counters carry no _total
# suffix; latencies are histograms in milliseconds.
TEMPORAL_SDK_METRICS = frozenset(
    {
        "temporal_activity_execution_latency_bucket",
        "temporal_activity_schedule_to_start_latency_bucket",
        "temporal_activity_task_received",
        "temporal_num_pollers",
        "temporal_request",
        "temporal_request_latency_bucket",
        "temporal_sticky_cache_size",
        "temporal_worker_task_slots_available",
        "temporal_worker_task_slots_used",
        "temporal_workflow_completed",
        "temporal_workflow_task_execution_latency_bucket",
        "temporal_workflow_task_schedule_to_start_latency_bucket",
    }
)
# Being added with the webhook backlog work (statuses received, not yet applied to the store).
PROMETHEUS_BUILTINS = frozenset({"up"})
_METRIC_NAME = re.compile(r"\b((?:campaigns|temporal)_[a-z_]+|up)\b")

# Settings that hold secrets: never a literal in compose, never in the ConfigMap.
SECRET_SETTINGS = frozenset(
    {
        "CAMPAIGNS_SECRET_KEY",
        "WHATSAPP_ACCESS_TOKEN",
        "WHATSAPP_APP_SECRET",
        "WHATSAPP_VERIFY_TOKEN",
        "CAMPAIGNS_API_KEYS",
        "CAMPAIGNS_DASHBOARD_SECRET",
        "CAMPAIGNS_DATABASE_URL",
    }
)
# What a worker and the API need to reach their store, Temporal and WhatsApp.
REQUIRED_SETTINGS = frozenset(
    {
        "CAMPAIGNS_DATABASE_URL",
        "TEMPORAL_ADDRESS",
        "TEMPORAL_NAMESPACE",
        "CAMPAIGNS_TASK_QUEUE",
        "CAMPAIGNS_PROVIDER",
        "CAMPAIGNS_SECRET_KEY",
        "WHATSAPP_APP_SECRET",
        "WHATSAPP_VERIFY_TOKEN",
        "CAMPAIGNS_API_KEYS",
    }
)


def _documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _yaml(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def _compose() -> dict[str, Any]:
    return _yaml(DEPLOY / "docker-compose.yml")


def _service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = _compose()["services"][name]
    return service


def _script(service: dict[str, Any]) -> str:
    command = service["command"]
    return command if isinstance(command, str) else "\n".join(command)


def _k8s(kind: str, name: str) -> dict[str, Any]:
    for path in (DEPLOY / "k8s").glob("*.yaml"):
        for doc in _documents(path):
            if doc.get("kind") == kind and doc["metadata"]["name"] == name:
                found: dict[str, Any] = doc
                return found
    raise AssertionError(f"no {kind} {name} in deploy/k8s")


def _containers(kind: str, name: str) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = _k8s(kind, name)["spec"]["template"]["spec"]["containers"]
    return containers


def _setting_names() -> set[str]:
    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias)
    return names


def _exported_metrics() -> set[str]:
    """The sample names our prometheus-client metrics appear under in /metrics."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        if family.name.startswith("campaigns_")
        for suffix in suffixes.get(family.type, [""])
    }


def _known_metrics() -> set[str]:
    return _exported_metrics() | TEMPORAL_SDK_METRICS | PROMETHEUS_BUILTINS


def _alert_rules() -> list[dict[str, Any]]:
    groups = _yaml(DEPLOY / "alerts.yml")["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def _panel_queries() -> dict[str, list[str]]:
    return {
        panel["title"]: [target["expr"] for target in panel["targets"]]
        for panel in _dashboard()["panels"]
        if panel["type"] != "row"
    }


def _image_is_pinned(image: str) -> bool:
    _, _, tag = image.rpartition(":")
    return "/" not in tag and tag != "latest" and any(c.isdigit() for c in tag)


# ----------------------------------------------------------------------------- files parse


def test_there_are_yaml_files_to_check() -> None:
    assert len(YAML_FILES) >= 14


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path: Path) -> None:
    assert _documents(path)


def test_the_dashboard_is_json_with_panels() -> None:
    assert _dashboard()["uid"] == "whatsapp-campaigns"
    assert len(_panel_queries()) >= 10


# -------------------------------------------------------------------------- compose stack


def test_compose_has_every_service_of_the_stack() -> None:
    assert set(_compose()["services"]) >= {
        "postgres",
        "temporal-schema",
        "temporal",
        "temporal-ui",
        "temporal-namespace",
        "migrate",
        "worker",
        "api",
        "prometheus",
        "grafana",
    }


def test_every_compose_image_that_is_not_built_here_is_pinned_to_a_version() -> None:
    images = {
        name: service["image"]
        for name, service in _compose()["services"].items()
        if "build" not in service
    }
    assert (
        images
        and {name: image for name, image in images.items() if not _image_is_pinned(image)} == {}
    )


def test_compose_temporal_is_the_server_image_not_auto_setup() -> None:
    assert _service("temporal")["image"].startswith("temporalio/server:")
    assert not any("auto-setup" in str(s.get("image")) for s in _compose()["services"].values())


def test_compose_schema_job_sets_up_and_updates_both_temporal_databases() -> None:
    schema = _service("temporal-schema")
    script = _script(schema)
    assert schema["image"].startswith("temporalio/admin-tools:")
    assert "temporal temporal_visibility" in script
    assert "setup-schema -v 0.0" in script and "update-schema -d" in script
    assert "/etc/temporal/schema/postgresql/v12/" in script


def test_compose_admin_tools_match_the_server_version() -> None:
    version = _service("temporal")["image"].split(":")[1]
    assert _service("temporal-schema")["image"] == f"temporalio/admin-tools:{version}"
    assert _service("temporal-namespace")["image"] == f"temporalio/admin-tools:{version}"


def test_compose_temporal_starts_after_its_schema() -> None:
    depends = _service("temporal")["depends_on"]
    assert depends["temporal-schema"]["condition"] == "service_completed_successfully"


def test_compose_namespace_job_creates_the_namespace_and_the_workflows_attributes() -> None:
    script = _script(_service("temporal-namespace"))
    assert "temporal operator namespace create" in script
    assert "temporal operator search-attribute create" in script
    assert dict(_ATTRIBUTE_PAIR.findall(script)) == EXPECTED_ATTRIBUTES


def test_compose_temporal_loads_the_dynamic_config_with_fairness() -> None:
    temporal = _service("temporal")
    mounted = {v.split(":")[1]: v.split(":")[0] for v in temporal["volumes"]}
    path = "/etc/temporal/" + temporal["environment"]["DYNAMIC_CONFIG_FILE_PATH"]
    config = _yaml(DEPLOY / mounted[path])
    assert config["matching.enableFairness"] == [{"value": True, "constraints": {}}]


def _deployed_and_dev_server_dynamic_config() -> tuple[dict[str, Any], dict[str, str]]:
    """deploy/temporal/dynamicconfig.yaml, and the dev server's `KEY=VALUE` flags by key."""
    config = _yaml(DEPLOY / "temporal" / "dynamicconfig.yaml")
    dev_server = dict(value.split("=", 1) for value in TEMPORAL_DYNAMIC_CONFIG if "=" in value)
    return config, dev_server


def test_deployed_send_queues_have_one_partition_as_the_dev_server_does() -> None:
    """Priority (utility before marketing on a number) is strict within one partition only."""
    config, dev_server = _deployed_and_dev_server_dynamic_config()
    for key in ("matching.numTaskqueueReadPartitions", "matching.numTaskqueueWritePartitions"):
        default = [rule["value"] for rule in config[key] if rule["constraints"] == {}]
        assert default == [1] and dev_server[key] == "1"
        campaigns = [r for r in config[key] if r["constraints"].get("taskQueueName")]
        assert [r["constraints"]["taskQueueName"] for r in campaigns] == [
            Settings.model_fields["task_queue"].default
        ]


def test_deployed_server_buffers_as_many_events_per_workflow_as_the_dev_server() -> None:
    """A campaign's workflow task in flight is not force-failed by a flood of completions."""
    config, dev_server = _deployed_and_dev_server_dynamic_config()
    key = "history.maximumBufferedEventsBatch"
    assert config[key] == [{"value": BUFFERED_EVENTS_PER_WORKFLOW, "constraints": {}}]
    assert dev_server[key] == str(BUFFERED_EVENTS_PER_WORKFLOW)


def test_deployed_server_caches_as_many_events_per_shard_as_the_dev_server() -> None:
    """The sends in flight on a few shards start without reading their events back."""
    config, dev_server = _deployed_and_dev_server_dynamic_config()
    key = "history.eventsCacheMaxSizeBytes"
    assert config[key] == [{"value": EVENTS_CACHE_BYTES_PER_SHARD, "constraints": {}}]
    assert dev_server[key] == str(EVENTS_CACHE_BYTES_PER_SHARD)


def test_compose_migration_runs_db_upgrade() -> None:
    assert _service("migrate")["command"] == ["db", "upgrade"]


def test_compose_workers_start_after_migration_and_namespace() -> None:
    depends = _service("worker")["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert depends["temporal-namespace"]["condition"] == "service_completed_successfully"


def test_compose_workers_are_replicated() -> None:
    assert _service("worker")["deploy"]["replicas"] >= 2


def test_compose_sets_every_setting_the_app_needs() -> None:
    for name in ("worker", "api", "migrate"):
        assert set(_service(name)["environment"]) >= REQUIRED_SETTINGS, name


def test_compose_sets_only_settings_that_exist() -> None:
    environment = set(_service("worker")["environment"]) | set(_service("api")["environment"])
    assert environment - _setting_names() == set()


def test_compose_secret_key_is_required_from_the_environment_not_written_here() -> None:
    value = _service("worker")["environment"]["CAMPAIGNS_SECRET_KEY"]
    assert value.startswith("${CAMPAIGNS_SECRET_KEY:?")


def test_compose_takes_every_whatsapp_and_api_secret_from_the_environment() -> None:
    environment = _service("api")["environment"]
    secrets = SECRET_SETTINGS - {"CAMPAIGNS_DATABASE_URL"}  # the compose stack's own database
    assert {
        name: environment[name]
        for name in secrets
        if not environment[name].startswith(f"${{{name}")
    } == {}


# ------------------------------------------------------------------ prometheus and alerts


def test_compose_workers_expose_the_ports_prometheus_scrapes() -> None:
    environment = _service("worker")["environment"]
    prometheus = _yaml(DEPLOY / "prometheus.yml")
    worker_ports = {
        sd["port"]
        for job in prometheus["scrape_configs"]
        for sd in job.get("dns_sd_configs", [])
        if "worker" in sd["names"]
    }
    assert worker_ports == {
        int(environment["CAMPAIGNS_WORKER_METRICS_PORT"]),
        int(environment["CAMPAIGNS_TEMPORAL_METRICS_BIND"].rsplit(":", 1)[1]),
    }


def test_prometheus_scrapes_the_api_metrics() -> None:
    prometheus = _yaml(DEPLOY / "prometheus.yml")
    (api,) = [job for job in prometheus["scrape_configs"] if job["job_name"] == "campaigns-api"]
    assert api["static_configs"][0]["targets"] == ["api:8000"]
    assert api["metrics_path"] == "/metrics"


def test_prometheus_loads_the_alert_rules_compose_mounts() -> None:
    rule_files = _yaml(DEPLOY / "prometheus.yml")["rule_files"]
    mounts = dict(v.split(":")[:2] for v in _service("prometheus")["volumes"])
    assert mounts["./alerts.yml"] in rule_files


def test_alert_rules_cover_stalls_webhooks_errors_throttles_and_workers() -> None:
    assert {rule["alert"] for rule in _alert_rules()} >= {
        "CampaignSendingWithoutProgress",
        "WebhookBacklogGrowing",
        "WhatsAppAuthOrAccountErrors",
        "MessagingLimitThrottled",
        "CampaignWorkersDown",
    }


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda rule: str(rule["alert"]))
def test_each_alert_queries_only_metrics_the_code_exports(rule: dict[str, Any]) -> None:
    used = set(_METRIC_NAME.findall(rule["expr"]))
    assert used and used - _known_metrics() == set()


def test_each_alert_has_a_severity_and_a_summary() -> None:
    for rule in _alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_the_alert_rules_pass_their_promtool_unit_tests() -> None:
    result = subprocess.run(
        ["promtool", "test", "rules", "alerts_test.yml"],
        cwd=DEPLOY,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------- grafana


@pytest.mark.parametrize("title", sorted(_panel_queries()))
def test_each_dashboard_panel_queries_only_metrics_the_code_exports(title: str) -> None:
    used = {name for expr in _panel_queries()[title] for name in _METRIC_NAME.findall(expr)}
    assert used and used - _known_metrics() == set()


def test_the_dashboard_shows_outcomes_latency_limits_webhooks_campaigns_and_slots() -> None:
    queried = " ".join(expr for exprs in _panel_queries().values() for expr in exprs)
    for metric in (
        "campaigns_messages_total",
        "campaigns_send_seconds_bucket",
        "campaigns_rate_limit_hits_total",
        "campaigns_webhook_lag_seconds_bucket",
        "campaigns_webhook_backlog",
        "campaigns_by_status",
        "temporal_worker_task_slots_available",
    ):
        assert metric in queried, metric


def test_grafana_datasource_is_the_one_the_panels_name() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    (source,) = _yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert source["url"] == "http://prometheus:9090"
    uids = {panel["datasource"]["uid"] for panel in _dashboard()["panels"] if "datasource" in panel}
    assert uids == {source["uid"]}


def test_compose_grafana_mounts_its_provisioning_and_the_dashboard_folder() -> None:
    mounts = dict(v.split(":")[:2] for v in _service("grafana")["volumes"] if v.startswith("./"))
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    (provider,) = _yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "campaigns.yml")[
        "providers"
    ]
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]


# ------------------------------------------------------------------------------ kubernetes


def test_helm_values_pin_the_server_and_admin_tools_to_one_version() -> None:
    values = _yaml(HELM_VALUES)
    assert values["server"]["image"]["repository"] == "temporalio/server"
    assert values["admintools"]["image"]["repository"] == "temporalio/admin-tools"
    assert str(values["server"]["image"]["tag"]) == str(values["admintools"]["image"]["tag"])
    assert _image_is_pinned(f"x:{values['server']['image']['tag']}")
    assert _image_is_pinned(f"x:{values['web']['image']['tag']}")


def test_helm_values_manage_both_schemas_with_a_password_from_a_secret() -> None:
    datastores = _yaml(HELM_VALUES)["server"]["config"]["persistence"]["datastores"]
    for name in ("default", "visibility"):
        sql = datastores[name]["sql"]
        assert sql["manageSchema"] and sql["createDatabase"], name
        assert sql["pluginName"] == "postgres12" and "password" not in sql, name
        assert sql["existingSecret"], name


def test_helm_values_create_the_namespace_the_app_uses() -> None:
    namespaces = _yaml(HELM_VALUES)["server"]["config"]["namespaces"]
    configured = _k8s("ConfigMap", "campaigns-settings")["data"]["TEMPORAL_NAMESPACE"]
    assert namespaces["create"] and configured in {n["name"] for n in namespaces["namespace"]}


def test_helm_values_set_the_dynamic_config_of_compose_with_an_events_cache_per_host() -> None:
    """32 MiB for each of 512 shards could reach 16 GiB: one cache per history host instead."""
    dynamic = _yaml(HELM_VALUES)["server"]["dynamicConfig"]
    host_cache = dynamic.pop("history.enableHostLevelEventsCache")
    compose = _yaml(DEPLOY / "temporal" / "dynamicconfig.yaml")
    del compose["history.eventsCacheMaxSizeBytes"]
    assert dynamic == compose
    assert host_cache == [{"value": True, "constraints": {}}]


def test_k8s_app_points_at_the_helm_release_frontend() -> None:
    address = _k8s("ConfigMap", "campaigns-settings")["data"]["TEMPORAL_ADDRESS"]
    assert address.startswith("temporal-frontend.") and address.endswith(":7233")


def test_k8s_search_attribute_job_registers_the_workflows_attributes() -> None:
    (container,) = _containers("Job", "campaigns-search-attributes")
    script = "\n".join(container["args"])
    assert "temporal operator search-attribute create" in script
    assert dict(_ATTRIBUTE_PAIR.findall(script)) == EXPECTED_ATTRIBUTES


def test_k8s_search_attribute_job_uses_the_charts_admin_tools() -> None:
    (container,) = _containers("Job", "campaigns-search-attributes")
    tag = _yaml(HELM_VALUES)["admintools"]["image"]["tag"]
    assert container["image"] == f"temporalio/admin-tools:{tag}"


def test_every_k8s_image_is_pinned() -> None:
    kustomization = _yaml(DEPLOY / "k8s" / "kustomization.yaml")
    ours = {image["name"]: image["newTag"] for image in kustomization["images"]}
    for path in (DEPLOY / "k8s").glob("*.yaml"):
        for doc in _documents(path):
            template = doc.get("spec", {}).get("template", {})
            for container in template.get("spec", {}).get("containers", []):
                image = container["image"]
                assert _image_is_pinned(image) or _image_is_pinned(f"x:{ours[image]}"), image


def test_k8s_settings_and_secrets_hold_every_setting_the_app_needs() -> None:
    settings = set(_k8s("ConfigMap", "campaigns-settings")["data"])
    secrets = set(_k8s("Secret", "campaigns-secrets")["stringData"])
    assert settings | secrets >= REQUIRED_SETTINGS
    assert (settings | secrets) - _setting_names() == set()


def test_k8s_keeps_secrets_out_of_the_configmap() -> None:
    settings = set(_k8s("ConfigMap", "campaigns-settings")["data"])
    assert settings & SECRET_SETTINGS == set()
    assert "CAMPAIGNS_SECRET_KEY" in _k8s("Secret", "campaigns-secrets")["stringData"]


@pytest.mark.parametrize("deployment", ["campaigns-worker", "campaigns-api"])
def test_k8s_secret_key_is_a_reference_to_the_secret(deployment: str) -> None:
    (container,) = _containers("Deployment", deployment)
    (secret_key,) = [e for e in container["env"] if e["name"] == "CAMPAIGNS_SECRET_KEY"]
    assert "value" not in secret_key
    assert secret_key["valueFrom"]["secretKeyRef"] == {
        "name": "campaigns-secrets",
        "key": "CAMPAIGNS_SECRET_KEY",
    }


def test_k8s_workers_run_three_replicas_with_a_long_grace_period() -> None:
    worker = _k8s("Deployment", "campaigns-worker")
    assert worker["spec"]["replicas"] == 3
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 60


def test_k8s_api_probes_healthz() -> None:
    (container,) = _containers("Deployment", "campaigns-api")
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_k8s_api_service_targets_the_api_pods() -> None:
    service = _k8s("Service", "campaigns-api")
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "campaigns-api"}


def test_k8s_migration_job_runs_db_upgrade() -> None:
    (container,) = _containers("Job", "campaigns-migrate")
    assert container["args"] == ["db", "upgrade"]


def test_kustomization_lists_every_manifest() -> None:
    kustomization = _yaml(DEPLOY / "k8s" / "kustomization.yaml")
    manifests = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests


def test_dockerfile_runs_campaigns_as_a_non_root_user() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    assert re.search(r"^USER (?!root\b|0\b)\S+", dockerfile, re.MULTILINE)
    assert 'ENTRYPOINT ["campaigns"]' in dockerfile
