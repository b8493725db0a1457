"""The sandbox's webhook posts are bounded: a burst of status webhooks opens a few connections
and queues the rest, in the standalone `campaigns sandbox` server as in the dev stack."""

import asyncio

import httpx

from whatsapp_campaigns.whatsapp.sandbox.server import sandbox_emulator
from whatsapp_campaigns.whatsapp.sandbox.webhooks import (
    WEBHOOK_CONNECTIONS,
    BoundedHttpWebhookSink,
)
from whatsapp_campaigns.whatsapp.signatures import SIGNATURE_HEADER


class SlowReceiver:
    """An API stand-in that answers after a moment and counts the posts it holds at once."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most_in_flight = 0
        self.received = 0
        self.signed = 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            self.received += 1
            self.signed += SIGNATURE_HEADER in request.headers
            return httpx.Response(200)
        finally:
            self.in_flight -= 1


async def test_a_burst_of_webhooks_is_posted_over_a_bounded_number_of_connections() -> None:
    receiver = SlowReceiver()
    sink = BoundedHttpWebhookSink(
        "http://api.test/webhooks/whatsapp",
        "secret",
        transport=httpx.MockTransport(receiver.handle),
    )
    try:
        await asyncio.gather(*(sink.deliver(b"{}", {}) for _ in range(100)))
    finally:
        await sink.aclose()

    assert receiver.received == receiver.signed == 100
    assert receiver.most_in_flight <= WEBHOOK_CONNECTIONS


async def test_the_standalone_sandbox_server_posts_its_webhooks_through_the_bounded_sink() -> None:
    emulator = sandbox_emulator(
        webhook_url="http://127.0.0.1:8000/webhooks/whatsapp", app_secret="s"
    )
    try:
        sink = emulator.webhook_sink
        assert isinstance(sink, BoundedHttpWebhookSink)
        assert sink.connections == WEBHOOK_CONNECTIONS
        assert sink.url == "http://127.0.0.1:8000/webhooks/whatsapp"
    finally:
        await emulator.aclose()


async def test_the_standalone_sandbox_server_without_a_webhook_url_posts_nothing() -> None:
    emulator = sandbox_emulator(webhook_url=None, app_secret="s")
    assert emulator.webhook_sink is None
    await emulator.aclose()


async def test_a_webhook_outlasts_an_api_restart_as_metas_retries_do() -> None:
    """The API refused (or was down for) the first four posts, 3.5 s: the fifth gets through."""
    answers = iter([503, 503, 503, 503, 200])
    received: list[int] = []

    async def restarting_api(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        received.append(status)
        return httpx.Response(status)

    sink = BoundedHttpWebhookSink(
        "http://api.test/webhooks/whatsapp", "secret", transport=httpx.MockTransport(restarting_api)
    )
    try:
        await sink.deliver(b"{}", {})
    finally:
        await sink.aclose()

    assert received == [503, 503, 503, 503, 200]
