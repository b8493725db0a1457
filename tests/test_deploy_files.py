"""deploy/: no Docker engine runs here, so check what can be checked without one: every YAML
parses, the compose services exist and are wired as the README says, both the compose job and
the Kubernetes Job register exactly the search attributes the workflow upserts."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from whatsapp_campaigns.workflows.search_attributes import ALL_SEARCH_ATTRIBUTES

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
YAML_FILES = sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")])
EXPECTED_ATTRIBUTES = {
    key.name: key.indexed_value_type.name.title() for key in ALL_SEARCH_ATTRIBUTES
}
# "CampaignStatus=Keyword" pairs, as the registration scripts list them.
_ATTRIBUTE_PAIR = re.compile(r"\b([A-Za-z]+)=(Keyword|Datetime|Text|Int|Double|Bool)\b")


def _documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return compose


def _k8s(kind: str, name: str) -> dict[str, Any]:
    for path in (DEPLOY / "k8s").glob("*.yaml"):
        for doc in _documents(path):
            if doc.get("kind") == kind and doc["metadata"]["name"] == name:
                found: dict[str, Any] = doc
                return found
    raise AssertionError(f"no {kind} {name} in deploy/k8s")


def test_there_are_yaml_files_to_check() -> None:
    assert len(YAML_FILES) >= 8


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path: Path) -> None:
    assert _documents(path)


def test_compose_has_every_service_of_the_stack() -> None:
    assert set(_compose()["services"]) >= {
        "postgres",
        "temporal",
        "temporal-ui",
        "temporal-search-attributes",
        "migrate",
        "worker",
        "api",
        "prometheus",
    }


def test_compose_temporal_is_the_auto_setup_image() -> None:
    assert _compose()["services"]["temporal"]["image"].startswith("temporalio/auto-setup:")


def test_compose_search_attribute_job_registers_the_workflows_attributes() -> None:
    script = "\n".join(_compose()["services"]["temporal-search-attributes"]["command"])
    assert "temporal operator search-attribute create" in script
    assert dict(_ATTRIBUTE_PAIR.findall(script)) == EXPECTED_ATTRIBUTES


def test_k8s_search_attribute_job_registers_the_workflows_attributes() -> None:
    container = _k8s("Job", "campaigns-search-attributes")["spec"]["template"]["spec"][
        "containers"
    ][0]
    script = "\n".join(container["args"])
    assert "temporal operator search-attribute create" in script
    assert dict(_ATTRIBUTE_PAIR.findall(script)) == EXPECTED_ATTRIBUTES


def test_compose_migration_runs_db_upgrade() -> None:
    assert _compose()["services"]["migrate"]["command"] == ["db", "upgrade"]


def test_compose_workers_start_after_migration_and_search_attributes() -> None:
    depends = _compose()["services"]["worker"]["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert depends["temporal-search-attributes"]["condition"] == "service_completed_successfully"


def test_compose_workers_are_replicated() -> None:
    assert _compose()["services"]["worker"]["deploy"]["replicas"] >= 2


def test_compose_workers_expose_the_ports_prometheus_scrapes() -> None:
    environment = _compose()["services"]["worker"]["environment"]
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
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
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (api,) = [job for job in prometheus["scrape_configs"] if job["job_name"] == "campaigns-api"]
    assert api["static_configs"][0]["targets"] == ["api:8000"]
    assert api["metrics_path"] == "/metrics"


def test_k8s_workers_run_three_replicas_with_a_long_grace_period() -> None:
    worker = _k8s("Deployment", "campaigns-worker")
    assert worker["spec"]["replicas"] == 3
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 60


def test_k8s_api_probes_healthz() -> None:
    (container,) = _k8s("Deployment", "campaigns-api")["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_k8s_api_service_targets_the_api_pods() -> None:
    service = _k8s("Service", "campaigns-api")
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "campaigns-api"}


def test_k8s_migration_job_runs_db_upgrade() -> None:
    (container,) = _k8s("Job", "campaigns-migrate")["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["db", "upgrade"]


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    manifests = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests


def test_dockerfile_runs_campaigns_as_a_non_root_user() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    assert re.search(r"^USER (?!root\b|0\b)\S+", dockerfile, re.MULTILINE)
    assert 'ENTRYPOINT ["campaigns"]' in dockerfile
