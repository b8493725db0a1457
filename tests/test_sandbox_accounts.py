"""The sandbox as Meta's account side (SPEC §9): the Graph API's phone-number object, the
tokens it accepts, and the account webhooks it posts when a template or a number changes,
in process and over HTTP (the real Cloud API client against `create_sandbox_app`)."""

import json
from typing import Any

import httpx
import pytest

from whatsapp_campaigns.domain.errors import ErrorClass
from whatsapp_campaigns.domain.models import TemplateStatus
from whatsapp_campaigns.whatsapp.cloud import CloudApiProvider
from whatsapp_campaigns.whatsapp.provider import ProviderError
from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator
from whatsapp_campaigns.whatsapp.sandbox.provider import SandboxProvider
from whatsapp_campaigns.whatsapp.sandbox.server import create_sandbox_app
from whatsapp_campaigns.whatsapp.sandbox.webhooks import CallbackWebhookSink
from whatsapp_campaigns.whatsapp.signatures import SIGNATURE_HEADER, is_valid_signature


class Inbox:
    def __init__(self) -> None:
        self.posts: list[tuple[bytes, dict[str, str]]] = []

    async def deliver(self, body: bytes, headers: dict[str, str]) -> None:
        self.posts.append((body, headers))

    def changes(self) -> list[dict[str, Any]]:
        return [json.loads(body)["entry"][0]["changes"][0] for body, _ in self.posts]


def _http_provider(emulator: SandboxEmulator, token: str = "any") -> CloudApiProvider:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_sandbox_app(emulator)))
    return CloudApiProvider("http://sandbox", "v21.0", token, client=client)


async def test_the_standard_number_is_described_like_the_graph_api() -> None:
    number = await SandboxProvider(SandboxEmulator()).get_phone_number("sandbox-sender-1")
    assert number.display_number == "+12025550100"
    assert (number.throughput_level, number.messaging_limit) == ("STANDARD", "TIER_100K")
    assert (number.verified_name, number.quality_rating) == ("Sandbox Store", "GREEN")


async def test_the_high_throughput_number_is_served_over_http() -> None:
    number = await _http_provider(SandboxEmulator()).get_phone_number("sandbox-sender-high")
    assert (number.phone_number_id, number.throughput_level) == ("sandbox-sender-high", "HIGH")


async def test_an_unknown_number_is_metas_error_100() -> None:
    with pytest.raises(ProviderError) as raised:
        await _http_provider(SandboxEmulator()).get_phone_number("nope")
    assert raised.value.code == 100


async def test_a_token_meta_did_not_issue_is_error_190() -> None:
    emulator = SandboxEmulator(access_tokens=["the-right-one"])
    with pytest.raises(ProviderError) as raised:
        await _http_provider(emulator, "a-wrong-one").list_templates("sandbox")
    assert (raised.value.code, raised.value.error_class) == (190, ErrorClass.AUTH)
    templates = await _http_provider(emulator, "the-right-one").list_templates("sandbox")
    assert templates


async def test_pausing_a_template_posts_a_signed_status_update() -> None:
    inbox = Inbox()
    emulator = SandboxEmulator(webhook_sink=CallbackWebhookSink(inbox.deliver))
    await emulator.change_template_status("spring_sale", TemplateStatus.PAUSED, reason="SPAM")
    (change,) = inbox.changes()
    assert change["field"] == "message_template_status_update"
    assert change["value"]["event"] == "PAUSED"
    assert change["value"]["message_template_name"] == "spring_sale"
    body, headers = inbox.posts[0]
    assert is_valid_signature(body, headers[SIGNATURE_HEADER], emulator.app_secret)
    (listed,) = [
        t
        for t in await SandboxProvider(emulator).list_templates("sandbox")
        if t.name == "spring_sale"
    ]
    assert listed.status is TemplateStatus.PAUSED


async def test_a_throughput_upgrade_posts_a_quality_update_and_raises_the_rate() -> None:
    inbox = Inbox()
    emulator = SandboxEmulator(webhook_sink=CallbackWebhookSink(inbox.deliver))
    await emulator.change_throughput("sandbox-sender-1", "HIGH")
    (change,) = inbox.changes()
    assert change["field"] == "phone_number_quality_update"
    assert change["value"]["event"] == "THROUGHPUT_UPGRADE"
    assert change["value"]["display_phone_number"] == "12025550100"
    number = await SandboxProvider(emulator).get_phone_number("sandbox-sender-1")
    assert number.throughput_level == "HIGH"


async def test_the_control_routes_play_metas_changes_over_http() -> None:
    inbox = Inbox()
    emulator = SandboxEmulator(webhook_sink=CallbackWebhookSink(inbox.deliver))
    transport = httpx.ASGITransport(app=create_sandbox_app(emulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        paused = await client.post(
            "/sandbox/templates/order_update/status", json={"status": "DISABLED"}
        )
        upgraded = await client.post(
            "/sandbox/numbers/sandbox-sender-1/throughput", json={"level": "high"}
        )
        unknown = await client.post("/sandbox/numbers/nope/throughput", json={"level": "HIGH"})
        bad = await client.post(
            "/sandbox/numbers/sandbox-sender-1/throughput", json={"level": "MEDIUM"}
        )
    assert (paused.status_code, upgraded.status_code) == (200, 200)
    assert (unknown.status_code, bad.status_code) == (404, 422)
    assert [c["field"] for c in inbox.changes()] == [
        "message_template_status_update",
        "phone_number_quality_update",
    ]
