"""The sandbox over HTTP (`campaigns sandbox`): the Cloud API routes that the campaign engine
calls (send, list templates, read a phone number), served by a `SandboxEmulator`, so that the
real `CloudApiProvider` talks to it; plus two control routes under `/sandbox/` that play Meta
changing a template's status or a number's throughput, with their account webhooks.

Point a worker at it with CAMPAIGNS_PROVIDER=cloud, WHATSAPP_API_BASE_URL=http://host:port
and any non-empty WHATSAPP_ACCESS_TOKEN (or the one token `--accept-token-env` names).
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from whatsapp_campaigns.domain.models import TemplateStatus
from whatsapp_campaigns.whatsapp.sandbox import errors
from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator, SandboxResponse
from whatsapp_campaigns.whatsapp.sandbox.faults import (
    FaultSwitches,
    FaultyWebhookSink,
    SandboxFaults,
    fault_routes,
)
from whatsapp_campaigns.whatsapp.sandbox.fixtures import SANDBOX_APP_SECRET, SANDBOX_SENDER_ID
from whatsapp_campaigns.whatsapp.sandbox.webhooks import BoundedHttpWebhookSink


class TemplateStatusChange(BaseModel):
    status: TemplateStatus
    language: str = "en"
    reason: str | None = None


class ThroughputChange(BaseModel):
    level: str  # STANDARD | HIGH


def create_sandbox_app(emulator: SandboxEmulator, faults: SandboxFaults | None = None) -> FastAPI:
    """`faults`: the fault switches in force (default: all off, switchable at /sandbox/faults)."""
    faults = faults or SandboxFaults()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await emulator.aclose()  # pending webhooks die with the server

    app = FastAPI(
        title="WhatsApp Cloud API sandbox",
        description="A stand-in for graph.facebook.com: template sends and template listing.",
        lifespan=lifespan,
    )

    app.include_router(fault_routes(emulator, faults))

    @app.post("/{version}/{phone_number_id}/messages")
    async def send_message(version: str, phone_number_id: str, request: Request) -> Response:
        try:
            body: object = await request.json()
        except ValueError:
            body = None
        return await faults.answer_send(emulator, phone_number_id, body, _bearer(request))

    @app.get("/{version}/{waba_id}/message_templates")
    async def list_templates(
        version: str, waba_id: str, request: Request, limit: int = 25, after: str | None = None
    ) -> JSONResponse:
        if not emulator.accepts_token(_bearer(request)):
            return _json(SandboxResponse(401, errors.auth_failed().body()))
        if emulator.latency > 0:
            await asyncio.sleep(emulator.latency)
        next_url = str(request.url.remove_query_params(["after", "limit"]))
        return _json(emulator.templates_page(waba_id, after=after, limit=limit, next_url=next_url))

    @app.get("/{version}/{phone_number_id}")
    async def get_phone_number(
        version: str, phone_number_id: str, request: Request
    ) -> JSONResponse:
        return _json(emulator.phone_number(phone_number_id, access_token=_bearer(request)))

    @app.post("/sandbox/templates/{name}/status", tags=["sandbox control"])
    async def change_template_status(name: str, change: TemplateStatusChange) -> dict[str, str]:
        """Play Meta approving, pausing or disabling a template: its status changes and the
        `message_template_status_update` webhook is posted."""
        await emulator.change_template_status(
            name, change.status, language=change.language, reason=change.reason
        )
        return {"template": name, "status": change.status.value}

    @app.post("/sandbox/numbers/{phone_number_id}/throughput", tags=["sandbox control"])
    async def change_throughput(phone_number_id: str, change: ThroughputChange) -> dict[str, str]:
        """Play Meta moving a number to `HIGH` (1,000 msg/s) or `STANDARD` (80) throughput,
        with its `phone_number_quality_update` webhook."""
        level = change.level.upper()
        if level not in ("HIGH", "STANDARD"):
            raise HTTPException(422, f"level must be HIGH or STANDARD, not {change.level!r}")
        try:
            await emulator.change_throughput(phone_number_id, level)
        except KeyError:
            raise HTTPException(404, f"no sandbox number {phone_number_id}") from None
        return {"phone_number_id": phone_number_id, "level": level}

    return app


def run_sandbox_server(
    host: str,
    port: int,
    *,
    webhook_url: str | None = None,
    app_secret: str = SANDBOX_APP_SECRET,
    rate: float | None = None,
    latency: float = 0.0,
    webhook_delay: float = 0.3,
    access_token: str | None = None,
    faults: FaultSwitches | None = None,
    strict_throughput: bool = False,
) -> None:
    """Serve the sandbox until interrupted, with the fault switches `faults`; status webhooks
    go to `webhook_url`, signed with `app_secret` (none without a URL); `rate` overrides the
    sandbox sender's messages/s (`strict_throughput`: in every calendar second);
    `access_token`: the only bearer token accepted (default: any)."""
    played = SandboxFaults(faults or FaultSwitches())
    emulator = sandbox_emulator(
        webhook_url=webhook_url,
        app_secret=app_secret,
        rate=rate,
        latency=latency,
        webhook_delay=webhook_delay,
        access_token=access_token,
        faults=played,
        strict_throughput=strict_throughput,
    )
    # No access log: at hundreds of sends a second it would drown everything else.
    uvicorn.run(
        create_sandbox_app(emulator, played),
        host=host,
        port=port,
        log_level="info",
        access_log=False,
    )


def sandbox_emulator(
    *,
    webhook_url: str | None,
    app_secret: str,
    rate: float | None = None,
    latency: float = 0.0,
    webhook_delay: float = 0.3,
    access_token: str | None = None,
    faults: SandboxFaults | None = None,
    strict_throughput: bool = False,
) -> SandboxEmulator:
    """The standalone server's emulator: its webhooks go out through the same bounded sink as
    the dev stack's (a few connections, the other posts waiting their turn), through the
    webhook fault switches of `faults` when given."""
    sink: BoundedHttpWebhookSink | FaultyWebhookSink | None = None
    if webhook_url:
        sink = BoundedHttpWebhookSink(webhook_url, app_secret)
        if faults is not None:
            sink = FaultyWebhookSink(sink, faults)
    emulator = SandboxEmulator(
        latency=latency,
        webhook_sink=sink,
        app_secret=app_secret,
        webhook_delay=webhook_delay,
        access_tokens=[access_token] if access_token else None,
        strict_throughput=strict_throughput,
    )
    if rate is not None:
        emulator.set_sender_rate(SANDBOX_SENDER_ID, rate)
    return emulator


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _json(answer: SandboxResponse) -> JSONResponse:
    return JSONResponse(answer.body, status_code=answer.status_code)
