"""The HTTP sandbox's fault switches (`campaigns sandbox --lost-answers ...`, PUT /sandbox/faults)
and its counts (GET /sandbox/stats), which the chaos suite (bench/chaos.py) relies on."""

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.cli_helpers import invoke
from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator
from whatsapp_campaigns.whatsapp.sandbox.faults import (
    FaultSwitches,
    FaultyWebhookSink,
    SandboxFaults,
)
from whatsapp_campaigns.whatsapp.sandbox.fixtures import SANDBOX_SENDER_ID
from whatsapp_campaigns.whatsapp.sandbox.server import create_sandbox_app
from whatsapp_campaigns.whatsapp.sandbox.webhooks import CallbackWebhookSink

SEND_URL = f"/v21.0/{SANDBOX_SENDER_ID}/messages"
TOKEN = {"Authorization": "Bearer t"}


def send_body(to: str = "+12025551000") -> dict[str, object]:
    return {
        "messaging_product": "whatsapp",
        "to": to,
        "type": "template",
        "template": {
            "name": "order_update",
            "language": {"code": "en"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "parameter_name": "name", "text": "Ann"},
                        {"type": "text", "parameter_name": "order_id", "text": "A1"},
                    ],
                }
            ],
        },
    }


class Received:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, body: bytes, headers: dict[str, str]) -> None:
        self.bodies.append(body)


@pytest.fixture
def received() -> Received:
    return Received()


@pytest.fixture
def faults() -> SandboxFaults:
    return SandboxFaults(seed=1)


@pytest.fixture
async def sandbox(
    faults: SandboxFaults, received: Received
) -> AsyncIterator[tuple[httpx.AsyncClient, SandboxEmulator]]:
    sink = FaultyWebhookSink(CallbackWebhookSink(received), faults)
    emulator = SandboxEmulator(webhook_sink=sink, webhook_delay=0.0)
    app = create_sandbox_app(emulator, faults)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        yield client, emulator
    await sink.drain()
    await emulator.aclose()


async def test_during_an_error_burst_every_send_is_refused_with_503_and_none_accepted(
    sandbox: tuple[httpx.AsyncClient, SandboxEmulator],
) -> None:
    client, emulator = sandbox
    await client.post("/sandbox/faults/error-burst", params={"seconds": 30})
    answers = [await client.post(SEND_URL, json=send_body(), headers=TOKEN) for _ in range(3)]
    assert [a.status_code for a in answers] == [503, 503, 503]
    assert answers[0].json()["error"]["code"] == 2
    assert emulator.accepted_sends == []


async def test_a_lost_answer_is_a_502_for_a_send_that_was_accepted(
    sandbox: tuple[httpx.AsyncClient, SandboxEmulator],
) -> None:
    client, _ = sandbox
    await client.put("/sandbox/faults", json={"lost_answers": 1.0})
    answer = await client.post(SEND_URL, json=send_body(), headers=TOKEN)
    assert (answer.status_code, answer.text) == (502, "Bad Gateway")
    stats = (await client.get("/sandbox/stats")).json()
    assert stats["recipients"] == {"12025551000": 1}
    assert stats["faults"]["lost_answers"] == 1


async def test_stats_count_accepted_sends_per_recipient_and_second(
    sandbox: tuple[httpx.AsyncClient, SandboxEmulator],
) -> None:
    client, _ = sandbox
    for to in ("+12025551000", "+12025551001", "+12025551000"):
        assert (await client.post(SEND_URL, json=send_body(to), headers=TOKEN)).is_success
    stats = (await client.get("/sandbox/stats")).json()
    assert stats["accepted"] == 3
    assert stats["recipients"] == {"12025551000": 2, "12025551001": 1}
    assert sum(stats["per_second"][SANDBOX_SENDER_ID].values()) == 3


async def test_duplicated_webhooks_are_each_delivered_twice(
    sandbox: tuple[httpx.AsyncClient, SandboxEmulator], received: Received
) -> None:
    client, emulator = sandbox
    await client.put("/sandbox/faults", json={"duplicate_webhooks": 1.0})
    await client.post(SEND_URL, json=send_body(), headers=TOKEN)
    await emulator.drain_webhooks()
    sink = emulator.webhook_sink
    assert isinstance(sink, FaultyWebhookSink)
    await sink.drain()
    assert len(received.bodies) == 6  # sent, delivered, read: each twice
    assert len(set(received.bodies)) == 3


async def test_a_dropped_webhook_arrives_later_after_the_next_one(
    faults: SandboxFaults, received: Received
) -> None:
    faults.change(FaultSwitches(drop_webhooks=1.0, webhook_retry_after=0.05))
    sink = FaultyWebhookSink(CallbackWebhookSink(received), faults)
    await sink.deliver(b"first", {})
    assert received.bodies == [] and sink.pending == 1  # owed, not lost
    faults.change(FaultSwitches())
    await sink.deliver(b"second", {})
    await sink.drain()
    assert received.bodies == [b"second", b"first"]


async def test_a_reordered_webhook_is_overtaken_by_the_next(
    faults: SandboxFaults, received: Received
) -> None:
    faults.change(FaultSwitches(reorder_webhooks=1.0))
    sink = FaultyWebhookSink(CallbackWebhookSink(received), faults)
    await sink.deliver(b"sent", {})
    faults.change(FaultSwitches())
    await sink.deliver(b"delivered", {})
    await asyncio.wait_for(sink.drain(), timeout=5)
    assert received.bodies == [b"delivered", b"sent"]


async def test_a_fault_switch_out_of_range_is_refused(
    sandbox: tuple[httpx.AsyncClient, SandboxEmulator],
) -> None:
    client, _ = sandbox
    answer = await client.put("/sandbox/faults", json={"lost_answers": 2})
    assert answer.status_code == 422
    assert (await client.get("/sandbox/faults")).json()["lost_answers"] == 0


def test_the_cli_refuses_a_fault_switch_out_of_range_naming_the_flag() -> None:
    result = invoke(["sandbox", "--lost-answers", "1.5"], {})
    assert result.exit_code != 0
    assert "--lost-answers" in result.stderr
