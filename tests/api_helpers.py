"""The REST API under test: the app through httpx's ASGI transport, a `CampaignsClient` whose
Temporal client must never be used, and the sandbox account, sender and templates."""

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import httpx
from fastapi import FastAPI
from temporalio.client import Client

from whatsapp_campaigns.api.app import create_app
from whatsapp_campaigns.domain.models import Template, TemplateCategory, TemplateStatus
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.starter.client import CampaignsClient
from whatsapp_campaigns.store import campaigns, catalog
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.fixtures import SANDBOX_ACCOUNT_ID, SANDBOX_SENDER, seed_sandbox
from whatsapp_campaigns.store.models import AudienceRow, MessageRow, RecipientRow, utcnow
from whatsapp_campaigns.whatsapp.connections import AccountProviders

ACCOUNT = SANDBOX_ACCOUNT_ID
SENDER = SANDBOX_SENDER.phone_number_id
API_KEY = "test-key-1"

try:
    from whatsapp_campaigns.whatsapp.sandbox.fixtures import SANDBOX_TEMPLATES
except ImportError:  # the sandbox is being written; the same templates as SPEC §7
    SANDBOX_TEMPLATES = [
        Template(
            name="order_update",
            category=TemplateCategory.UTILITY,
            variables=["name", "order_id"],
        ),
        Template(name="spring_sale", variables=["name"]),
        Template(name="promo_pending", status=TemplateStatus.PENDING, variables=["name"]),
        Template(name="promo_paused", status=TemplateStatus.PAUSED, variables=["name"]),
    ]


class UnusedTemporal:
    """Stands in for the Temporal client in tests of what the client refuses by itself."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Temporal was used (client.{name}) where it must not be")


def make_settings(db: Database, **overrides: Any) -> Settings:
    """Open API (no keys) unless `CAMPAIGNS_API_KEYS` is given, whatever the environment."""
    values: dict[str, Any] = {"CAMPAIGNS_DATABASE_URL": db.url, "CAMPAIGNS_API_KEYS": ""}
    return Settings(**(values | overrides))


def seed(db: Database) -> None:
    """The sandbox account (1,000,000 credits), its sender and the sandbox templates."""
    seed_sandbox(db)
    catalog.upsert_templates(db, ACCOUNT, list(SANDBOX_TEMPLATES))


@asynccontextmanager
async def api_client(
    db: Database,
    settings: Settings | None = None,
    *,
    headers: dict[str, str] | None = None,
    providers: AccountProviders | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings or make_settings(db)
    campaigns_client = CampaignsClient(cast(Client, UnusedTemporal()), db, settings)
    app = create_app(settings, db, campaigns_client=campaigns_client, providers=providers)
    async with served(app, headers=headers) as client:
        yield client


@asynccontextmanager
async def served(
    app: FastAPI, *, base_url: str = "http://api", headers: dict[str, str] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of `app` with the app's lifespan around it, as uvicorn runs it: its webhook
    applier stops with the test instead of applying later tests' webhooks (the event loop and
    the PostgreSQL schema last the whole session)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url=base_url, headers=headers
        ) as client:
            yield client


def draft_body(**changes: Any) -> dict[str, Any]:
    return {
        "name": "Spring sale",
        "template_name": "spring_sale",
        "sender_phone_number_id": SENDER,
    } | changes


def seed_audience(db: Database, phones: Sequence[str] = ("+12025550110",)) -> str:
    """An audience of the sandbox account with variable `name`; returns its id."""
    audience_id = uuid.uuid4().hex[:12]
    with db.session() as session:
        session.add(
            AudienceRow(
                id=audience_id,
                account_id=ACCOUNT,
                name=f"audience {audience_id}",
                valid=len(phones),
                variable_names=["name"],
            )
        )
        session.flush()
        session.add_all(
            RecipientRow(audience_id=audience_id, phone_e164=p, variables={"name": f"C{i}"})
            for i, p in enumerate(phones)
        )
    return audience_id


def seed_messages(db: Database, campaign_id: str, statuses: Sequence[MessageStatus]) -> None:
    """One message per status, to consecutive fictional numbers, in a fresh audience."""
    phones = [f"+1202555{200 + i:04d}" for i in range(len(statuses))]
    audience_id = seed_audience(db, phones)
    with db.session() as session:
        recipients = session.query(RecipientRow).filter_by(audience_id=audience_id).all()
        session.add_all(
            MessageRow(
                campaign_id=campaign_id,
                recipient_id=recipient.id,
                phone_e164=recipient.phone_e164,
                status=status.value,
                attempts=1,
                queued_at=utcnow(),
            )
            for recipient, status in zip(recipients, statuses, strict=True)
        )


def move_to(db: Database, campaign_id: str, *path: CampaignStatus) -> None:
    """Walk a campaign through statuses as the engine would (system actor)."""
    for status in path:
        campaigns.change_status(db, campaign_id, status, action=f"test-{status.value}")
