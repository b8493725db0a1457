"""Tracing (whatsapp_campaigns/tracing.py): one campaign launched over REST, run by a worker on
a real Temporal dev server, sending through the Cloud API client to the sandbox served over
HTTP. Every span is kept in memory; the tests read the one trace it makes.

Header capture is switched on for everything (as an operator debugging might), so the tests
also show that the secret headers are redacted even then.
"""

import asyncio
import http.server
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import uvicorn
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from temporalio.testing import WorkflowEnvironment

from tests.api_helpers import served
from tests.engine_harness import ordinary_numbers
from whatsapp_campaigns import tracing
from whatsapp_campaigns.api.app import create_app
from whatsapp_campaigns.domain.statuses import CampaignStatus
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.starter.client import workflow_id
from whatsapp_campaigns.store import catalog
from whatsapp_campaigns.store.audiences import import_audience_rows
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.fixtures import SANDBOX_ACCOUNT_ID, SANDBOX_SENDER, seed_sandbox
from whatsapp_campaigns.store.migrate import upgrade
from whatsapp_campaigns.temporal_client import connect
from whatsapp_campaigns.whatsapp.connections import AccountProviders
from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator
from whatsapp_campaigns.whatsapp.sandbox.fixtures import SANDBOX_TEMPLATES
from whatsapp_campaigns.whatsapp.sandbox.server import create_sandbox_app
from whatsapp_campaigns.workers.main import build_workers

pytestmark = pytest.mark.e2e

ACCESS_TOKEN = "EAAG-tracing-test-token-0123456789"
API_KEY = "tracing-test-api-key"
VERIFY_TOKEN = "tracing-test-verify-token"
PHONES = ordinary_numbers(3, start=4200)
CAPTURE_EVERY_HEADER = {
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST": ".*",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST": ".*",
}


def test_tracing_is_off_without_an_otlp_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("CAMPAIGNS_OTLP_ENDPOINT", raising=False)
    assert tracing.otlp_endpoint(Settings(_env_file=None)) is None


def test_the_otlp_endpoint_setting_is_the_collector_base_url() -> None:
    settings = Settings(CAMPAIGNS_OTLP_ENDPOINT="http://collector:4318/")
    assert tracing.otlp_endpoint(settings) == "http://collector:4318/v1/traces"


# A process of its own: `start` installs the global tracer provider, once per process.
_EXPORT_ONE_SPAN = """
import sys
from opentelemetry import trace
from whatsapp_campaigns import tracing
from whatsapp_campaigns.settings import Settings

settings = Settings(_env_file=None, CAMPAIGNS_OTLP_ENDPOINT=sys.argv[1])
assert tracing.start(settings, "campaigns-probe")
with trace.get_tracer("probe").start_as_current_span("probe-span"):
    pass
tracing.flush()
"""


def test_with_an_endpoint_spans_reach_the_collector_over_otlp_http() -> None:
    received: list[tuple[str, bytes]] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with http.server.HTTPServer(("127.0.0.1", 0), Collector) as collector:
        threading.Thread(target=collector.serve_forever, daemon=True).start()
        endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
        subprocess.run([sys.executable, "-c", _EXPORT_ONE_SPAN, endpoint], check=True, timeout=60)
        collector.shutdown()
    ((path, body),) = received
    assert path == "/v1/traces"
    assert b"probe-span" in body and b"campaigns-probe" in body


# A process of its own, so that nothing imported by this test module counts.
_WORKER_IMPORTS = """
import sys
from whatsapp_campaigns import tracing
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.workers.main import build_workers  # its client and workers too

assert not tracing.start(Settings(_env_file=None), "campaigns-worker")
assert tracing.temporal_interceptors() == []
print(" ".join(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_a_worker_without_tracing_does_not_load_the_tracing_stack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "CAMPAIGNS_OTLP_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    loaded = subprocess.run(
        [sys.executable, "-c", _WORKER_IMPORTS],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()
    assert "whatsapp_campaigns" in loaded
    assert {"opentelemetry", "fastapi", "starlette"}.isdisjoint(loaded)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    """Tracing on for the module, into memory, with every header captured."""
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    with pytest.MonkeyPatch.context() as env:
        for name, value in CAPTURE_EVERY_HEADER.items():
            env.setenv(name, value)
        env.setenv(tracing.SANITIZE_FIELDS_ENV, "")  # restored (unset) after the module
        tracing.install(provider)
        try:
            yield spans
        finally:
            tracing.uninstall()
            provider.shutdown()


@pytest.fixture(scope="module")
async def sandbox_url() -> AsyncIterator[str]:
    """The sandbox Graph API over real HTTP, accepting only ACCESS_TOKEN."""
    port = _free_port()
    emulator = SandboxEmulator(access_tokens=[ACCESS_TOKEN], webhook_delay=0.01)
    config = uvicorn.Config(
        create_sandbox_app(emulator), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await serving


@pytest.fixture(scope="module")
async def traced_campaign(
    exporter: InMemorySpanExporter,
    dev_server: WorkflowEnvironment,
    sandbox_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> list[ReadableSpan]:
    """Launch a 3-recipient campaign with `POST /campaigns/{id}/launch` and run it to the end;
    every span recorded meanwhile."""
    path: Path = tmp_path_factory.mktemp("tracing") / "campaigns.db"
    upgrade(f"sqlite:///{path}")
    settings = Settings(
        CAMPAIGNS_DATABASE_URL=f"sqlite:///{path}",
        TEMPORAL_ADDRESS=dev_server.client.service_client.config.target_host,
        CAMPAIGNS_TASK_QUEUE=f"campaigns-{uuid.uuid4().hex[:8]}",
        CAMPAIGNS_PROVIDER="cloud",
        WHATSAPP_API_BASE_URL=sandbox_url,
        WHATSAPP_ACCESS_TOKEN=ACCESS_TOKEN,
        CAMPAIGNS_API_KEYS=API_KEY,
        WHATSAPP_VERIFY_TOKEN=VERIFY_TOKEN,
    )
    db = Database(settings.database_url)
    seed_sandbox(db)
    catalog.upsert_templates(db, SANDBOX_ACCOUNT_ID, SANDBOX_TEMPLATES)
    rows = [
        {"phone": p, "name": f"Customer {i}", "order_id": f"A{i}"} for i, p in enumerate(PHONES)
    ]
    audience = import_audience_rows(db, SANDBOX_ACCOUNT_ID, "traced audience", rows)

    # The production paths: `connect` (the worker's client) and the API's own lazy client.
    client = await connect(settings)
    providers = AccountProviders(settings, db)
    workers = build_workers(client, settings, db, providers, senders=[SANDBOX_SENDER])
    running = asyncio.create_task(workers.run())
    app = create_app(settings, db)
    try:
        async with served(app, headers={"Authorization": f"Bearer {API_KEY}"}) as api:
            created = await api.post(
                "/campaigns",
                json={
                    "name": "traced",
                    "template_name": "order_update",
                    "sender_phone_number_id": SANDBOX_SENDER.phone_number_id,
                    "audience_id": audience.audience.id,
                },
            )
            campaign_id = created.raise_for_status().json()["id"]
            exporter.clear()  # the trace under test starts at the launch
            (await api.post(f"/campaigns/{campaign_id}/launch")).raise_for_status()
            handshake = {
                "hub.mode": "subscribe",
                "hub.verify_token": VERIFY_TOKEN,
                "hub.challenge": "7",
            }
            (await api.get("/webhooks/whatsapp", params=handshake)).raise_for_status()
        result = await client.get_workflow_handle(workflow_id(campaign_id)).result()
        assert result["status"] == CampaignStatus.COMPLETED.value
    finally:
        await workers.shutdown()
        await running
        await providers.aclose()
        await app.state.campaigns_client.close()
        db.dispose()
    return list(exporter.get_finished_spans())


def _named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def _launch_request(spans: list[ReadableSpan]) -> ReadableSpan:
    (request,) = [s for s in spans if s.name == "POST /campaigns/{campaign_id}/launch"]
    return request


def _url(span: ReadableSpan) -> str:
    """The request URL, under the old or the stable HTTP semantic conventions."""
    attributes = span.attributes or {}
    return str(attributes.get("url.full") or attributes.get("http.url") or "")


def _graph_api_sends(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if s.kind is SpanKind.CLIENT and _url(s).endswith("/messages")]


def _every_recorded_value(spans: list[ReadableSpan]) -> str:
    values: list[str] = []
    for span in spans:
        values.append(span.name)
        values.extend(str(v) for v in (span.attributes or {}).values())
        for event in span.events:
            values.extend(str(v) for v in (event.attributes or {}).values())
    return "\n".join(values)


def test_the_launch_request_the_workflow_the_sends_and_the_graph_api_calls_share_one_trace(
    traced_campaign: list[ReadableSpan],
) -> None:
    request = _launch_request(traced_campaign)
    assert request.kind is SpanKind.SERVER and request.parent is None
    trace_id = request.context.trace_id
    chain = [
        "StartWorkflow:CampaignWorkflow",
        "RunWorkflow:CampaignWorkflow",
        "StartActivity:send_message",
        "RunActivity:send_message",
    ]
    for name in chain:
        assert _named(traced_campaign, name), name
        assert {s.context.trace_id for s in _named(traced_campaign, name)} == {trace_id}, name
    sends = _graph_api_sends(traced_campaign)
    assert len(sends) == len(PHONES)
    assert {s.context.trace_id for s in sends} == {trace_id}


def test_each_graph_api_request_is_a_child_of_its_send_activity(
    traced_campaign: list[ReadableSpan],
) -> None:
    activities = {s.context.span_id for s in _named(traced_campaign, "RunActivity:send_message")}
    sends = _graph_api_sends(traced_campaign)
    assert sends and all(s.parent is not None and s.parent.span_id in activities for s in sends)


def test_the_access_token_is_redacted_from_the_graph_api_request_spans(
    traced_campaign: list[ReadableSpan],
) -> None:
    for send in _graph_api_sends(traced_campaign):
        assert send.attributes is not None
        assert send.attributes["http.request.header.authorization"] == ("[REDACTED]",)
    assert ACCESS_TOKEN not in _every_recorded_value(traced_campaign)


def test_the_api_key_is_redacted_from_the_request_span(
    traced_campaign: list[ReadableSpan],
) -> None:
    request = _launch_request(traced_campaign)
    assert request.attributes is not None
    assert request.attributes["http.request.header.authorization"] == ("[REDACTED]",)
    assert API_KEY not in _every_recorded_value(traced_campaign)


def test_no_span_records_a_recipient_phone_number_or_the_message_variables(
    traced_campaign: list[ReadableSpan],
) -> None:
    recorded = _every_recorded_value(traced_campaign)
    assert "messaging_product" not in recorded  # a key of every send body
    for phone in PHONES:
        assert phone.lstrip("+") not in recorded
    assert "Customer" not in recorded


def test_the_webhook_handshake_and_its_verify_token_are_not_traced(
    traced_campaign: list[ReadableSpan],
) -> None:
    assert not [s for s in traced_campaign if "/webhooks/" in s.name]
    assert VERIFY_TOKEN not in _every_recorded_value(traced_campaign)
