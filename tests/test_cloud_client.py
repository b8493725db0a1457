"""`CloudApiProvider` against the sandbox HTTP server over real sockets (uvicorn on 127.0.0.1),
signed webhooks to a local receiver, and the sender's throughput limit under load."""

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from whatsapp_campaigns.domain.errors import ErrorClass
from whatsapp_campaigns.domain.models import Template
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.whatsapp.cloud import CloudApiProvider
from whatsapp_campaigns.whatsapp.components import template_components
from whatsapp_campaigns.whatsapp.factory import make_provider
from whatsapp_campaigns.whatsapp.provider import ProviderError, TemplateSend
from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator
from whatsapp_campaigns.whatsapp.sandbox.fixtures import (
    SANDBOX_BUSINESS_ACCOUNT_ID,
    SANDBOX_SENDER_ID,
    SANDBOX_TEMPLATES,
)
from whatsapp_campaigns.whatsapp.sandbox.provider import SandboxProvider
from whatsapp_campaigns.whatsapp.sandbox.server import create_sandbox_app
from whatsapp_campaigns.whatsapp.sandbox.webhooks import HttpWebhookSink
from whatsapp_campaigns.whatsapp.signatures import SIGNATURE_HEADER, is_valid_signature

VERSION = "v21.0"
TOKEN = "test-token"
SECRET = "receiver-secret"
COMPONENTS = template_components(SANDBOX_TEMPLATES[0], {"name": "Ana", "order_id": "A-1"})


def message(to: str = "+12025550199", callback: str = "m-1") -> TemplateSend:
    return TemplateSend(SANDBOX_SENDER_ID, to, "order_update", "en", COMPONENTS, callback)


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Run `app` with uvicorn on a free 127.0.0.1 port until the block ends; yield its URL.

    uvicorn binds the port itself (port 0): handing it a pre-bound socket instead leaves
    Nagle on, and every kept-alive request then waits ~40 ms for a delayed ACK."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def sandbox(emulator: SandboxEmulator, token: str = TOKEN) -> AsyncIterator[CloudApiProvider]:
    """The sandbox served over HTTP, and a real client pointed at it."""
    async with serving(create_sandbox_app(emulator)) as url:
        provider = CloudApiProvider(url, VERSION, token)
        try:
            yield provider
        finally:
            await provider.aclose()


class Receiver:
    """A tiny webhook receiver: keeps what it gets; answers 500 to the first `fail_first`."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[tuple[bytes, str | None]] = []
        self.fail_first = fail_first
        self.app = FastAPI()
        self.app.post("/webhooks/whatsapp")(self.receive)

    async def receive(self, request: Request) -> Response:
        self.received.append((await request.body(), request.headers.get(SIGNATURE_HEADER)))
        if len(self.received) <= self.fail_first:
            return Response(status_code=500)
        return Response(status_code=200)

    def statuses(self) -> list[str]:
        return [
            s["status"]
            for body, _ in self.received
            for s in json.loads(body)["entry"][0]["changes"][0]["value"].get("statuses", [])
        ]


# ----------------------------------------------------------------------------- requests


async def test_send_posts_the_exact_cloud_api_request() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"messages": [{"id": "wamid.X"}]})

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    provider = CloudApiProvider("https://graph.example/", VERSION, TOKEN, client=client)
    assert await provider.send_template(message(callback="msg-9")) == "wamid.X"
    (request,) = seen
    assert str(request.url) == f"https://graph.example/{VERSION}/{SANDBOX_SENDER_ID}/messages"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request.content) == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "12025550199",
        "type": "template",
        "template": {"name": "order_update", "language": {"code": "en"}, "components": COMPONENTS},
        "biz_opaque_callback_data": "msg-9",
    }
    await client.aclose()


async def test_a_body_that_is_not_json_is_classified_by_its_status() -> None:
    client = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda request: httpx.Response(502, text="Bad gateway"))
    )
    provider = CloudApiProvider("https://graph.example", VERSION, TOKEN, client=client)
    with pytest.raises(ProviderError) as raised:
        await provider.send_template(message())
    assert (raised.value.error_class, raised.value.http_status) == (ErrorClass.TRANSIENT, 502)
    await client.aclose()


async def test_a_gateways_5xx_leaves_the_outcome_unknown() -> None:
    """A proxy's 502 may hide a send WhatsApp accepted (the chaos suite's lost answers)."""
    client = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda request: httpx.Response(502, text="Bad gateway"))
    )
    provider = CloudApiProvider("https://graph.example", VERSION, TOKEN, client=client)
    with pytest.raises(ProviderError) as raised:
        await provider.send_template(message())
    assert raised.value.outcome_unknown
    await client.aclose()


async def test_metas_own_503_is_a_refusal_with_a_known_outcome() -> None:
    body = {"error": {"message": "Service temporarily unavailable", "code": 2}}
    client = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda request: httpx.Response(503, json=body))
    )
    provider = CloudApiProvider("https://graph.example", VERSION, TOKEN, client=client)
    with pytest.raises(ProviderError) as raised:
        await provider.send_template(message())
    assert (raised.value.error_class, raised.value.outcome_unknown) == (ErrorClass.TRANSIENT, False)
    await client.aclose()


# ------------------------------------------------------------------- against the sandbox


async def test_an_accepted_send_returns_the_wamid() -> None:
    emulator = SandboxEmulator()
    async with sandbox(emulator) as provider:
        message_id = await provider.send_template(message())
    assert message_id == emulator.accepted_sends[0].message_id


async def test_a_refusal_carries_metas_code_title_status_and_details() -> None:
    async with sandbox(SandboxEmulator()) as provider:
        with pytest.raises(ProviderError) as raised:
            await provider.send_template(message("+12025550101"))
    error = raised.value
    assert (error.error_class, error.code, error.http_status) == (
        ErrorClass.INVALID_CONTACT,
        131026,
        400,
    )
    assert error.title == "Message undeliverable" and error.details


async def test_0104_over_http_fails_twice_then_is_accepted() -> None:
    async with sandbox(SandboxEmulator()) as provider:
        outcomes = []
        for _ in range(3):
            try:
                await provider.send_template(message("+12025550104"))
                outcomes.append("accepted")
            except ProviderError as error:
                outcomes.append(error.error_class.value)
    assert outcomes == ["transient", "transient", "accepted"]


async def test_a_missing_token_is_an_auth_error() -> None:
    async with sandbox(SandboxEmulator(), token="") as provider:
        with pytest.raises(ProviderError) as raised:
            await provider.send_template(message())
    assert (raised.value.error_class, raised.value.code, raised.value.http_status) == (
        ErrorClass.AUTH,
        190,
        401,
    )


async def test_a_timeout_is_transient_without_http_status() -> None:
    emulator = SandboxEmulator(latency=1.0)
    async with serving(create_sandbox_app(emulator)) as url:
        provider = CloudApiProvider(url, VERSION, TOKEN, timeout=0.1)
        with pytest.raises(ProviderError) as raised:
            await provider.send_template(message())
        await provider.aclose()
    assert (raised.value.error_class, raised.value.http_status) == (ErrorClass.TRANSIENT, None)


async def test_a_refused_connection_is_transient() -> None:
    with socket.socket() as sock:  # a port that nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = CloudApiProvider(f"http://127.0.0.1:{port}", VERSION, TOKEN)
    with pytest.raises(ProviderError) as raised:
        await provider.send_template(message())
    await provider.aclose()
    assert raised.value.error_class is ErrorClass.TRANSIENT


async def test_list_templates_follows_paging_next_over_http() -> None:
    many = [Template(name=f"t{i:03d}") for i in range(230)]
    emulator = SandboxEmulator(templates=many)
    async with sandbox(emulator) as provider:
        names = [t.name for t in await provider.list_templates(SANDBOX_BUSINESS_ACCOUNT_ID)]
    assert names == [t.name for t in many]


async def test_the_server_pages_with_limit_and_after() -> None:
    emulator = SandboxEmulator(templates=[Template(name=f"t{i}") for i in range(5)])
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with serving(create_sandbox_app(emulator)) as url, httpx.AsyncClient(headers=auth) as c:
        first = (await c.get(f"{url}/{VERSION}/sandbox/message_templates?limit=2")).json()
        second = (await c.get(first["paging"]["next"])).json()
        last = (await c.get(f"{url}/{VERSION}/sandbox/message_templates?limit=10")).json()
    assert [t["name"] for t in first["data"]] == ["t0", "t1"]
    assert [t["name"] for t in second["data"]] == ["t2", "t3"]
    assert "next" not in last["paging"] and len(last["data"]) == 5


async def test_listing_templates_without_a_token_is_401() -> None:
    async with serving(create_sandbox_app(SandboxEmulator())) as url, httpx.AsyncClient() as client:
        response = await client.get(f"{url}/{VERSION}/sandbox/message_templates")
    assert response.status_code == 401 and response.json()["error"]["code"] == 190


async def test_list_templates_gives_the_sandbox_fixtures() -> None:
    async with sandbox(SandboxEmulator()) as provider:
        templates = await provider.list_templates(SANDBOX_BUSINESS_ACCOUNT_ID)
    assert [t.model_dump() for t in templates] == [t.model_dump() for t in SANDBOX_TEMPLATES]


# ------------------------------------------------------------------------------ webhooks


async def test_webhooks_reach_a_receiver_signed_with_the_app_secret() -> None:
    receiver = Receiver()
    async with serving(receiver.app) as receiver_url:
        sink = HttpWebhookSink(f"{receiver_url}/webhooks/whatsapp", SECRET)
        emulator = SandboxEmulator(webhook_sink=sink, webhook_delay=0.0)
        async with sandbox(emulator) as provider:
            await provider.send_template(message())
            await emulator.drain_webhooks()
    assert receiver.statuses() == ["sent", "delivered", "read"]
    for body, signature in receiver.received:
        assert is_valid_signature(body, signature, SECRET)


async def test_the_webhook_sink_retries_after_a_failed_post() -> None:
    receiver = Receiver(fail_first=1)
    async with serving(receiver.app) as receiver_url:
        sink = HttpWebhookSink(f"{receiver_url}/webhooks/whatsapp", SECRET, backoff=0.01)
        await sink.deliver(b'{"object": "whatsapp_business_account"}', {})
        await sink.aclose()
    assert len(receiver.received) == 2 and receiver.received[0] == receiver.received[1]


async def test_duplicated_and_reordered_webhooks_over_http() -> None:
    receiver = Receiver()
    async with serving(receiver.app) as receiver_url:
        sink = HttpWebhookSink(f"{receiver_url}/webhooks/whatsapp", SECRET)
        emulator = SandboxEmulator(
            webhook_sink=sink, webhook_delay=0.0, duplicate_webhooks=True, reorder_webhooks=True
        )
        async with sandbox(emulator) as provider:
            await provider.send_template(message("+12025550107"))
            await emulator.drain_webhooks()
    assert receiver.statuses() == ["delivered", "delivered", "sent", "sent"]


# ---------------------------------------------------------------------------- throughput


async def send_all(
    provider: CloudApiProvider, sends: list[TemplateSend], rate: float | None
) -> list[str]:
    """Send each message (at `rate` per second, or all at once); outcomes in order."""

    async def one(send: TemplateSend) -> str:
        try:
            await provider.send_template(send)
        except ProviderError as error:
            return error.error_class.value
        return "accepted"

    if rate is None:
        return list(await asyncio.gather(*(one(s) for s in sends)))
    started = time.monotonic()
    tasks = []
    for i, send in enumerate(sends):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(send)))
    return list(await asyncio.gather(*tasks))


def ordinary(n: int, start: int) -> list[TemplateSend]:
    return [message(f"+1202555{start + i:04d}", callback=f"c{start + i}") for i in range(n)]


# Client and server share one event loop here: ~100 calls/s on a small CI machine. The rates
# are set so that pacing stays at the limit for 8 s and a burst exceeds it many times over.
PACED_RATE = 40
BURST_RATE = 10


async def test_sending_paced_at_the_sender_rate_never_sees_130429() -> None:
    emulator = SandboxEmulator()
    emulator.set_sender_rate(SANDBOX_SENDER_ID, PACED_RATE)
    async with sandbox(emulator) as provider:
        outcomes = await send_all(provider, ordinary(8 * PACED_RATE, start=1000), rate=PACED_RATE)
    assert set(outcomes) == {"accepted"}
    assert len(emulator.accepted_sends) == 8 * PACED_RATE


async def test_a_burst_far_above_the_sender_rate_sees_130429() -> None:
    emulator = SandboxEmulator()
    emulator.set_sender_rate(SANDBOX_SENDER_ID, BURST_RATE)
    async with sandbox(emulator) as provider:
        outcomes = await send_all(provider, ordinary(20 * BURST_RATE, start=5000), rate=None)
    assert outcomes.count("throughput_limited") > 10 * BURST_RATE
    assert outcomes.count("accepted") >= BURST_RATE  # the bucket's burst went through
    assert set(outcomes) == {"accepted", "throughput_limited"}
    assert len(emulator.accepted_sends) == outcomes.count("accepted")


# ------------------------------------------------------------------------------- factory


def test_the_factory_builds_the_cloud_provider_from_the_settings() -> None:
    settings = Settings(
        CAMPAIGNS_PROVIDER="cloud",
        WHATSAPP_ACCESS_TOKEN="t",
        WHATSAPP_API_BASE_URL="http://127.0.0.1:9",
    )
    assert isinstance(make_provider(settings), CloudApiProvider)


def test_the_factory_builds_the_sandbox_around_the_given_emulator() -> None:
    emulator = SandboxEmulator()
    provider = make_provider(Settings(CAMPAIGNS_PROVIDER="sandbox"), sandbox=emulator)
    assert isinstance(provider, SandboxProvider) and provider.emulator is emulator
