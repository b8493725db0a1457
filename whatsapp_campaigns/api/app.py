"""The FastAPI application: one factory, so that tests, the CLI and the dev stack build the same
app around their own settings and store. Routers read both from `request.app.state`."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from whatsapp_campaigns import metrics, tracing
from whatsapp_campaigns.api import (
    access_log,
    routes_accounts,
    routes_audiences,
    routes_campaigns,
    routes_credits,
    routes_senders,
    routes_templates,
    webhooks,
)
from whatsapp_campaigns.api.auth import require_principal, warn_if_open
from whatsapp_campaigns.api.dependencies import ClientHolder
from whatsapp_campaigns.api.errors import add_error_handlers
from whatsapp_campaigns.api.throttle import FailedAuthThrottle
from whatsapp_campaigns.api.webhook_ingest import WebhookIngest, backlog_report
from whatsapp_campaigns.dashboard import mount_dashboard
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.starter.client import CampaignsClient
from whatsapp_campaigns.store import webhook_inbox
from whatsapp_campaigns.store.connections import verify_secret_key
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.whatsapp.connections import AccountProviders, secret_box

log = logging.getLogger(__name__)

# How often the campaigns_by_status gauge is re-read from the store (scrapes never query).
STATUS_GAUGE_REFRESH_SECONDS = 15.0

DESCRIPTION = """
Create, schedule and steer WhatsApp template campaigns; import audiences; read progress and
reports; onboard accounts, their WhatsApp connection and numbers. Every route but `/healthz`,
`/metrics` and `/webhooks/*` needs `Authorization: Bearer <API key>` (`campaigns keys create`,
or the bootstrap admin keys of `CAMPAIGNS_API_KEYS`; no key anywhere: open).

The key decides the account: an `operator` key acts on its own account, a `viewer` key only
reads it (writes answer 403), an `admin` key acts on the account `X-Account` names (default:
its own) and alone manages accounts, keys and credits. Another account's campaign, audience,
template or number answers 404. `X-Actor` names who acts, for the campaign's timeline.
Refused actions answer 409 with the reason; repeated failed authentications answer 429.
"""


class CampaignsAPI(FastAPI):
    """The app, answering `POST /webhooks/whatsapp` itself: Meta's status webhooks (thousands a
    second at a top-tier number) skip FastAPI's middleware stack and router, which took about
    a third of each receipt's time (py-spy, bench/RESULTS.md). Nothing on that path needs them:
    the receiver answers its own errors, and webhooks are neither traced nor authenticated by
    key. Every other request, and the same POST under a root path, goes the usual way.
    `access_log`: write the access log (`access_log`), for a server that writes none."""

    webhook_receiver = webhooks.WebhookReceiver()
    access_log = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        webhook = scope["path"] == webhooks.PATH and scope["method"] == "POST"
        if self.access_log:
            send = access_log.logged(scope, send, quiet_success=webhook)
        if webhook:
            scope["app"] = self
            await self.webhook_receiver(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings,
    db: Database,
    *,
    campaigns_client: CampaignsClient | None = None,
    providers: AccountProviders | None = None,
) -> CampaignsAPI:
    """`campaigns_client`: the client that creates and steers campaigns; without one, it is
    built on first use (with a lazy Temporal connection) and closed at shutdown.
    `providers`: how each account reaches WhatsApp (default: its stored connection)."""
    warn_if_open(settings)
    # A stored token that CAMPAIGNS_SECRET_KEY cannot decrypt: one clear error at start-up.
    verify_secret_key(db, secret_box(settings))
    clients = ClientHolder(settings, db, campaigns_client)
    app = CampaignsAPI(title="WhatsApp Campaigns", description=DESCRIPTION, lifespan=_lifespan)
    app.state.settings = settings
    app.state.db = db
    app.state.campaigns_client = clients
    app.state.providers = providers or AccountProviders(settings, db)
    app.state.webhook_secrets = webhooks.new_secrets_cache()
    app.state.auth_throttle = FailedAuthThrottle(
        settings.auth_max_failures, settings.auth_failure_window_seconds
    )
    tracing.start(settings, "campaigns-api")  # off without an OTLP endpoint
    tracing.instrument_app(app)
    app.state.webhook_ingest = WebhookIngest(db, settings)
    add_error_handlers(app)
    app.router.routes.insert(0, webhooks.receiver_route())  # first: the busiest route
    app.include_router(webhooks.router)
    for module in (
        routes_campaigns,
        routes_audiences,
        routes_templates,
        routes_senders,
        routes_credits,
        routes_accounts,
    ):
        app.include_router(module.router, dependencies=[Depends(require_principal)])
    mount_dashboard(app, settings)  # /dashboard: signs in with an API key, then a session
    _document_webhook_receiver(app)

    @app.get("/healthz", tags=["operations"], summary="Health check")
    async def healthz() -> JSONResponse:
        """Up when the store answers; with the webhook inbox's backlog (payloads received and
        not applied yet, the age of the oldest, and those set aside as not applicable)."""
        try:
            backlog = await run_in_threadpool(webhook_inbox.backlog, db)
        except SQLAlchemyError:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok", "webhooks": backlog_report(backlog)})

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        """Prometheus metrics of this process (text exposition format)."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def _document_webhook_receiver(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            webhooks.document_receiver(generate())  # generate() keeps it in openapi_schema
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    refresher = asyncio.create_task(_refresh_status_gauge(app.state.db))
    ingest: WebhookIngest = app.state.webhook_ingest
    ingest.start()  # applies what an earlier run stored but did not apply
    try:
        yield
    finally:
        await ingest.close()
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher
        clients: ClientHolder = app.state.campaigns_client
        await clients.close()
        providers: AccountProviders = app.state.providers
        await providers.aclose()


async def _refresh_status_gauge(db: Database) -> None:
    while True:
        try:
            await run_in_threadpool(metrics.refresh_campaigns_by_status, db)
        except SQLAlchemyError as error:
            log.warning("campaigns_by_status not refreshed: %s", error)
        await asyncio.sleep(STATUS_GAUGE_REFRESH_SECONDS)
