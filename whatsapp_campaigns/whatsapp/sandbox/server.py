"""The sandbox over HTTP (`campaigns sandbox`): the Cloud API's two routes that the campaign
engine calls, served by a `SandboxEmulator`, so that the real `CloudApiProvider` talks to it.

Point a worker at it with CAMPAIGNS_PROVIDER=cloud, WHATSAPP_API_BASE_URL=http://host:port
and any non-empty WHATSAPP_ACCESS_TOKEN.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from whatsapp_campaigns.whatsapp.sandbox import errors
from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator, SandboxResponse
from whatsapp_campaigns.whatsapp.sandbox.fixtures import SANDBOX_APP_SECRET, SANDBOX_SENDER_ID
from whatsapp_campaigns.whatsapp.sandbox.webhooks import BoundedHttpWebhookSink


def create_sandbox_app(emulator: SandboxEmulator) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await emulator.aclose()  # pending webhooks die with the server

    app = FastAPI(
        title="WhatsApp Cloud API sandbox",
        description="A stand-in for graph.facebook.com: template sends and template listing.",
        lifespan=lifespan,
    )

    @app.post("/{version}/{phone_number_id}/messages")
    async def send_message(version: str, phone_number_id: str, request: Request) -> JSONResponse:
        try:
            body: object = await request.json()
        except ValueError:
            body = None
        answer = await emulator.send(phone_number_id, body, access_token=_bearer(request))
        return _json(answer)

    @app.get("/{version}/{waba_id}/message_templates")
    async def list_templates(
        version: str, waba_id: str, request: Request, limit: int = 25, after: str | None = None
    ) -> JSONResponse:
        if not _bearer(request):
            return _json(SandboxResponse(401, errors.auth_failed().body()))
        if emulator.latency > 0:
            await asyncio.sleep(emulator.latency)
        next_url = str(request.url.remove_query_params(["after", "limit"]))
        return _json(emulator.templates_page(waba_id, after=after, limit=limit, next_url=next_url))

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
) -> None:
    """Serve the sandbox until interrupted; status webhooks go to `webhook_url`, signed with
    `app_secret` (none without a URL); `rate` overrides the sandbox sender's messages/s."""
    emulator = sandbox_emulator(
        webhook_url=webhook_url,
        app_secret=app_secret,
        rate=rate,
        latency=latency,
        webhook_delay=webhook_delay,
    )
    # No access log: at hundreds of sends a second it would drown everything else.
    uvicorn.run(
        create_sandbox_app(emulator), host=host, port=port, log_level="info", access_log=False
    )


def sandbox_emulator(
    *,
    webhook_url: str | None,
    app_secret: str,
    rate: float | None = None,
    latency: float = 0.0,
    webhook_delay: float = 0.3,
) -> SandboxEmulator:
    """The standalone server's emulator: its webhooks go out through the same bounded sink as
    the dev stack's (a few connections, the other posts waiting their turn)."""
    sink = BoundedHttpWebhookSink(webhook_url, app_secret) if webhook_url else None
    emulator = SandboxEmulator(
        latency=latency, webhook_sink=sink, app_secret=app_secret, webhook_delay=webhook_delay
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
